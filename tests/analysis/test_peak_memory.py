import sys
import time

import numpy as np
import pytest

from pixelgroup.analysis.benchmark import PeakMemory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("interval", [0.002, None])
def test_peak_memory_sees_a_block_of_64_mib(interval):
    with PeakMemory("cpu", interval=interval) as memory:
        block = np.ones(64 * 2**20, dtype=np.uint8)
        time.sleep(0.05)  # a few samples while it lives
        del block
    if interval is not None:  # the sampler saw the block; without it only the end counts
        assert memory.peak > 32 * 2**20
    assert memory.rss_mib is None or memory.rss_mib > 64
    assert memory.cuda_mib is None
