"""Synthetic multi-digit instance segmentation, generated offline and deterministically.

The original toy task (docs/toy.md) places MNIST digits on a 64 x 64 canvas. MNIST needs a
download, so the glyphs here come from scikit-learn's bundled handwritten digits
(:func:`sklearn.datasets.load_digits`: 1797 glyphs of 8 x 8, 0..16), upsampled to 24 x 24 and
randomly deformed (affine + smooth elastic warp). Per canvas:

* 0..9 digits (uniform) go to a random permutation of a 3 x 3 grid of overlapping 28 x 28 slots
  at offsets {0, 17, 35}; a later digit overwrites earlier content wherever its ink is > 0
  (image and masks), so occluded parts are lost.
* each class has a fixed colour; pixel RGB = ink x colour of its class.
* ``same_class_fraction`` of the canvases use a single random class for all their digits,
  which forces instances of one class apart (the original's "part 2").

Splits ``train`` / ``val`` / ``test`` draw from disjoint glyph samples (70 / 10 / 20 % of each
class), so no glyph is shared. Canvas ``i`` of a split depends only on ``(seed, split, i)``.
Masks: ``instance`` 0 = background, 1..n placement order; ``semantic`` 0 = background,
1..10 = digit class + 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np
import torch
from scipy import ndimage
from skimage.transform import AffineTransform, resize
from torch.utils.data import Dataset

from pixelgroup._checks import check_count
from pixelgroup._config_io import option
from pixelgroup.data.sample import InstanceSample

__all__ = ["ToyDigits", "ToyOptions", "CLASS_COLORS", "SLOT_OFFSETS", "SPLITS", "render_canvas"]

CANVAS = 64
GLYPH = 24
SLOT = 28
SLOT_OFFSETS = (0, 17, 35)
SPLITS = ("train", "val", "test")
_SPLIT_FRACTIONS = (0.7, 0.1, 0.2)
_INK_FLOOR = 0.15  # ink below this after warping is background (keeps masks crisp)


@dataclass(frozen=True)
class ToyOptions:
    """``data.name: toy`` (:class:`ToyDigits`): canvases per split and their generator's
    settings (``length`` for the training split, ``eval_length`` else).
    ``annotated_fraction`` < 1 leaves only that share of each training canvas's digits
    annotated, the others unannotated (:class:`~pixelgroup.data.partial.PartialAnnotation`)."""

    length: int = option(4000, min=1)
    eval_length: int = option(200, min=1)
    seed: int = option(0, min=0)
    same_class_fraction: float = option(0.33, min=0, max=1)
    max_digits: int = option(9, min=1)
    annotated_fraction: float = option(1.0, min=0, max=1)


def _class_colors() -> np.ndarray:
    rng = np.random.default_rng(777)
    colors = rng.uniform(0.15, 1.0, size=(10, 3))
    return colors / colors.max(axis=1, keepdims=True)


CLASS_COLORS: np.ndarray = _class_colors()
"""(10, 3) float RGB colour of each digit class, brightest channel 1."""


@lru_cache(maxsize=1)
def _glyphs() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images.astype(np.float64) / 16.0, digits.target.astype(np.int64)


@cache
def _split_indices(split: str) -> tuple[np.ndarray, ...]:
    """Glyph indices of ``split`` per class: a fixed per-class 70/10/20 partition."""
    _, targets = _glyphs()
    part = SPLITS.index(split)
    out = []
    for c in range(10):
        idx = np.flatnonzero(targets == c)
        idx = idx[np.random.default_rng(1234 + c).permutation(len(idx))]
        bounds = np.round(np.cumsum((0.0,) + _SPLIT_FRACTIONS) * len(idx)).astype(int)
        out.append(idx[bounds[part] : bounds[part + 1]])
    return tuple(out)


def _deform(glyph: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """8 x 8 glyph -> (SLOT, SLOT) ink in [0, 1] after upsampling and a random smooth warp."""
    big = resize(glyph, (GLYPH, GLYPH), order=3, mode="constant", anti_aliasing=False)
    canvas = np.zeros((SLOT, SLOT))
    pad = (SLOT - GLYPH) // 2
    canvas[pad : pad + GLYPH, pad : pad + GLYPH] = np.clip(big, 0, 1)
    center = np.array([SLOT / 2 - 0.5, SLOT / 2 - 0.5])
    scale = rng.uniform(0.85, 1.15, size=2)
    affine = (
        AffineTransform(translation=-center)
        + AffineTransform(
            scale=scale, rotation=rng.uniform(-0.25, 0.25), shear=rng.uniform(-0.2, 0.2)
        )
        + AffineTransform(translation=center + rng.uniform(-1.5, 1.5, size=2))
    )
    rows, cols = np.mgrid[0:SLOT, 0:SLOT].astype(np.float64)
    coords = np.stack([cols, rows], -1).reshape(-1, 2)
    src = affine.inverse(coords).reshape(SLOT, SLOT, 2)
    # smooth elastic displacement (alpha ~ 1.5 px), the classic MNIST augmentation
    for k in range(2):
        field = ndimage.gaussian_filter(rng.uniform(-1, 1, (SLOT, SLOT)), sigma=4.0)
        src[..., k] += 1.5 * field / (np.abs(field).max() + 1e-12)
    ink = ndimage.map_coordinates(canvas, [src[..., 1], src[..., 0]], order=1, cval=0.0)
    ink = np.clip(ink, 0.0, 1.0)
    ink[ink < _INK_FLOOR] = 0.0
    return ink


def render_canvas(
    glyph_ids: np.ndarray, slots: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paint glyphs (indices into the bundled digits) into slots 0..8 in order.

    Returns ``image (64, 64, 3)`` float, ``instance (64, 64)`` and ``semantic (64, 64)`` int64.
    """
    images, targets = _glyphs()
    image = np.zeros((CANVAS, CANVAS, 3))
    instance = np.zeros((CANVAS, CANVAS), dtype=np.int64)
    semantic = np.zeros((CANVAS, CANVAS), dtype=np.int64)
    for order, (gid, slot) in enumerate(zip(glyph_ids, slots, strict=True), start=1):
        ink = _deform(images[gid], rng)
        r, c = SLOT_OFFSETS[slot // 3], SLOT_OFFSETS[slot % 3]
        region = (slice(r, r + SLOT), slice(c, c + SLOT))
        on = ink > 0
        image[region][on] = ink[on, None] * CLASS_COLORS[targets[gid]]
        instance[region][on] = order
        semantic[region][on] = targets[gid] + 1
    return image, instance, semantic


class ToyDigits(Dataset):
    """Synthetic multi-digit canvases (see the module docstring).

    Args:
        split: ``"train"``, ``"val"`` or ``"test"`` (disjoint glyph samples).
        length: number of canvases in the split.
        seed: base seed; canvas ``i`` is a pure function of ``(seed, split, i)``.
        same_class_fraction: fraction of canvases whose digits all share one class.
        max_digits: most digits per canvas (0..max_digits, uniform; at most 9 slots).

    Items are :class:`InstanceSample` with ``image (3, 64, 64)`` and ``(64, 64)`` masks.
    """

    def __init__(
        self,
        split: str = "train",
        length: int = 1000,
        *,
        seed: int = 0,
        same_class_fraction: float = 0.33,
        max_digits: int = 9,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        check_count(length, "length")
        if not 0.0 <= same_class_fraction <= 1.0:
            raise ValueError(f"same_class_fraction must lie in [0, 1], got {same_class_fraction}")
        if isinstance(max_digits, bool) or not isinstance(max_digits, int):
            raise TypeError(f"max_digits must be an int, got {type(max_digits).__name__}")
        if not 0 <= max_digits <= 9:
            raise ValueError(f"max_digits must lie in 0..9 (3 x 3 slots), got {max_digits}")
        self.split, self.length, self.seed = split, length, seed
        self.same_class_fraction, self.max_digits = same_class_fraction, max_digits

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> InstanceSample:
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} canvases")
        index %= self.length
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split), index])
        per_class = _split_indices(self.split)
        n = int(rng.integers(0, self.max_digits + 1))
        if rng.random() < self.same_class_fraction:
            pool = per_class[int(rng.integers(10))]
            glyph_ids = rng.choice(pool, size=n, replace=False)
        else:
            classes = rng.integers(0, 10, size=n)
            glyph_ids = np.array([rng.choice(per_class[c]) for c in classes], dtype=np.int64)
        slots = rng.permutation(9)[:n]
        image, instance, semantic = render_canvas(glyph_ids, slots, rng)
        return InstanceSample(
            image=torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32)),
            instance=torch.from_numpy(instance),
            semantic=torch.from_numpy(semantic),
        )
