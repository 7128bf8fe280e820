"""Reading images (any mode, any bit depth, EXIF orientation applied) and label maps with
one-line errors; atomic PNG writing."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from pixelgroup._atomic import atomic_path
from pixelgroup.errors import DataError

__all__ = ["read_image", "read_label_map", "write_png", "image_size", "read_json"]

_log = logging.getLogger(__name__)
_REPORTED: set[str] = set()  # conversions already stated once in the log
_WIDE = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")  # 16/32-bit and float grey levels


def _open(path: str | Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        im = Image.open(path)
        im.load()
        return im
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"cannot read image {path}: not a readable image file ({e})") from None


def image_size(path: str | Path) -> tuple[int, int]:
    """``(H, W)`` of an image file as :func:`read_image` returns it (EXIF orientation applied),
    read from its header only."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"cannot read image {path}: not a readable image file ({e})") from None
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def _note(mode: str, target: str) -> None:
    key = f"{mode}->{target}"
    if key not in _REPORTED:
        _REPORTED.add(key)
        _log.warning("images of mode %s are converted to %s on load", mode, target)


def read_image(path: str | Path, channels: int = 3) -> torch.Tensor:
    """Image file -> ``(C, H, W)`` float32 in [0, 1], ``C = channels`` (3: RGB, 1: grey).

    Any PIL mode is converted: grey, palette, 1-bit, CMYK and YCbCr to RGB, an alpha channel
    dropped (as torchvision's ``decode_image(mode=RGB)``), 16-bit and float grey levels scaled
    by their range (65535 for 16-bit); the first frame of an animation is used; the EXIF
    orientation is applied. Each kind of conversion is stated once in the log
    (``logging.getLogger("pixelgroup.data.io")``).
    """
    im = _open(path)
    im = ImageOps.exif_transpose(im) or im
    target = "RGB" if channels == 3 else "L"
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if im.mode in _WIDE:
        array = np.asarray(im).astype(np.float32)
        top = 1.0 if im.mode == "F" else 65535.0
        array = np.clip(array / top, 0.0, 1.0)[:, :, None]
        _note(im.mode, target)
        if channels == 3:
            array = np.repeat(array, 3, axis=2)
        return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
    if im.mode != target:
        _note(im.mode, target)
        im = im.convert(target)
    array = np.asarray(im)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.transpose(2, 0, 1).astype(np.float32) / 255.0)


def read_label_map(path: str | Path) -> torch.Tensor:
    """Single-channel integer PNG (e.g. instance ids, 0 = background) -> ``(H, W)`` int64."""
    with _open(path) as im:
        array = np.asarray(im)
    if array.ndim != 2:
        raise DataError(
            f"{path}: expected a single-channel label map, got shape {tuple(array.shape)}"
        )
    return torch.from_numpy(array.astype(np.int64))


def write_png(array: np.ndarray, path: str | Path) -> None:
    """Write ``(H, W)`` or ``(H, W, 3)`` uint8/uint16 atomically (temp file + ``os.replace``)."""
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def read_json(path: str | Path, what: str) -> Any:
    """The JSON value in ``path``; a missing file names ``what`` (e.g. "COCO annotations"),
    a file that is not UTF-8 JSON is a one-line :class:`~pixelgroup.errors.DataError`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON: {e}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path} is not a UTF-8 text (JSON) file") from None
