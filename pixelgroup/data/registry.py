"""``DATASETS``: the instance datasets a config names in ``data.name``.

Each entry is ``builder(root, split, options) -> Dataset`` of
:class:`~pixelgroup.data.InstanceSample`; the builder reads ``options`` (the config's
``data.options`` mapping) into its typed dataclass from :mod:`pixelgroup.config`, so a typo is
a :class:`~pixelgroup.errors.ConfigError` naming the key. Add a dataset by adding an entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from pixelgroup.config import (
    CocoOptions,
    FolderOptions,
    Toy3DOptions,
    ToyOptions,
    VOCOptions,
    VolumeFolderOptions,
    parse_options,
)
from pixelgroup.data.coco_dataset import CocoInstances
from pixelgroup.data.folder import ImageMaskFolder
from pixelgroup.data.io import NORMALIZE_MODES
from pixelgroup.data.partial import PartialAnnotation
from pixelgroup.data.synthetic_volumes import ToyVolumes
from pixelgroup.data.toy import ToyDigits
from pixelgroup.data.transforms import ResizeSample
from pixelgroup.data.voc import open_instance_dataset
from pixelgroup.data.volume_folder import VolumeFolder
from pixelgroup.errors import ConfigError

__all__ = ["DATASETS", "build_dataset"]


def _size(size: tuple[int, ...] | None) -> tuple[int, int] | None:
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise ConfigError(f"data.options.size must be [H, W] with H, W >= 1, got {list(size)}")
    return None if size is None else (size[0], size[1])


def _toy(root: str | None, split: str, options: Mapping[str, Any]) -> Dataset:
    o = parse_options(ToyOptions, options)
    length = o.length if split == "train" else o.eval_length
    toy = ToyDigits(
        split,
        length,
        seed=o.seed,
        same_class_fraction=o.same_class_fraction,
        max_digits=o.max_digits,
    )
    if split != "train" or o.annotated_fraction == 1.0:  # scores need every instance
        return toy
    return PartialAnnotation(toy, o.annotated_fraction, seed=o.seed)


def _check_normalize(mode: str) -> None:
    if mode not in NORMALIZE_MODES:
        raise ConfigError(
            f"data.options.normalize must be one of {', '.join(NORMALIZE_MODES)}, got {mode!r}"
        )


def _toy3d(root: str | None, split: str, options: Mapping[str, Any]) -> Dataset:
    o = parse_options(Toy3DOptions, options)
    shape = o.train_shape if split == "train" and o.train_shape is not None else o.shape
    for key, value in (("shape", shape), ("voxel_size", o.voxel_size)):
        if len(value) != 3:
            raise ConfigError(f"data.options.{key} must be [Z, Y, X], got {list(value)}")
    if len(o.diameter) != 2 or o.diameter[0] > o.diameter[1]:
        raise ConfigError(f"data.options.diameter must be [lo, hi], got {list(o.diameter)}")
    if split not in ("train", "val", "test"):
        raise ConfigError(f"the toy3d dataset has the splits train, val and test, not {split!r}")
    return ToyVolumes(
        split,
        o.length if split == "train" else o.eval_length,
        seed=o.seed,
        shape=tuple(int(n) for n in shape),
        spacing=tuple(float(v) for v in o.voxel_size),
        count=o.count,
        diameter=(float(o.diameter[0]), float(o.diameter[1])),
    )


def _volume_folder(root: str | None, split: str, options: Mapping[str, Any]) -> Dataset:
    o = parse_options(VolumeFolderOptions, options)
    if root is None:
        raise ConfigError("data.root must name a folder for the 'volume_folder' dataset")
    _check_normalize(o.normalize)
    if o.voxel_size is not None and len(o.voxel_size) != 3:
        raise ConfigError(f"data.options.voxel_size must be [z, y, x], got {list(o.voxel_size)}")
    return VolumeFolder(
        root,
        split,
        channels=o.in_channels,
        normalize=o.normalize,
        select=None if o.channels is None else tuple(int(c) for c in o.channels),
        voxel_size=o.voxel_size,
    )


def _folder(root: str | None, split: str, options: Mapping[str, Any]) -> Dataset:
    o = parse_options(FolderOptions, options)
    if root is None:
        raise ConfigError("data.root must name a folder for the 'folder' dataset")
    _check_normalize(o.normalize)
    if o.channels is not None and not 1 <= len(o.channels) <= 3:
        raise ConfigError(
            f"data.options.channels must list 1 to 3 channel indices, got {list(o.channels)}"
        )
    channels = None if o.channels is None else tuple(int(c) for c in o.channels)
    return ImageMaskFolder(
        root, split, size=_size(o.size), normalize=o.normalize, channels=channels
    )


def _coco(root: str | None, split: str, options: Mapping[str, Any]) -> Dataset:
    o = parse_options(CocoOptions, options)
    size = _size(o.size)
    if split not in ("train", "val", "test"):
        raise ConfigError(
            f"the coco dataset has the splits train, val and test (data.options.train, ...), "
            f"not {split!r}"
        )
    paths = getattr(o, split)
    if paths is None:
        raise ConfigError(
            f"data.options.{split} is not set: split {split!r} of the coco dataset needs "
            f"data.options.{split}: {{images: FOLDER, annotations: FILE.json}}"
        )
    for key in ("images", "annotations"):
        if getattr(paths, key) is None:
            raise ConfigError(f"data.options.{split}.{key} is missing (the split's {key})")
    base = Path(root).expanduser() if root is not None else Path()
    images = base / Path(str(paths.images)).expanduser()
    annotations = base / Path(str(paths.annotations)).expanduser()
    return CocoInstances(images, annotations, size=size)


def _voc(root: str | None, split: str, options: Mapping[str, Any]) -> Dataset:
    o = parse_options(VOCOptions, options)
    if root is None:
        raise ConfigError("data.root must name a VOC 2012 root, an SBD folder or .mat samples")
    size = _size(o.size)
    transform = None if size is None else ResizeSample(size)
    return open_instance_dataset(root, split, ignore_index=o.ignore_index, transform=transform)


DATASETS: dict[str, Callable[[str | None, str, Mapping[str, Any]], Dataset]] = {
    "toy": _toy,
    "toy3d": _toy3d,
    "volume_folder": _volume_folder,
    "folder": _folder,
    "coco": _coco,
    "voc": _voc,
}


def build_dataset(name: str, root: str | None, split: str, options: Mapping[str, Any]) -> Dataset:
    """The registered dataset ``name``; unknown names list the valid ones."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")
    return DATASETS[name](root, split, options)
