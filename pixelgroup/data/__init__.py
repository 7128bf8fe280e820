"""Datasets (synthetic toy digits, a folder of images, a COCO export, VOC/SBD, BSDS500), their
registry and seeded augmentation."""

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
