"""Datasets (synthetic toy digits, a folder of images, a COCO export, VOC/SBD, BSDS500), their
registry and seeded augmentation.

The names below are imported when first used (PEP 562), so that a command that needs one
reader (e.g. ``pixelgroup eval-boundaries``: :mod:`pixelgroup.data.boundary_maps`) does not
import every dataset and torchvision's transforms."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pixelgroup.data.coco_dataset import IGNORE_LABEL, CocoInstances
    from pixelgroup.data.folder import ImageMaskFolder
    from pixelgroup.data.registry import DATASETS, build_dataset
    from pixelgroup.data.sample import InstanceSample, collate_instances
    from pixelgroup.data.toy import ToyDigits
    from pixelgroup.data.transforms import (
        AugmentedDataset,
        CropFlip,
        InstanceAugment,
        ResizeSample,
        augmented,
    )

_HOMES = {
    "InstanceSample": "sample",
    "collate_instances": "sample",
    "ToyDigits": "toy",
    "ImageMaskFolder": "folder",
    "CocoInstances": "coco_dataset",
    "IGNORE_LABEL": "coco_dataset",
    "DATASETS": "registry",
    "build_dataset": "registry",
    "AugmentedDataset": "transforms",
    "CropFlip": "transforms",
    "InstanceAugment": "transforms",
    "augmented": "transforms",
    "ResizeSample": "transforms",
}

__all__ = [
    "InstanceSample",
    "collate_instances",
    "ToyDigits",
    "ImageMaskFolder",
    "CocoInstances",
    "IGNORE_LABEL",
    "DATASETS",
    "build_dataset",
    "AugmentedDataset",
    "CropFlip",
    "InstanceAugment",
    "augmented",
    "ResizeSample",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
