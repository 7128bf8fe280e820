"""The fused small-D GBMS kernels (``_gbms_small_dim.cpp``), compiled at first use.

Built once per machine by :func:`pixelgroup._native.compiled_library` (system compiler,
``-march=native``, cached; see there for the folders and variables). The build took 5.3 s on
the AVX-512 kind (gcc 12; 4.4 s for AVX2 code). Where no compiler works, or with
``PIXELGROUP_NATIVE=0``, :func:`small_dim_kernels` returns None (after one warning if a compile
failed) and the layer runs its torch path: same results within rounding.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from pixelgroup._native import compiled_library

__all__ = ["small_dim_kernels", "MAX_NATIVE_DIM"]

MAX_NATIVE_DIM = 8
_SOURCE = Path(__file__).with_name("_gbms_small_dim.cpp")


def _declare(lib: ctypes.CDLL) -> None:
    """The result types of the library's two size queries."""
    for query in (lib.pg_block_rows, lib.pg_scratch_elements):
        query.restype = ctypes.c_int64


def small_dim_kernels() -> ctypes.CDLL | None:
    """The compiled kernels (``pg_forward_f32_d3``, ``pg_backward_f64_d8``, ...), or None
    where they are disabled or cannot be built (then the torch path runs). ``PIXELGROUP_NATIVE``
    is read at every call, so a benchmark can set it to compare both paths in one process."""
    if os.environ.get("PIXELGROUP_NATIVE", "1") == "0":
        return None
    return compiled_library(
        _SOURCE, "the fused small-D GBMS kernels", "the GBMS layer runs its torch path", _declare
    )
