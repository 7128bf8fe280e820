"""Reading images and label maps with one-line errors; atomic PNG writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from pixelgroup._atomic import atomic_path

__all__ = ["read_image", "read_label_map", "write_png"]


def _open(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            return np.asarray(im)
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"cannot read image {path}: not a readable image file ({e})") from None


def read_image(path: str | Path, channels: int = 3) -> torch.Tensor:
    """Image file -> ``(C, H, W)`` float32 in [0, 1]; raises if it has not ``channels`` channels."""
    array = _open(path)
    got = 1 if array.ndim == 2 else array.shape[2]
    if got != channels:
        raise ValueError(f"{path}: expected an image with {channels} channels, got {got}")
    if array.ndim == 2:
        array = array[:, :, None]
    scale = 65535.0 if array.dtype == np.uint16 else 255.0
    return torch.from_numpy(array.transpose(2, 0, 1).astype(np.float32) / scale)


def read_label_map(path: str | Path) -> torch.Tensor:
    """Single-channel integer PNG (e.g. instance ids, 0 = background) -> ``(H, W)`` int64."""
    array = _open(path)
    if array.ndim != 2:
        raise ValueError(
            f"{path}: expected a single-channel label map, got shape {tuple(array.shape)}"
        )
    return torch.from_numpy(array.astype(np.int64))


def write_png(array: np.ndarray, path: str | Path) -> None:
    """Write ``(H, W)`` or ``(H, W, 3)`` uint8/uint16 atomically (temp file + ``os.replace``)."""
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
