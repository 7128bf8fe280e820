"""``pixelgroup/_memory.py``: freed heap pages go back to the system when the process grows."""

from __future__ import annotations

import numpy as np
import pytest

from pixelgroup._memory import HeapTrimmer, _malloc_trim, resident_bytes


def test_resident_set_is_read():
    rss = resident_bytes()
    if rss is None:
        pytest.skip("no /proc/self/statm here")
    assert 2**20 < rss < 1e6 * 2**20  # 1 MiB to 1e6 MiB


@pytest.mark.skipif(_malloc_trim() is None or resident_bytes() is None, reason="needs glibc")
def test_trims_only_after_the_resident_set_grew_by_the_slack():
    _malloc_trim()(0)  # free pages earlier tests left: the allocation below must grow the set
    trim = HeapTrimmer(slack_mib=64)
    trim()  # the first call sets the floor
    trim()
    assert trim.trims == 0
    grown = np.ones(128 * 2**20 // 8)  # 128 MiB touched: the resident set grows
    trim()
    assert trim.trims == 1
    trim()  # no growth since the trim
    assert trim.trims == 1
    del grown
