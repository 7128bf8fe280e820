import numpy as np
import pytest
import torch

from pixelgroup.data import InstanceSample, ToyDigits, collate_instances
from pixelgroup.data.toy import CLASS_COLORS, _split_indices


def test_shapes_dtypes_and_ranges():
    s = ToyDigits("train", 4)[0]
    assert isinstance(s, InstanceSample)
    assert s.image.shape == (3, 64, 64) and s.image.dtype == torch.float32
    assert s.instance.shape == s.semantic.shape == (64, 64)
    assert s.instance.dtype == s.semantic.dtype == torch.int64
    assert 0 <= float(s.image.min()) and float(s.image.max()) <= 1
    assert int(s.semantic.max()) <= 10


def test_deterministic_and_seed_dependent():
    a, b = ToyDigits("val", 3, seed=5)[2], ToyDigits("val", 3, seed=5)[2]
    c = ToyDigits("val", 3, seed=6)[2]
    assert torch.equal(a.image, b.image) and torch.equal(a.instance, b.instance)
    assert not torch.equal(a.image, c.image)


def test_masks_agree_with_ink_and_colours():
    for i in range(6):
        s = ToyDigits("test", 6, seed=1)[i]
        fg = s.image.amax(0) > 0
        assert torch.equal(fg, s.instance > 0)
        assert torch.equal(s.instance > 0, s.semantic > 0)
        # each instance has one class, and every pixel's colour is ink x that class's colour
        for k in s.instance.unique()[1:]:
            classes = s.semantic[s.instance == k].unique()
            assert classes.numel() == 1
            rgb = s.image[:, s.instance == k].T.numpy()
            colour = CLASS_COLORS[int(classes) - 1]
            ink = rgb.max(1, keepdims=True)
            np.testing.assert_allclose(rgb, ink * colour, atol=1e-6)


def test_same_class_variant_and_digit_count():
    ds = ToyDigits("train", 20, same_class_fraction=1.0, max_digits=4)
    for i in range(20):
        s = ds[i]
        assert s.semantic.unique()[1:].numel() <= 1
        assert int(s.instance.max()) <= 4
    assert max(int(ToyDigits("train", 20, max_digits=0)[i].instance.max()) for i in range(5)) == 0


def test_splits_share_no_glyph():
    for c in range(10):
        parts = [set(_split_indices(split)[c].tolist()) for split in ("train", "val", "test")]
        assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
        assert all(parts)


def test_collate_batches():
    ds = ToyDigits("train", 3)
    batch = collate_instances([ds[0], ds[1]])
    assert batch.image.shape == (2, 3, 64, 64) and batch.instance.shape == (2, 64, 64)


def test_collate_rejects_mixed_sizes():
    a = ToyDigits("train", 1)[0]
    b = InstanceSample(a.image[:, :32], a.instance[:32], a.semantic[:32])
    with pytest.raises(ValueError, match="different shapes"):
        collate_instances([a, b])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"split": "tests"}, ValueError, "split must be one of"),
        ({"length": 0}, ValueError, "length must be an int >= 1"),
        ({"same_class_fraction": 1.5}, ValueError, "same_class_fraction"),
        ({"max_digits": 10}, ValueError, "max_digits must lie in 0..9"),
        ({"max_digits": 2.0}, TypeError, "max_digits must be an int"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        ToyDigits(**kwargs)


def test_index_out_of_range():
    with pytest.raises(IndexError, match="out of range"):
        ToyDigits("train", 2)[2]
