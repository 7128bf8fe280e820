"""Freed memory handed back to the system during long tile-by-tile work.

glibc's ``malloc`` keeps the pages of freed heap blocks for reuse. Prediction by window
(docs/large_images.md) allocates and frees each window's temporaries (activations, grouping,
the spill's buffers) hundreds of times around a few long-lived ones (the region labels the
join keeps), and the kept pages grow with the number of windows: 1.93 GiB peak on a
2,048 x 20,480 image where the live memory stays near 1.2 GiB. :class:`HeapTrimmer` calls
``malloc_trim(0)`` (glibc: return every free page) whenever the resident set has grown by
``slack_mib`` since the last call; elsewhere (no glibc) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from functools import cache

__all__ = ["HeapTrimmer", "resident_bytes"]


def resident_bytes() -> int | None:
    """The process's resident set in bytes (Linux ``/proc/self/statm``), else None."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


@cache
def _malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


class HeapTrimmer:
    """Call after each tile: hands freed heap pages back to the system (``malloc_trim``) when
    the resident set has grown by more than ``slack_mib`` since the last trim (or the first
    call), so that a long run's memory stays within about ``slack_mib`` of its live memory
    at a few trims' cost. Changes memory only, never a result."""

    def __init__(self, slack_mib: float = 128.0) -> None:
        self.slack_mib = slack_mib
        self.trims = 0
        self._floor: int | None = None  # bytes

    def __call__(self) -> None:
        trim, now = _malloc_trim(), resident_bytes()
        if trim is None or now is None:
            return
        if self._floor is None:
            self._floor = now
        elif now > self._floor + self.slack_mib * 2**20:
            trim(0)
            self.trims += 1
            self._floor = resident_bytes() or now
