"""Sample transforms: seeded augmentation (one dataset wrapper for every task), the boundary
task's crop/flip, and the joint resize of instance samples.

:class:`AugmentedDataset` draws item ``i`` of epoch ``e`` with a generator seeded from
``(seed, e, i)`` only, so an augmentation never depends on DataLoader workers, ranks or what
was drawn before: a resumed or distributed run sees exactly the augmentations of an
uninterrupted one-process run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from pixelgroup.data.bsds import BoundarySample
from pixelgroup.data.sample import InstanceSample

__all__ = ["AugmentedDataset", "CropFlip", "ResizeSample"]


class AugmentedDataset(Dataset):
    """``dataset`` seen through ``augment(sample, generator) -> sample``.

    Item ``i`` of epoch ``e`` uses ``torch.Generator().manual_seed(f(seed, e, i))``. Call
    :meth:`set_epoch` at each epoch start (the train loop does).
    """

    def __init__(self, dataset: Dataset, augment: Callable[..., Any], seed: int = 0) -> None:
        self.dataset = dataset
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 10_000_019 + index)
        return self.augment(self.dataset[index], g)

    def __repr__(self) -> str:
        return f"AugmentedDataset({self.augment!r}, seed={self.seed}, epoch={self.epoch})"


class CropFlip:
    """Random ``crop (H, W)`` (``None``: whole image) and horizontal flip of a
    :class:`~pixelgroup.data.bsds.BoundarySample` (``image (3, H, W)``, ``boundaries
    (A, H, W)``), drawn from the generator passed in."""

    def __init__(self, crop: tuple[int, ...] | None = None, flip: bool = True) -> None:
        if crop is not None and (len(crop) != 2 or min(crop) < 1):
            raise ValueError(f"crop must be [H, W] with H, W >= 1, got {list(crop)}")
        self.crop, self.flip = crop, flip

    def __call__(self, sample: BoundarySample, generator: torch.Generator) -> BoundarySample:
        image, bounds = sample.image, sample.boundaries
        if self.crop is not None:
            ch, cw = min(self.crop[0], image.shape[1]), min(self.crop[1], image.shape[2])
            y = int(torch.randint(image.shape[1] - ch + 1, (1,), generator=generator))
            x = int(torch.randint(image.shape[2] - cw + 1, (1,), generator=generator))
            image, bounds = image[:, y : y + ch, x : x + cw], bounds[:, y : y + ch, x : x + cw]
        if self.flip and bool(torch.rand((), generator=generator) < 0.5):
            image, bounds = image.flip(-1), bounds.flip(-1)
        return BoundarySample(sample.image_id, image.contiguous(), bounds.contiguous())

    def __repr__(self) -> str:
        return f"CropFlip(crop={self.crop}, flip={self.flip})"


class ResizeSample:
    """Joint resize of an :class:`InstanceSample` to ``size = (H, W)``.

    The image ``(3, H0, W0)`` is resized bilinearly (antialiased); the instance and semantic
    maps by nearest neighbour, so no new labels (and no blended void) appear.
    """

    def __init__(self, size: tuple[int, int]) -> None:
        if len(size) != 2 or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in size
        ):
            raise ValueError(f"size must be (H, W) with positive ints, got {size!r}")
        self.size = (int(size[0]), int(size[1]))

    def __call__(self, sample: InstanceSample) -> InstanceSample:
        image = F.interpolate(
            sample.image[None], size=self.size, mode="bilinear", antialias=True, align_corners=False
        )[0].clamp_(0.0, 1.0)
        labels = torch.stack([sample.instance, sample.semantic])[None].double()
        labels = F.interpolate(labels, size=self.size, mode="nearest-exact")[0].long()
        return InstanceSample(image, labels[0], labels[1])

    def __repr__(self) -> str:
        return f"ResizeSample(size={self.size})"
