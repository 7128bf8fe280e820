"""VOCAugment: sizes multiple of 8, labels never interpolated, determinism, and errors."""

from __future__ import annotations

import math

import pytest
import torch

from pixelgroup.data.sample import InstanceSample
from pixelgroup.data.transforms import AugmentedDataset
from pixelgroup.data.voc import MatInstances
from pixelgroup.data.voc_augment import VOCAugment, rotate_crop


def _sample(h=37, w=53, seed=0):
    g = torch.Generator().manual_seed(seed)
    inst = torch.zeros(h, w, dtype=torch.long)
    inst[5:20, 4:30] = 1
    inst[22:35, 20:50] = 7
    inst[18:24, :] = 255  # void band
    sem = torch.where(inst == 1, 3, torch.where(inst == 7, 15, inst))
    return InstanceSample(torch.rand(3, h, w, generator=g), inst, sem)


@pytest.mark.parametrize("seed", range(6))
def test_train_sizes_and_labels(seed):
    aug = VOCAugment(min_short_side=0, p=1.0)  # every step on a tiny image
    s = _sample()
    out = aug(s, torch.Generator().manual_seed(seed))
    h, w = out.image.shape[1:]
    assert h % 8 == 0 and w % 8 == 0 and out.instance.shape == (h, w) == out.semantic.shape
    assert out.image.dtype == torch.float32 and 0.0 <= out.image.min() <= out.image.max() <= 1.0
    assert set(out.instance.unique().tolist()) <= {0, 1, 7, 255}
    assert set(out.semantic.unique().tolist()) <= {0, 3, 15, 255}
    # instance and semantic move together: class 3 only where instance 1, etc.
    assert (out.semantic[out.instance == 1] == 3).all()
    assert (out.semantic[out.instance == 7] == 15).all()


def test_deterministic_given_generator():
    aug, s = VOCAugment(min_short_side=0), _sample()
    a = aug(s, torch.Generator().manual_seed(3))
    b = aug(s, torch.Generator().manual_seed(3))
    c = aug(s, torch.Generator().manual_seed(4))
    assert torch.equal(a.image, b.image) and torch.equal(a.instance, b.instance)
    assert a.image.shape != c.image.shape or not torch.equal(a.image, c.image)


def test_validation_only_rounds_and_long_side_capped():
    s = _sample(37, 53)
    out = VOCAugment(train=False)(s)
    assert tuple(out.image.shape[1:]) == (40, 56)
    big = VOCAugment(train=False, max_size=32)(s)
    assert max(big.image.shape[1:]) <= 32 and big.image.shape[1] % 8 == 0


def test_flip_only_mirrors():
    aug = VOCAugment(p=0.0, crop=0)  # only the flip is random
    s = _sample(32, 48)
    outs = [aug(s, torch.Generator().manual_seed(i)) for i in range(8)]
    flipped = [o for o in outs if not torch.equal(o.instance, s.instance)]
    assert flipped and len(flipped) < len(outs)
    for o in flipped:
        assert torch.equal(o.instance, s.instance.flip(-1))
        assert torch.equal(o.image, s.image.flip(-1))


def test_real_voc_sample(shared_data):
    ds = AugmentedDataset(MatInstances(shared_data / "voc"), VOCAugment(), seed=1)
    a = ds[0]
    ds.set_epoch(1)
    b = ds[0]
    ds.set_epoch(0)
    assert torch.equal(ds[0].image, a.image)  # same (seed, epoch, index): same augmentation
    assert a.image.shape[1] % 8 == 0 and a.image.shape[2] % 8 == 0
    assert not torch.equal(a.image, b.image) or a.image.shape != b.image.shape
    raw = MatInstances(shared_data / "voc")[0]
    assert set(a.instance.unique().tolist()) <= set(raw.instance.unique().tolist()) | {255}


def test_errors():
    s = _sample()
    with pytest.raises(ValueError, match="needs an explicit torch.Generator"):
        VOCAugment()(s)
    with pytest.raises(ValueError, match=r"sample.image must be a float \(3, H, W\)"):
        VOCAugment(train=False)(InstanceSample(s.image[:1], s.instance, s.semantic))
    with pytest.raises(ValueError, match="label maps are"):
        VOCAugment(train=False)(InstanceSample(s.image, s.instance[:5], s.semantic[:5]))
    with pytest.raises(ValueError, match="p must be a probability"):
        VOCAugment(p=1.5)
    with pytest.raises(ValueError, match="max_rotation < 90"):
        VOCAugment(max_rotation=90)
    with pytest.raises(ValueError, match="scale must be"):
        VOCAugment(scale=(1.5, 0.7))
    with pytest.raises(ValueError, match="max_size >= multiple"):
        VOCAugment(max_size=4)


def _original_rotated_size(h: int, w: int, angle: int) -> tuple[int, int]:
    """getImgBatch_augVOC2012.m: imrotate's canvas holds the whole rotated image (its bounding
    box), then ceil(W|sin|) rows and ceil(H|sin|) columns are cut from each side."""
    s, c = abs(math.sin(math.radians(angle))), math.cos(math.radians(angle))
    canvas_h, canvas_w = h * c + w * s, w * c + h * s
    return (
        round(canvas_h - 2 * math.ceil(w * s)),
        round(canvas_w - 2 * math.ceil(h * s)),
    )


@pytest.mark.parametrize(
    ("h", "w", "angle"),
    [
        (375, 500, 15),
        (375, 500, -15),
        (500, 375, 15),
        (333, 500, 7),
        (281, 500, -3),
        (500, 500, 10),
        (240, 320, 1),
    ],
)
def test_rotation_keeps_the_original_size(h, w, angle):
    """A 375 x 500 image at 15 degrees ends about 233 x 385 as in the original, not 115 x 304
    (the rotation on a canvas of the input's size, then the same cuts)."""
    image = torch.rand(3, h, w)
    labels = torch.ones(2, h, w, dtype=torch.long)
    out, out_labels = VOCAugment()._rotate(image, labels, angle)
    eh, ew = _original_rotated_size(h, w, angle)
    assert abs(out.shape[1] - eh) <= 2 and abs(out.shape[2] - ew) <= 2, (out.shape, eh, ew)
    assert out_labels.shape[1:] == out.shape[1:]
    # the cuts drop the filled corners: (almost) no fill label is left
    assert (out_labels == 255).float().mean() < 0.01


def test_rotate_crop_zero_angle_and_fill():
    image, labels = torch.rand(3, 40, 60), torch.zeros(1, 40, 60, dtype=torch.long)
    same = rotate_crop(image, labels, 0)
    assert same[0] is image and same[1] is labels
    _, rotated = rotate_crop(image, labels, 15, fill=7, multiple=10**6)  # cut skipped
    assert rotated.shape[1] > 40 and (rotated == 7).any()
