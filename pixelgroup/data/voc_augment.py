"""The VOC instance recipe's joint image + label augmentation (docs/instance.md).

Training (each step with its probability; ``p`` = 0.7 is the original's ``rand > 0.3``):

1. horizontal flip, probability 0.5;
2. random crop removing ``crop`` (10) pixels in total per axis, at a random offset;
3. gamma, prob. ``p``: Z ~ U(−0.03, 0.03), γ = ln(0.5 + Z/√2) / ln(0.5 − Z/√2), img ← img^γ;
4. per-channel gain, prob. ``p``: U(0.8, 1.2) per channel, then clip to [0, 1];
5. rotation, prob. ``p`` and only if the short side > ``min_short_side`` (200): an integer
   angle in [−15°, 15°] (:func:`rotate_crop`): the canvas grows to hold the whole rotated
   image (MATLAB's ``imrotate``), bilinear for the image (torchvision has no bicubic rotation
   of tensors), nearest for the labels, then ceil(W·|sin θ|) rows and ceil(H·|sin θ|) columns
   are cut from each side to drop the filled corners (a 375 x 500 image at 15° ends 233 x 386);
6. scale, prob. ``p`` and only if the short side > ``min_short_side``: a factor in
   {0.70, 0.71, ..., 1.50};
7. always: if the long side exceeds ``max_size`` (800) shrink it to that, then round both sides
   to a multiple of ``multiple`` (8). Images are resized bicubic (antialiased), labels nearest.

Validation (``train=False``) applies only step 7 (VOC images are <= 500 px, so only rounding).
Labels are never interpolated: every output label value occurs in the input, or is
``ignore_index`` where a rotation had to fill. Geometry comes from
:mod:`torchvision.transforms.v2.functional`; randomness only from the generator passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from pixelgroup._config_io import option
from pixelgroup.data.sample import InstanceSample
from pixelgroup.data.voc import IGNORE_INDEX

__all__ = ["VOCAugmentOptions", "VOCAugment", "rotate_crop"]


@dataclass(frozen=True)
class VOCAugmentOptions:
    """The ``voc_instance`` task's own ``data.options`` keys (the rest go to the ``voc``
    dataset): ``augment`` the training split with :class:`VOCAugment`, cap the longest side at
    ``max_size`` (both splits)."""

    augment: bool = True
    max_size: int = option(800, min=1)


def _uniform(g: torch.Generator, low: float, high: float, size: int = 1) -> torch.Tensor:
    return low + (high - low) * torch.rand(size, generator=g, dtype=torch.float64)


def _rand(g: torch.Generator) -> float:
    return float(torch.rand(1, generator=g, dtype=torch.float64))


def _randint(g: torch.Generator, low: int, high: int) -> int:
    """An int in ``low..high`` inclusive."""
    return int(torch.randint(low, high + 1, (1,), generator=g))


class VOCAugment:
    """Joint augmentation of an :class:`InstanceSample` (see the module docstring).

    Args:
        train: all steps (True) or only the size rounding (False).
        p: probability of gamma, gain, rotation and scale (0.7).
        crop: pixels removed per axis by the random crop (10).
        max_rotation: largest |angle| in degrees (15).
        scale: ``(low, high)`` scale factors, drawn in steps of 0.01 ((0.7, 1.5)).
        min_short_side: rotation and scale only for images whose short side exceeds this (200).
        max_size: longest side after scaling (800).
        multiple: output sides are multiples of this (8).
        ignore_index: label written where a rotation fills pixels (255).

    Call: ``augment(sample, generator)`` with ``sample.image (3, H, W)`` float in [0, 1] and
    ``instance``, ``semantic (H, W)`` int64 -> a new sample of size ``(H', W')``, both
    multiples of ``multiple``. The same generator state gives the same output.

    Example:
        >>> s = InstanceSample(torch.rand(3, 30, 45), torch.zeros(30, 45, dtype=torch.long),
        ...                    torch.zeros(30, 45, dtype=torch.long))
        >>> VOCAugment()(s, torch.Generator().manual_seed(0)).image.shape[1:]
        torch.Size([16, 32])
    """

    def __init__(
        self,
        train: bool = True,
        *,
        p: float = 0.7,
        crop: int = 10,
        max_rotation: int = 15,
        scale: tuple[float, float] = (0.7, 1.5),
        min_short_side: int = 200,
        max_size: int = 800,
        multiple: int = 8,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1], got {p}")
        if crop < 0 or max_rotation < 0 or max_rotation >= 90:
            raise ValueError(
                f"need crop >= 0 and 0 <= max_rotation < 90, got {crop} and {max_rotation}"
            )
        if len(scale) != 2 or not 0.0 < scale[0] <= scale[1]:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {scale!r}")
        if multiple < 1 or max_size < multiple:
            raise ValueError(
                f"need multiple >= 1 and max_size >= multiple, got {multiple} and {max_size}"
            )
        self.train = train
        self.p = p
        self.crop = crop
        self.max_rotation = max_rotation
        self.scale = (float(scale[0]), float(scale[1]))
        self.min_short_side = min_short_side
        self.max_size = max_size
        self.multiple = multiple
        self.ignore_index = ignore_index

    def __repr__(self) -> str:
        return (
            f"VOCAugment(train={self.train}, p={self.p}, crop={self.crop}, "
            f"max_rotation={self.max_rotation}, scale={self.scale}, max_size={self.max_size}, "
            f"multiple={self.multiple})"
        )

    def __call__(
        self, sample: InstanceSample, generator: torch.Generator | None = None
    ) -> InstanceSample:
        image = sample.image
        if image.dim() != 3 or image.shape[0] != 3 or not image.is_floating_point():
            raise ValueError(
                f"sample.image must be a float (3, H, W) tensor, got {image.dtype} "
                f"{tuple(image.shape)}"
            )
        labels = torch.stack([sample.instance, sample.semantic])  # (2, H, W)
        if labels.shape[1:] != image.shape[1:]:
            raise ValueError(
                f"label maps are {tuple(labels.shape[1:])} but the image is "
                f"{tuple(image.shape[1:])}"
            )
        if self.train:
            if generator is None:
                raise ValueError("VOCAugment(train=True) needs an explicit torch.Generator")
            image, labels = self._random(image, labels, generator)
        image, labels = self._fit_size(image, labels)
        return InstanceSample(image.clamp(0.0, 1.0), labels[0], labels[1])

    def _random(
        self, image: torch.Tensor, labels: torch.Tensor, g: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if _rand(g) < 0.5:
            image, labels = TF.horizontal_flip(image), TF.horizontal_flip(labels)
        h, w = image.shape[1:]
        if self.crop and min(h, w) > self.crop + self.multiple:
            top, left = _randint(g, 0, self.crop), _randint(g, 0, self.crop)
            nh, nw = h - self.crop, w - self.crop
            image = TF.crop(image, top, left, nh, nw)
            labels = TF.crop(labels, top, left, nh, nw)
        if _rand(g) < self.p:
            z = float(_uniform(g, -0.03, 0.03))
            gamma = math.log(0.5 + z / math.sqrt(2)) / math.log(0.5 - z / math.sqrt(2))
            image = TF.adjust_gamma(image, gamma)
        if _rand(g) < self.p:
            gain = _uniform(g, 0.8, 1.2, 3).to(image.dtype)
            image = (image * gain[:, None, None]).clamp(0.0, 1.0)
        if min(image.shape[1:]) > self.min_short_side and _rand(g) < self.p:
            angle = _randint(g, -self.max_rotation, self.max_rotation)
            image, labels = self._rotate(image, labels, angle)
        if min(image.shape[1:]) > self.min_short_side and _rand(g) < self.p:
            lo, hi = round(self.scale[0] * 100), round(self.scale[1] * 100)
            factor = _randint(g, lo, hi) / 100
            h, w = image.shape[1:]
            image, labels = self._resize(image, labels, round(h * factor), round(w * factor))
        return image, labels

    def _rotate(
        self, image: torch.Tensor, labels: torch.Tensor, angle: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return rotate_crop(image, labels, angle, fill=self.ignore_index, multiple=self.multiple)

    def _resize(
        self, image: torch.Tensor, labels: torch.Tensor, h: int, w: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if (h, w) == tuple(image.shape[1:]):
            return image, labels
        image = TF.resize(image, [h, w], interpolation=InterpolationMode.BICUBIC, antialias=True)
        labels = TF.resize(labels, [h, w], interpolation=InterpolationMode.NEAREST_EXACT)
        return image, labels

    def _fit_size(
        self, image: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = image.shape[1:]
        shrink = min(1.0, self.max_size / max(h, w))
        m = self.multiple
        nh = max(m, round(h * shrink / m) * m)
        nw = max(m, round(w * shrink / m) * m)
        return self._resize(image, labels, nh, nw)


def rotate_crop(
    image: torch.Tensor,
    labels: torch.Tensor,
    angle: float,
    *,
    fill: int = IGNORE_INDEX,
    multiple: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The original's rotation step (``getImgBatch_augVOC2012.m``): rotate by ``angle``
    degrees (counter-clockwise) on a canvas grown to hold the whole rotated image, as MATLAB's
    ``imrotate`` does, then cut ``ceil(W·|sin θ|)`` rows and ``ceil(H·|sin θ|)`` columns from
    each side, which drops the filled corners.

    Args:
        image: ``(C, H, W)`` float image (bilinear; the original is bicubic, which torchvision
            does not offer for tensors).
        labels: ``(L, H, W)`` integer label maps (nearest; ``fill`` where the canvas grew).
        angle: θ in degrees; 0 returns the inputs.
        fill: label value of the pixels outside the rotated image.
        multiple: the cut is skipped when it would leave a side shorter than this.

    Returns:
        ``(image, labels)`` of size about ``(H·cos θ − W·|sin θ|, W·cos θ − H·|sin θ|)``.

    Example:
        >>> img, lab = rotate_crop(torch.rand(3, 375, 500), torch.zeros(1, 375, 500), 15)
        >>> tuple(img.shape[1:])
        (233, 386)
    """
    if angle == 0:
        return image, labels
    h, w = image.shape[1:]
    image = TF.rotate(image, float(angle), interpolation=InterpolationMode.BILINEAR, expand=True)
    labels = TF.rotate(
        labels, float(angle), interpolation=InterpolationMode.NEAREST, expand=True, fill=fill
    )
    s = abs(math.sin(math.radians(angle)))
    dy, dx = math.ceil(w * s), math.ceil(h * s)
    ch, cw = image.shape[1:]
    if ch - 2 * dy >= multiple and cw - 2 * dx >= multiple:
        image = image[:, dy : ch - dy, dx : cw - dx]
        labels = labels[:, dy : ch - dy, dx : cw - dx]
    return image, labels
