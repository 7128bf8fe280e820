"""Sample transforms: seeded augmentation (one dataset wrapper for every task), the boundary
task's crop/flip, own data's instance augmentation, and the joint resize of instance samples.

:class:`AugmentedDataset` draws item ``i`` of epoch ``e`` with a generator seeded from
``(seed, e, i)`` only, so an augmentation never depends on DataLoader workers, ranks or what
was drawn before: a resumed or distributed run sees exactly the augmentations of an
uninterrupted one-process run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from pixelgroup._checks import check_size
from pixelgroup._config_io import option
from pixelgroup.data.bsds import BoundarySample
from pixelgroup.data.sample import InstanceSample
from pixelgroup.errors import ConfigError

__all__ = [
    "AugmentedDataset",
    "CropFlip",
    "CropFlipOptions",
    "InstanceAugment",
    "AugmentOptions",
    "ResizeSample",
    "augmented",
    "jitter_intensity",
]


class AugmentedDataset(Dataset):
    """``dataset`` seen through ``augment(sample, generator) -> sample``.

    Item ``i`` of epoch ``e`` uses ``torch.Generator().manual_seed(f(seed, e, i))``. Call
    :meth:`set_epoch` at each epoch start (the train loop does). ``length`` (default: the
    dataset's) larger than the dataset repeats it, item ``i`` showing sample ``i mod n`` with
    its own draw: a few images fill an epoch of many distinct augmented batches.
    """

    def __init__(
        self,
        dataset: Dataset,
        augment: Callable[..., Any],
        seed: int = 0,
        length: int | None = None,
    ) -> None:
        self.dataset = dataset
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.length = len(dataset) if length is None else length  # type: ignore[arg-type]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} items")
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 10_000_019 + index)
        return self.augment(self.dataset[index % len(self.dataset)], g)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"AugmentedDataset({self.augment!r}, seed={self.seed}, epoch={self.epoch})"


@dataclass(frozen=True)
class CropFlipOptions:
    """The ``boundary`` task's augmentation keys of ``data.options`` (:class:`CropFlip`):
    ``crop: [H, W]`` random training crop (None: whole image), ``flip`` random horizontal
    flips, ``turn`` vertical flips and 90° rotations too, ``jitter`` colour jitter strength
    (brightness, contrast and saturation factors in ``[1 - jitter, 1 + jitter]``; 0: none)."""

    crop: tuple[int, ...] | None = option(None, min=1)
    flip: bool = True
    turn: bool = False
    jitter: float = option(0.0, min=0, max=1)


class CropFlip:
    """Random ``crop (H, W)`` (``None``: whole image) and horizontal flip of a
    :class:`~pixelgroup.data.bsds.BoundarySample` (``image (3, H, W)``, ``boundaries
    (A, H, W)``), drawn from the generator passed in; with ``turn`` also a vertical flip and
    a rotation by a random multiple of 90° (of a non-square crop: 0° or 180°, so that a batch
    keeps one shape), with ``jitter`` > 0 brightness, contrast and saturation factors drawn
    from ``[1 - jitter, 1 + jitter]`` (the image only)."""

    def __init__(
        self,
        crop: tuple[int, ...] | None = None,
        flip: bool = True,
        turn: bool = False,
        jitter: float = 0.0,
    ) -> None:
        if crop is not None and (len(crop) != 2 or min(crop) < 1):
            raise ValueError(f"crop must be [H, W] with H, W >= 1, got {list(crop)}")
        if not 0.0 <= jitter <= 1.0:
            raise ValueError(f"jitter must be in [0, 1], got {jitter}")
        self.crop, self.flip, self.turn, self.jitter = crop, flip, turn, float(jitter)

    def __call__(self, sample: BoundarySample, generator: torch.Generator) -> BoundarySample:
        g = generator
        image, bounds = sample.image, sample.boundaries
        if self.crop is not None:
            ch, cw = min(self.crop[0], image.shape[1]), min(self.crop[1], image.shape[2])
            y = int(torch.randint(image.shape[1] - ch + 1, (1,), generator=g))
            x = int(torch.randint(image.shape[2] - cw + 1, (1,), generator=g))
            image, bounds = image[:, y : y + ch, x : x + cw], bounds[:, y : y + ch, x : x + cw]
        if self.flip and bool(torch.rand((), generator=g) < 0.5):
            image, bounds = image.flip(-1), bounds.flip(-1)
        if self.turn:
            if bool(torch.rand((), generator=g) < 0.5):
                image, bounds = image.flip(-2), bounds.flip(-2)
            square = image.shape[1] == image.shape[2]
            k = int(torch.randint(4 if square else 2, (1,), generator=g)) * (1 if square else 2)
            image, bounds = torch.rot90(image, k, (1, 2)), torch.rot90(bounds, k, (1, 2))
        if self.jitter > 0:
            j = self.jitter
            image = TF.adjust_brightness(image, _uniform(g, 1 - j, 1 + j))
            image = TF.adjust_contrast(image, _uniform(g, 1 - j, 1 + j))
            image = TF.adjust_saturation(image, _uniform(g, 1 - j, 1 + j))
        return BoundarySample(sample.image_id, image.contiguous(), bounds.contiguous())

    def __repr__(self) -> str:
        return (
            f"CropFlip(crop={self.crop}, flip={self.flip}, turn={self.turn}, jitter={self.jitter})"
        )


def _uniform(generator: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=generator))


def jitter_intensity(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    gamma: float = 0.3,
    contrast: float = 0.3,
    brightness: float = 0.1,
    noise: float = 0.03,
) -> torch.Tensor:
    """A random intensity change of an image in [0, 1] of any shape (``(C, H, W)``, a volume's
    ``(C, Z, Y, X)``): gamma ``exp(U(-gamma, gamma))``, contrast ``U(1 - contrast, 1 +
    contrast)``, brightness ``U(-brightness, brightness)``, Gaussian noise of a standard
    deviation ``U(0, noise)``, then clipped to [0, 1]; every draw from ``generator``.

    Example:
        >>> x = jitter_intensity(torch.full((1, 4, 4), 0.5), torch.Generator().manual_seed(0))
        >>> x.shape, bool(0 <= x.min() and x.max() <= 1)
        (torch.Size([1, 4, 4]), True)
    """
    g = generator
    x = x.clamp(0.0, 1.0) ** math.exp(_uniform(g, -gamma, gamma))
    x = x * _uniform(g, 1 - contrast, 1 + contrast)
    x = x + _uniform(g, -brightness, brightness)
    sigma = _uniform(g, 0.0, noise)
    x = x + sigma * torch.randn(x.shape, generator=g)
    return x.clamp(0.0, 1.0)


@dataclass(frozen=True)
class AugmentOptions:
    """The instance and volume tasks' augmentation keys of ``data.options`` (the rest go to
    the dataset): ``augment`` the training split with :class:`InstanceAugment` (random
    ``crop: [H, W]`` at native scale times a factor in ``scale: [lo, hi]``, flips, 90°
    rotations, gamma ``exp(U(-gamma, gamma))`` / contrast / brightness, noise), seeded by
    (seed, epoch, item); an epoch then holds ``data.batch_size`` x ``train.iters_per_epoch``
    distinct crops."""

    augment: bool = False
    crop: tuple[int, ...] | None = option(None, min=1)
    scale: tuple[float, ...] | str = option((0.8, 1.25), above=0, choices=("auto",))
    gamma: float = option(0.3, min=0)

    def zoom_range(self) -> tuple[float, ...]:
        """``scale`` as numbers; ``auto`` (chosen by training, ``Task.fit_config``) is a
        ConfigError here."""
        if isinstance(self.scale, str):
            raise ConfigError(
                "data.options.scale 'auto' is chosen when training, from the training masks' "
                "object sizes; a trained model stores the numbers (give [lo, hi] here)"
            )
        return self.scale

    @property
    def seen_scale(self) -> float:
        """The scale training shows the images at: the geometric mean of ``scale`` when
        augmenting (``[0.8, 1.25]``: 1, the native scale; ``[0.4, 0.6]``: 0.49), else 1."""
        scale = self.zoom_range()
        if not self.augment or len(scale) != 2:
            return 1.0
        factor = math.sqrt(scale[0] * scale[1])
        return 1.0 if abs(factor - 1.0) < 1e-9 else factor


class InstanceAugment:
    """Augmentation of an :class:`InstanceSample` for a few annotated images (own data).

    Geometry, applied jointly to the image and both label maps (``tv_tensors.Mask``, nearest):
    a random ``crop = (H, W)`` window at native scale times a scale factor drawn
    log-uniformly from ``scale = (lo, hi)`` (a factor s shows a window of ``crop / s``
    image pixels resized to ``crop``; an image smaller than the window is padded with
    background), a horizontal and a vertical flip (each with probability 1/2) and a rotation
    by a random multiple of 90° (for a non-square crop only 0° or 180°). Intensity:
    :func:`jitter_intensity` with ``gamma``, ``contrast``, ``brightness`` and ``noise``. Every
    draw comes from the generator passed in (:class:`AugmentedDataset`), none from the global
    RNG.

    Call: ``sample`` with ``image (C, H, W)`` -> an :class:`InstanceSample` with
    ``image (C, crop[0], crop[1])`` and maps of the same size.
    """

    def __init__(
        self,
        crop: tuple[int, int],
        scale: tuple[float, float] = (0.8, 1.25),
        gamma: float = 0.3,
        contrast: float = 0.3,
        brightness: float = 0.1,
        noise: float = 0.03,
    ) -> None:
        if len(crop) != 2 or min(crop) < 1:
            raise ValueError(f"crop must be [H, W] with H, W >= 1, got {list(crop)}")
        if not 0 < scale[0] <= scale[1]:
            raise ValueError(f"scale must be (lo, hi) with 0 < lo <= hi, got {scale}")
        self.crop = (int(crop[0]), int(crop[1]))
        self.scale = (float(scale[0]), float(scale[1]))
        self.gamma, self.contrast, self.brightness, self.noise = gamma, contrast, brightness, noise

    def __call__(self, sample: InstanceSample, generator: torch.Generator) -> InstanceSample:
        g = generator
        s = math.exp(_uniform(g, math.log(self.scale[0]), math.log(self.scale[1])))
        wh, ww = max(1, round(self.crop[0] / s)), max(1, round(self.crop[1] / s))
        image = tv_tensors.Image(sample.image)
        masks = tv_tensors.Mask(torch.stack([sample.instance, sample.semantic]))
        h, w = int(image.shape[1]), int(image.shape[2])
        if h < wh or w < ww:  # pad to the window: bottom / right, background
            pad = [0, 0, max(0, ww - w), max(0, wh - h)]
            image, masks = TF.pad(image, pad, fill=0.0), TF.pad(masks, pad, fill=0)
            h, w = max(h, wh), max(w, ww)
        top = int(torch.randint(h - wh + 1, (1,), generator=g))
        left = int(torch.randint(w - ww + 1, (1,), generator=g))
        image = TF.resized_crop(image, top, left, wh, ww, list(self.crop), antialias=True)
        masks = TF.resized_crop(
            masks, top, left, wh, ww, list(self.crop), interpolation=InterpolationMode.NEAREST
        )
        if float(torch.rand((), generator=g)) < 0.5:
            image, masks = TF.horizontal_flip(image), TF.horizontal_flip(masks)
        if float(torch.rand((), generator=g)) < 0.5:
            image, masks = TF.vertical_flip(image), TF.vertical_flip(masks)
        quarter = self.crop[0] == self.crop[1]
        k = int(torch.randint(4 if quarter else 2, (1,), generator=g)) * (1 if quarter else 2)
        x = torch.rot90(image.as_subclass(torch.Tensor), k, (1, 2))
        labels = torch.rot90(masks.as_subclass(torch.Tensor), k, (1, 2))
        x = jitter_intensity(
            x,
            g,
            gamma=self.gamma,
            contrast=self.contrast,
            brightness=self.brightness,
            noise=self.noise,
        )
        return InstanceSample(x.contiguous(), labels[0].contiguous(), labels[1].contiguous())

    def __repr__(self) -> str:
        return f"InstanceAugment(crop={self.crop}, scale={self.scale})"


def augmented(
    dataset: Dataset, options: AugmentOptions, seed: int, length: int
) -> AugmentedDataset:
    """``dataset`` of :class:`InstanceSample` through :class:`InstanceAugment` with
    ``options`` (``data.options.crop`` and ``scale``), at least ``length`` items long (a few
    images repeated, each item its own draw); a missing or bad crop is a ConfigError."""
    crop = options.crop
    if crop is None or len(crop) != 2 or min(crop) < 1:
        raise ConfigError(
            "data.options.augment needs data.options.crop: [H, W] (the training crop in image "
            f"pixels, e.g. [128, 128]), got {None if crop is None else list(crop)}"
        )
    scale = options.zoom_range()
    if len(scale) != 2 or not 0 < scale[0] <= scale[1]:
        raise ConfigError(
            f"data.options.scale must be [lo, hi] with 0 < lo <= hi, got {list(scale)}"
        )
    augment = InstanceAugment(
        (int(crop[0]), int(crop[1])), (float(scale[0]), float(scale[1])), gamma=options.gamma
    )
    n = len(dataset)  # type: ignore[arg-type]
    return AugmentedDataset(dataset, augment, seed=seed, length=max(n, length))


class ResizeSample:
    """Joint resize of an :class:`InstanceSample` to ``size = (H, W)``.

    The image ``(3, H0, W0)`` is resized bilinearly (antialiased); the instance and semantic
    maps by nearest neighbour, so no new labels (and no blended void) appear.
    """

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = check_size(size, "size")

    def __call__(self, sample: InstanceSample) -> InstanceSample:
        image = F.interpolate(
            sample.image[None], size=self.size, mode="bilinear", antialias=True, align_corners=False
        )[0].clamp_(0.0, 1.0)
        labels = torch.stack([sample.instance, sample.semantic])[None].double()
        labels = F.interpolate(labels, size=self.size, mode="nearest-exact")[0].long()
        return InstanceSample(image, labels[0], labels[1])

    def __repr__(self) -> str:
        return f"ResizeSample(size={self.size})"
