"""TIFF stacks in a folder (``data.name: volume_folder``) and their seeded 3-D augmentation.

Layout, as the 2-D ``folder`` dataset: ``ROOT/SPLIT/images/NAME.tif`` volumes ``(Z, Y, X)``
or ``(C, Z, Y, X)`` and ``ROOT/SPLIT/masks/NAME.tif`` label stacks ``(Z, Y, X)`` (instance ids,
0 background) of the same shape. Every pair is read and checked when the dataset is built.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from pixelgroup._config_io import option
from pixelgroup.data.sample import InstanceSample
from pixelgroup.data.transforms import jitter_intensity
from pixelgroup.data.volumes import read_label_volume, read_volume, voxel_size_of
from pixelgroup.errors import DataError

__all__ = ["VolumeFolderOptions", "VolumeFolder", "VolumeAugment"]

_log = logging.getLogger(__name__)
_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class VolumeFolderOptions:
    """``data.name: volume_folder`` (:class:`VolumeFolder`): ``normalize`` and ``channels`` as
    the 2-D ``folder`` (per volume); ``voxel_size: [z, y, x]``, the model's, against which the
    files' stored voxel sizes are checked (a warning); ``in_channels`` of the model (the
    channels read)."""

    normalize: str = "auto"
    channels: tuple[int, ...] | None = option(None, min=0)
    voxel_size: tuple[float, ...] | None = option(None, above=0)
    in_channels: int = option(1, min=1)


class VolumeFolder(Dataset):
    """The volumes of ``ROOT/SPLIT/images`` with their ``masks``, as
    :class:`~pixelgroup.data.InstanceSample` (``image (C, Z, Y, X)`` float32 in [0, 1],
    ``instance (Z, Y, X)`` int64, ``semantic`` 1 on objects), held in memory.

    ``voxel_size (z, y, x)``: the voxel size expected (``data.options.voxel_size``); a file
    whose stored voxel size has another z / y ratio is logged (the model would see other
    shapes). A mask of
    another shape than its image, a missing mask and a mask without any object are
    :class:`~pixelgroup.errors.DataError` naming the file.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        *,
        channels: int = 1,
        normalize: str = "auto",
        select: Sequence[int] | None = None,
        voxel_size: Sequence[float] | None = None,
    ) -> None:
        folder = Path(root) / split
        images = sorted(p for p in (folder / "images").glob("*") if p.suffix.lower() in _SUFFIXES)
        if not images:
            raise DataError(f"no .tif volumes in {folder / 'images'}")
        self.samples = []
        for path in images:
            mask_path = next(
                (
                    folder / "masks" / (path.stem + s)
                    for s in _SUFFIXES
                    if (folder / "masks" / (path.stem + s)).is_file()
                ),
                None,
            )
            if mask_path is None:
                raise DataError(f"{path}: no label stack {folder / 'masks' / path.name}")
            image = read_volume(path, channels, normalize, select)
            instance = read_label_volume(mask_path)
            if tuple(instance.shape) != tuple(image.shape[1:]):
                raise DataError(
                    f"{mask_path}: label stack of shape {tuple(instance.shape)} (Z, Y, X), its "
                    f"image {path.name} is {tuple(image.shape[1:])}"
                )
            if not bool((instance > 0).any()):
                raise DataError(f"{mask_path}: the label stack has no instance (all 0)")
            stored = voxel_size_of(path)
            if voxel_size is not None and stored is not None:
                want, got = voxel_size[0] / voxel_size[1], stored[0] / stored[1]
                if abs(want - got) > 0.05 * want:
                    _log.warning(
                        "%s: voxel size %s (z/y %.2f) differs from data.options.voxel_size %s "
                        "(z/y %.2f)",
                        path,
                        stored,
                        got,
                        list(voxel_size),
                        want,
                    )
            self.samples.append(
                InstanceSample(image=image, instance=instance, semantic=(instance > 0).long())
            )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> InstanceSample:
        return self.samples[index]


class VolumeAugment:
    """A random ``crop (Z, Y, X)`` (clipped to the volume), flips along z, y and x, a 90°
    turn in YX (when the crop is square in YX) and the 2-D augmentation's intensity change
    (:func:`~pixelgroup.data.transforms.jitter_intensity` with ``gamma``), all drawn from the
    generator passed in (:class:`~pixelgroup.data.AugmentedDataset` seeds it by (seed, epoch,
    item)). Call: ``sample`` with ``image (C, Z, Y, X)`` -> an :class:`InstanceSample` of
    the crop's size (at most ``crop``)."""

    def __init__(self, crop: Sequence[int], gamma: float = 0.3) -> None:
        if len(crop) != 3 or min(crop) < 1:
            raise ValueError(f"crop must be [Z, Y, X] with each >= 1, got {list(crop)}")
        self.crop = tuple(int(n) for n in crop)
        self.gamma = float(gamma)

    def __call__(self, sample: InstanceSample, generator: torch.Generator) -> InstanceSample:
        image, instance = sample.image, sample.instance
        starts = []
        for n, c in zip(instance.shape, self.crop, strict=True):
            starts.append(int(torch.randint(n - min(n, c) + 1, (1,), generator=generator)))
        region = tuple(
            slice(s, s + min(n, c))
            for s, n, c in zip(starts, instance.shape, self.crop, strict=True)
        )
        image, instance = image[(slice(None),) + region], instance[region]
        for axis in (-3, -2, -1):
            if bool(torch.rand((), generator=generator) < 0.5):
                image, instance = image.flip(axis), instance.flip(axis)
        if image.shape[-1] == image.shape[-2] and bool(torch.rand((), generator=generator) < 0.5):
            image, instance = image.rot90(1, (-2, -1)), instance.rot90(1, (-2, -1))
        image = jitter_intensity(image, generator, gamma=self.gamma)
        instance = instance.contiguous()
        return InstanceSample(image.contiguous(), instance, (instance > 0).long())

    def __repr__(self) -> str:
        return f"VolumeAugment(crop={list(self.crop)}, gamma={self.gamma})"
