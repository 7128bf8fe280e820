"""Datasets yielding :class:`InstanceSample`: the synthetic toy digits and a folder of images."""

from pixelgroup.data.folder import ImageMaskFolder
from pixelgroup.data.sample import InstanceSample, collate_instances
from pixelgroup.data.toy import ToyDigits

__all__ = ["InstanceSample", "collate_instances", "ToyDigits", "ImageMaskFolder"]
