import math

import torch

from pixelgroup.data.object_sizes import object_sizes, spatial_scale_advice


def test_equivalent_diameters_and_percentiles():
    mask = torch.zeros(64, 64, dtype=torch.long)
    mask[:10, :10] = 1  # 100 px
    mask[20:40, 20:40] = 2  # 400 px
    mask[50:52, 50:52] = -1  # ignored: not an object
    sizes = object_sizes([mask, torch.zeros(8, 8, dtype=torch.long)])
    assert sizes.count == 2
    assert math.isclose(sizes.median, (math.sqrt(400 / math.pi) + math.sqrt(1600 / math.pi)) / 2)
    assert sizes.low < sizes.median < sizes.high
    assert "2 objects" in str(sizes)
    assert object_sizes([torch.zeros(4, 4, dtype=torch.long)]) is None


def test_advice_only_when_the_scale_misfits():
    mask = torch.zeros(100, 100, dtype=torch.long)
    mask[:24, :24] = 1  # ~27 px across
    sizes = object_sizes([mask])
    assert spatial_scale_advice(sizes, 6.0) is None
    advice = spatial_scale_advice(sizes, 30.0)
    assert "spatial_scale=10.2" in advice and "3/8 of their diameter" in advice
    assert "~27 px" in advice
    assert spatial_scale_advice(sizes, 4.0) is not None  # below a sixth: too short
