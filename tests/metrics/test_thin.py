"""The fast thinning of the BSDS benchmark equals scikit-image's."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io as sio
from skimage import color, filters
from skimage.morphology import thin as skimage_thin

from pixelgroup.metrics._bsds_match import thin


@pytest.mark.parametrize("seed", range(4))
def test_thin_equals_skimage_on_random_maps(seed):
    rng = np.random.default_rng(seed)
    for _ in range(50):
        shape = tuple(int(v) for v in rng.integers(1, 40, 2))
        mask = rng.random(shape) < rng.uniform(0.05, 0.95)
        np.testing.assert_array_equal(thin(mask), skimage_thin(mask))


def test_thin_equals_skimage_on_thresholded_samples(shared_data):
    image = sio.loadmat(shared_data / "bsds" / "130066.mat", squeeze_me=True)["im"]
    pb = filters.sobel(color.rgb2gray(image))
    pb = (np.round(pb / pb.max() * 255) / 255)[:200, :200]
    for t in (0.01, 0.05, 0.2, 0.6):
        np.testing.assert_array_equal(thin(pb >= t), skimage_thin(pb >= t))
    assert not thin(np.zeros((5, 5), bool)).any()
