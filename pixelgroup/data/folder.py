"""``ImageMaskFolder``: train and evaluate on your own images with instance-mask PNGs.

Layout (one folder per split; names pair an image with its mask by file stem)::

    ROOT/train/images/0001.tif     image (tif, png, jpg, ...; any bit depth, grey or RGB)
    ROOT/train/masks/0001.tif      single-channel instance ids (png, tif): 0 = background, 1..K
    ROOT/val/...   ROOT/test/...

A mask may be an 8/16/32-bit PNG or TIFF (or a palette PNG whose indices are the ids). The
semantic map of a folder sample is 1 on instances and 0 on background (the folder carries
no classes). The 16-bit value 65535 (:data:`~pixelgroup.data.partial.UNANNOTATED`) marks
unannotated pixels (objects left unlabelled): both maps hold :data:`IGNORE_LABEL` there, so
no loss term is taken on them (partial labels).
Images are read as RGB in [0, 1] by :func:`~pixelgroup.data.io.read_image` with
``normalize`` (:data:`~pixelgroup.data.io.NORMALIZE_MODES`); ``channels`` picks up to 3 of a
multi-channel image's channels (e.g. ``[1]``: a nuclear stain alone). Every mask's size and channel
count (one: an RGB mask is an error) is checked against its image when the dataset is opened
(file headers), so a mismatch stops the run before training, naming the file. Each mask's
values are read once then too (PIL's extrema; about 12 ms per 1024 x 1024 16-bit PNG on one
core): masks without any instance are counted in one warning, and a split whose masks hold
none is an error (nothing to learn or score).
``size = (H, W)`` resizes every sample
(image bilinear, masks nearest) so that images of mixed sizes batch together.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from PIL import Image
from torch.utils.data import Dataset

from pixelgroup._config_io import option
from pixelgroup.data.coco_dataset import IGNORE_LABEL
from pixelgroup.data.io import image_size, read_image, read_label_map
from pixelgroup.data.partial import UNANNOTATED
from pixelgroup.data.sample import InstanceSample
from pixelgroup.data.transforms import ResizeSample
from pixelgroup.errors import DataError

__all__ = ["FolderOptions", "ImageMaskFolder", "IMAGE_SUFFIXES", "MASK_SUFFIXES"]

_log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MASK_SUFFIXES = (".png", ".tif", ".tiff")


@dataclass(frozen=True)
class FolderOptions:
    """``data.name: folder`` (:class:`ImageMaskFolder`): ``size: [H, W]`` resizes every sample
    (needed for batches of images of mixed sizes); ``normalize`` maps the stored values to
    [0, 1] (:data:`pixelgroup.data.io.NORMALIZE_MODES`: ``auto``, ``percentile``, ``fixed``),
    in training, eval and predict alike; ``channels: [i, ...]`` picks up to 3 of the stored
    channels in that order (a 5-channel fluorescence TIFF: ``[2]`` for its nuclear stain
    alone, ``[2, 0]`` for two stains), also at predict."""

    size: tuple[int, ...] | None = option(None, min=1)
    normalize: str = "auto"
    channels: tuple[int, ...] | None = option(None, min=0)


def _has_instance(mask_path: Path, im: Image.Image) -> bool:
    """Whether the mask ``im`` (opened from ``mask_path``) holds an instance id (neither 0 nor
    :data:`UNANNOTATED`): its extrema, from PIL's C code, decide unless its largest value is
    UNANNOTATED; TIFFs (read by tifffile for training too) and such masks are read in full."""
    if mask_path.suffix.lower() not in (".tif", ".tiff"):
        low, high = cast("tuple[float, float]", im.getextrema())  # one band: (min, max)
        if high != UNANNOTATED:
            return bool(high > 0)
        if low == high:
            return False  # all unannotated
    ids = read_label_map(mask_path)
    return bool(((ids > 0) & (ids != UNANNOTATED)).any())


def _mask_path(masks_dir: Path, stem: str) -> Path | None:
    found = [
        masks_dir / f"{stem}{s}" for s in MASK_SUFFIXES if (masks_dir / f"{stem}{s}").is_file()
    ]
    return found[0] if found else None


class ImageMaskFolder(Dataset):
    """Images + instance-mask PNGs from ``root/split/{images,masks}`` (see the module docstring).

    Items are :class:`InstanceSample` with ``image (3, H, W)`` and ``(H, W)`` masks.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        size: tuple[int, int] | None = None,
        normalize: str = "auto",
        channels: tuple[int, ...] | None = None,
    ) -> None:
        base = Path(root) / split
        images_dir, masks_dir = base / "images", base / "masks"
        for folder in (images_dir, masks_dir):
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"folder not found: {folder} (expected ROOT/{split}/images and "
                    f"ROOT/{split}/masks)"
                )
        images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {images_dir}")
        masks = [_mask_path(masks_dir, p.stem) for p in images]
        missing = [p.name for p, m in zip(images, masks, strict=True) if m is None]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} image(s) have no mask in {masks_dir}, e.g. {missing[0]} "
                f"(expected {Path(missing[0]).stem}.png or .tif)"
            )
        self.root, self.split, self.normalize = Path(root), split, normalize
        self.channels = channels
        self.items = [(p, m) for p, m in zip(images, masks, strict=True) if m is not None]
        empty = []
        for image_path, mask_path in self.items:  # before any training
            if image_size(mask_path) != image_size(image_path):
                raise DataError(
                    f"{mask_path}: mask size {image_size(mask_path)} != image size "
                    f"{image_size(image_path)} of {image_path.name}"
                )
            with Image.open(mask_path) as im:
                mode, bands = im.mode, len(im.getbands())
                if bands != 1:
                    raise DataError(
                        f"{mask_path}: expected a single-channel label map (instance ids), "
                        f"got a {mode} image with {bands} channels"
                    )
                if not _has_instance(mask_path, im):
                    empty.append(mask_path.name)
        if len(empty) == len(self.items):
            raise DataError(
                f"{masks_dir}: none of its {len(empty)} masks holds an instance (every pixel "
                f"is 0, background, or {UNANNOTATED}, unannotated); there is nothing to learn "
                "or score"
            )
        if empty:
            _log.warning(
                "%s: %d of %d masks hold no instance (all background), e.g. %s",
                masks_dir,
                len(empty),
                len(self.items),
                empty[0],
            )
        self.resize = None if size is None else ResizeSample(size)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> InstanceSample:
        image_path, mask_path = self.items[index]
        instance = read_label_map(mask_path)
        unannotated = instance == UNANNOTATED  # no loss term is taken on these pixels
        sample = InstanceSample(
            image=read_image(image_path, normalize=self.normalize, select=self.channels),
            instance=instance.masked_fill(unannotated, IGNORE_LABEL),
            semantic=(instance > 0).long().masked_fill(unannotated, IGNORE_LABEL),
        )
        return sample if self.resize is None else self.resize(sample)
