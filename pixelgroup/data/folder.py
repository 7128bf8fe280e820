"""``ImageMaskFolder``: train and evaluate on your own images with instance-mask PNGs.

Layout (one folder per split; names pair an image with its mask by file stem)::

    ROOT/train/images/0001.jpg     RGB image (png, jpg, ...)
    ROOT/train/masks/0001.png      single-channel instance ids: 0 = background, 1..K
    ROOT/val/...   ROOT/test/...

A mask PNG may be 8 or 16 bit (or a palette PNG whose indices are the ids). The semantic map
of a folder sample is 1 on instances and 0 on background (the folder carries no classes).
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from pixelgroup.data.io import read_image, read_label_map
from pixelgroup.data.sample import InstanceSample

__all__ = ["ImageMaskFolder", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class ImageMaskFolder(Dataset):
    """Images + instance-mask PNGs from ``root/split/{images,masks}`` (see the module docstring).

    Items are :class:`InstanceSample` with ``image (3, H, W)`` and ``(H, W)`` masks.
    """

    def __init__(self, root: str | Path, split: str = "train") -> None:
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
            raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {images_dir}")
        missing = [p.name for p in images if not (masks_dir / f"{p.stem}.png").is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} image(s) have no mask in {masks_dir}, e.g. {missing[0]} "
                f"(expected {Path(missing[0]).stem}.png)"
            )
        self.root, self.split = Path(root), split
        self.items = [(p, masks_dir / f"{p.stem}.png") for p in images]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> InstanceSample:
        image_path, mask_path = self.items[index]
        image = read_image(image_path)
        instance = read_label_map(mask_path)
        if tuple(instance.shape) != tuple(image.shape[1:]):
            raise ValueError(
                f"{mask_path}: mask size {tuple(instance.shape)} != image size "
                f"{tuple(image.shape[1:])} of {image_path.name}"
            )
        return InstanceSample(image=image, instance=instance, semantic=(instance > 0).long())
