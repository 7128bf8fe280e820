"""``DATASETS``: the datasets a config names in ``data.name``, each with its options class.

Each entry (:class:`DatasetEntry`) is a builder ``build(root, split, options) -> Dataset``, the
frozen dataclass of its ``data.options`` (beside the dataset's class) and the class of its items
(:class:`~pixelgroup.data.InstanceSample`, or the boundary task's
:class:`~pixelgroup.data.bsds.BoundarySample`). :func:`build_dataset` reads the config's
``data.options`` mapping into the options class first, so a typo is a
:class:`~pixelgroup.errors.ConfigError` naming the key. Add a dataset by adding an entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from pixelgroup.config import parse_options
from pixelgroup.data.bsds import BoundarySample, BSDSOptions, open_boundary_dataset
from pixelgroup.data.coco_dataset import CocoInstances, CocoOptions
from pixelgroup.data.folder import FolderOptions, ImageMaskFolder
from pixelgroup.data.io import NORMALIZE_MODES
from pixelgroup.data.partial import PartialAnnotation
from pixelgroup.data.sample import InstanceSample
from pixelgroup.data.synthetic_volumes import Toy3DOptions, ToyVolumes
from pixelgroup.data.toy import ToyDigits, ToyOptions
from pixelgroup.data.transforms import ResizeSample
from pixelgroup.data.voc import VOCOptions, open_instance_dataset
from pixelgroup.data.volume_folder import VolumeFolder, VolumeFolderOptions
from pixelgroup.errors import ConfigError

__all__ = ["DATASETS", "DatasetEntry", "build_dataset", "dataset_options"]


def _size(size: tuple[int, ...] | None) -> tuple[int, int] | None:
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise ConfigError(f"data.options.size must be [H, W] with H, W >= 1, got {list(size)}")
    return None if size is None else (size[0], size[1])


def _toy(root: str | None, split: str, o: ToyOptions) -> Dataset:
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


def _toy3d(root: str | None, split: str, o: Toy3DOptions) -> Dataset:
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


def _volume_folder(root: str | None, split: str, o: VolumeFolderOptions) -> Dataset:
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


def _folder(root: str | None, split: str, o: FolderOptions) -> Dataset:
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


def _coco(root: str | None, split: str, o: CocoOptions) -> Dataset:
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


def _voc(root: str | None, split: str, o: VOCOptions) -> Dataset:
    if root is None:
        raise ConfigError("data.root must name a VOC 2012 root, an SBD folder or .mat samples")
    size = _size(o.size)
    transform = None if size is None else ResizeSample(size)
    return open_instance_dataset(root, split, ignore_index=o.ignore_index, transform=transform)


def _bsds(root: str | None, split: str, o: BSDSOptions) -> Dataset:
    if root is None:
        raise ConfigError("data.root must name a BSDS500 folder or a folder of .mat samples")
    return open_boundary_dataset(root, split)


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset: ``build(root, split, options)`` with ``options`` an instance of
    the dataclass ``options`` (read from ``data.options``), giving items of class ``sample``."""

    build: Callable[[str | None, str, Any], Dataset]
    options: type
    sample: type = InstanceSample


DATASETS: dict[str, DatasetEntry] = {
    "toy": DatasetEntry(_toy, ToyOptions),
    "toy3d": DatasetEntry(_toy3d, Toy3DOptions),
    "volume_folder": DatasetEntry(_volume_folder, VolumeFolderOptions),
    "folder": DatasetEntry(_folder, FolderOptions),
    "coco": DatasetEntry(_coco, CocoOptions),
    "voc": DatasetEntry(_voc, VOCOptions),
    "bsds": DatasetEntry(_bsds, BSDSOptions, BoundarySample),
}


def _entry(name: str, sample: type) -> DatasetEntry:
    """The entry ``name`` of items ``sample``; any other name is an error listing those."""
    entry = DATASETS.get(name)
    if entry is None or entry.sample is not sample:
        valid = ", ".join(n for n, e in DATASETS.items() if e.sample is sample)
        if entry is None:
            raise ConfigError(f"unknown dataset {name!r}; valid datasets: {valid}")
        raise ConfigError(
            f"the dataset {name!r} holds {entry.sample.__name__} items, not the "
            f"{sample.__name__} this task reads; valid datasets: {valid}"
        )
    return entry


def dataset_options(
    name: str, options: Mapping[str, Any], sample: type = InstanceSample, also: Iterable[str] = ()
) -> Any:
    """``data.options`` (``options``) read into dataset ``name``'s options class; ``also``
    names keys the task took out of the mapping before (listed when a key is unknown)."""
    return parse_options(_entry(name, sample).options, options, also=also)


def build_dataset(
    name: str,
    root: str | None,
    split: str,
    options: Mapping[str, Any],
    *,
    sample: type = InstanceSample,
    also: Iterable[str] = (),
) -> Dataset:
    """Split ``split`` of the registered dataset ``name`` (items of class ``sample``) with
    ``options`` read by :func:`dataset_options`; unknown names list the valid ones."""
    entry = _entry(name, sample)
    return entry.build(root, split, parse_options(entry.options, options, also=also))
