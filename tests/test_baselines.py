import numpy as np
import pytest
import torch
from skimage.draw import disk

from pixelgroup.baselines import felzenszwalb_segments, slic_segments, watershed_nuclei
from pixelgroup.errors import InputError, InputTypeError
from pixelgroup.metrics import match_labels


def _nuclei(seed=0):
    """Three separate discs and a touching pair (radius 8, centres 14 px apart) of different
    brightness on a dark, noisy background: ``(image (1, 64, 80), gt (64, 80))``."""
    rng = np.random.default_rng(seed)
    gt = np.zeros((64, 80), np.int64)
    image = np.full((64, 80), 0.1)
    centres = [(14, 14), (14, 60), (48, 14), (46, 44), (46, 58)]
    for k, (centre, value) in enumerate(zip(centres, [0.9, 0.6, 0.7, 0.8, 0.5], strict=True), 1):
        rr, cc = disk(centre, 8, shape=gt.shape)
        gt[rr, cc], image[rr, cc] = k, value
    return (image + rng.normal(0, 0.03, image.shape))[None], gt


@pytest.mark.parametrize("seed", range(3))
def test_watershed_finds_separate_and_touching_nuclei(seed):
    image, gt = _nuclei(seed)
    labels = watershed_nuclei(torch.from_numpy(image).float())
    assert labels.shape == gt.shape and labels.dtype == np.int64
    counts = match_labels(gt, labels, [0.5, 0.8])
    assert counts.tp.tolist() == [5, 5] and counts.num_pred == 5  # the pair is split
    assert set(np.unique(labels)) == set(range(6))  # 0 background, ids 1..5


def test_watershed_drops_specks_and_reads_a_constant_image_as_background():
    image, _ = _nuclei()
    image[0, 30:32, 70:72] = 1.0  # a 4-pixel speck
    labels = watershed_nuclei(image, min_area=16)
    assert labels.max() == 5 and labels[30, 70] == 0
    assert watershed_nuclei(np.zeros((2, 8, 8))).tolist() == np.zeros((8, 8), int).tolist()


def _quadrants(seed=0):
    """``(image (3, 40, 40), regions (40, 40))``: four flat colours with a little noise."""
    rng = np.random.default_rng(seed)
    regions = np.zeros((40, 40), np.int64)
    regions[:20, 20:], regions[20:, :20], regions[20:, 20:] = 1, 2, 3
    colours = np.array([[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.2, 0.2, 0.9], [0.9, 0.9, 0.2]])
    image = colours[regions].transpose(2, 0, 1) + rng.normal(0, 0.01, (3, 40, 40))
    return image, regions


@pytest.mark.parametrize(
    "segment", [felzenszwalb_segments, lambda x: slic_segments(x, num_segments=16)]
)
def test_photo_segments_stay_inside_flat_regions(segment):
    image, regions = _quadrants()
    labels = segment(image)
    assert labels.shape == (40, 40) and labels.dtype == np.int64 and labels.min() == 1
    for k in np.unique(labels):  # every segment lies in one region
        assert np.unique(regions[labels == k]).size == 1
    assert 4 <= len(np.unique(labels)) <= 20


def test_felzenszwalb_finds_the_four_regions():
    image, regions = _quadrants()
    labels = felzenszwalb_segments(torch.from_numpy(image))
    assert match_labels(regions + 1, labels, [0.95]).tp.tolist() == [4]


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: watershed_nuclei(np.zeros((8, 8))), InputError, r"shape \(C, H, W\)"),
        (lambda: watershed_nuclei([[[0.0]]]), InputTypeError, "torch.Tensor or numpy array"),
        (
            lambda: watershed_nuclei(np.full((1, 4, 4), np.nan)),
            InputError,
            "16 non-finite values",
        ),
        (lambda: watershed_nuclei(np.zeros((1, 4, 4)), sigma=0), InputError, "sigma must be"),
        (
            lambda: watershed_nuclei(np.zeros((1, 4, 4)), min_distance=0),
            InputError,
            "min_distance must be >= 1",
        ),
        (lambda: felzenszwalb_segments(np.zeros((3, 4, 4)), scale=-1), InputError, "scale"),
        (lambda: slic_segments(np.zeros((3, 4, 4)), sigma=-1.0), InputError, "sigma"),
        (
            lambda: slic_segments(np.zeros((3, 4, 4)), num_segments=2.5),
            InputTypeError,
            "num_segments must be an int",
        ),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()
