"""Reading images (any mode, any bit depth, EXIF orientation applied) and label maps with
one-line errors; intensity normalisation; atomic PNG writing.

TIFF files are read with ``tifffile`` (8/16/32-bit integer and float, grey, RGB and N channels,
``(H, W, C)`` or ``(C, H, W)``); other formats with PIL. :func:`normalize_intensity` brings
the raw values to the model's [0, 1] (see :data:`NORMALIZE_MODES`); a grey image becomes 3
identical channels, so the pretrained RGB stem sees what its ImageNet weights expect (a
replicated channel keeps each first-layer filter's response the sum of its three colour
weights) and nothing in the model changes with the data.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from pixelgroup._atomic import atomic_path
from pixelgroup.data.arrays import TIFF_SUFFIXES, open_array, plane_layout
from pixelgroup.errors import DataError

__all__ = [
    "NORMALIZE_MODES",
    "normalize_intensity",
    "intensity_range",
    "model_channels",
    "to_model_image",
    "check_read_options",
    "read_raw",
    "read_image",
    "read_label_map",
    "write_png",
    "image_size",
    "read_json",
    "conversion_notes",
]

_log = logging.getLogger(__name__)
_REPORTED: set[str] = set()  # conversions already stated once in the log
_SILENT = [False]  # conversion_notes(False) in force
_WIDE = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")  # 16/32-bit and float grey levels

NORMALIZE_MODES = ("auto", "percentile", "fixed")
"""``data.options.normalize`` values (:func:`normalize_intensity`): ``percentile`` maps each
channel's 1st..99.8th percentile to 0..1 (the microscopy convention, e.g. StarDist's
``normalize(x, 1, 99.8)``), ``fixed`` divides integers by their type's maximum (255, 65535,
...) and keeps floats, ``auto`` is ``fixed`` for 8-bit images and ``percentile`` for every
other type (12/16-bit cameras in a low range, float TIFFs)."""
PERCENTILES = (1.0, 99.8)


def _open(path: str | Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        im = Image.open(path)
        im.load()
        return im
    except Image.DecompressionBombError:
        raise _too_large_for_pil(path) from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"cannot read image {path}: not a readable image file ({e})") from None


def _too_large_for_pil(path: Path) -> DataError:
    return DataError(
        f"{path}: larger than PIL reads ({Image.MAX_IMAGE_PIXELS:,} pixels x 2); save it as a "
        "tiled TIFF or OME-Zarr, which are read tile by tile"
    )


def tiff_series(path: Path, what: str = "image") -> tuple[np.ndarray, str]:
    """The first series of the TIFF at ``path`` in its own dtype and its axes (tifffile's
    letters); a missing file is a ``FileNotFoundError`` and a broken one a :class:`DataError`,
    each naming the ``what`` ("image", "volume") and the file."""
    import tifffile

    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            return series.asarray(), series.axes
    except Exception as e:  # tifffile raises many types for a broken file
        raise DataError(f"cannot read {what} {path}: not a readable TIFF file ({e})") from None


def _read_tiff(path: Path) -> np.ndarray:
    """The first series of a TIFF (all its channels, stored as samples or as pages) as
    ``(H, W)`` or ``(H, W, C)`` in its own dtype."""
    array, axes = tiff_series(path)
    if array.size == 0:
        raise DataError(f"cannot read image {path}: not a readable TIFF file (no image data)")
    order = plane_layout(axes, array.shape, path)
    dropped = [i for i in range(array.ndim) if i not in order]  # all of length 1
    array = array.transpose(order + dropped).reshape([array.shape[i] for i in order])
    if array.ndim not in (2, 3) or min(array.shape[:2]) < 1:
        raise DataError(
            f"{path}: expected a 2-D image (H, W) or (H, W, C), got shape {array.shape} "
            "(a stack: save one plane per file)"
        )
    return array


def image_size(path: str | Path) -> tuple[int, int]:
    """``(H, W)`` of an image file as :func:`read_image` returns it (EXIF orientation applied),
    read from its header only."""
    path = Path(path)
    if path.is_dir():
        return open_array(path).shape[:2]
    if path.suffix.lower() in TIFF_SUFFIXES:
        import tifffile

        if not path.is_file():
            raise FileNotFoundError(f"image not found: {path}")
        try:
            with tifffile.TiffFile(path) as tif:
                shape, axes = tuple(tif.series[0].shape), tif.series[0].axes
        except Exception as e:
            raise DataError(f"cannot read image {path}: not a readable TIFF file ({e})") from None
        order = plane_layout(axes, shape, path)  # as _read_tiff
        return int(shape[order[0]]), int(shape[order[1]])
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    except Image.DecompressionBombError:
        raise _too_large_for_pil(path) from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"cannot read image {path}: not a readable image file ({e})") from None
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


@contextlib.contextmanager
def conversion_notes(enabled: bool) -> Iterator[None]:
    """Within, the note that images of a mode are converted on load (once per mode and
    process) is stated if ``enabled``, and not at all otherwise (``--quiet``: a silenced
    conversion is not counted as stated)."""
    before = _SILENT[0]
    _SILENT[0] = not enabled
    try:
        yield
    finally:
        _SILENT[0] = before


def _note(mode: str, target: str) -> None:
    key = f"{mode}->{target}"
    if key not in _REPORTED and not _SILENT[0]:
        _REPORTED.add(key)
        _log.warning("images of mode %s are converted to %s on load", mode, target)


def read_raw(path: str | Path) -> np.ndarray:
    """An image file's values as stored: ``(H, W, C)`` in the file's dtype (C >= 1).

    TIFF through ``tifffile`` (any bit depth, float, N channels), a zarr / OME-Zarr directory
    through ``zarr`` (:mod:`pixelgroup.data.arrays`); other formats through PIL
    with the EXIF orientation applied: 8-bit modes become RGB (palette, CMYK, YCbCr, 1-bit;
    alpha dropped), 16/32-bit and float grey levels stay as they are.
    """
    path = Path(path)
    if path.is_dir():
        raw = open_array(path)
        return raw.read(slice(None), slice(None))
    if path.suffix.lower() in TIFF_SUFFIXES:
        array = _read_tiff(path)
    else:
        im = _open(path)
        im = ImageOps.exif_transpose(im) or im
        if im.mode not in _WIDE and im.mode not in ("L", "RGB"):
            _note(im.mode, "RGB")
            im = im.convert("RGB")
        array = np.asarray(im)
    return array[:, :, None] if array.ndim == 2 else array


def intensity_range(array: np.ndarray, mode: str = "auto") -> np.ndarray | None:
    """The ``(2, C)`` float32 values that ``mode`` maps to 0 and 1 per channel of ``array (H,
    W, C)`` (``percentile``: its 1st and 99.8th percentiles), or None where ``mode`` needs
    none (``fixed``; ``auto`` of ``uint8``). A lazily read image computes it from a subsample
    (:mod:`pixelgroup.data.lazy_image`)."""
    mode = _mode(array, mode)
    if mode == "fixed":
        return None
    x = _finite_float(array)
    return np.percentile(x, PERCENTILES, axis=(0, 1)).astype(np.float32)


def _mode(array: np.ndarray, mode: str) -> str:
    if mode not in NORMALIZE_MODES:
        raise ValueError(f"normalize must be one of {', '.join(NORMALIZE_MODES)}, got {mode!r}")
    if array.dtype.kind not in "uif":
        raise DataError(f"images must hold integer or float values, got dtype {array.dtype}")
    if mode == "auto":
        return "fixed" if array.dtype == np.uint8 else "percentile"
    return mode


def _finite_float(array: np.ndarray) -> np.ndarray:
    x = array.astype(np.float32)
    if not np.isfinite(x).all():
        raise DataError("the image holds NaN or infinite values")
    return x


def normalize_intensity(
    array: np.ndarray, mode: str = "auto", value_range: np.ndarray | None = None
) -> np.ndarray:
    """``(H, W, C)`` raw values -> float32 ``(H, W, C)`` in [0, 1] by ``mode`` (one of
    :data:`NORMALIZE_MODES`).

    ``percentile``: per channel, ``(x - p1) / (p99.8 - p1)`` clipped to [0, 1] (a flat
    channel becomes 0); ``value_range (2, C)`` gives ``p1`` and ``p99.8`` (e.g. the whole
    image's, :func:`intensity_range`, for one window of it), else they are ``array``'s own.
    ``fixed``: integers divided by their type's maximum, floats kept and clipped to [0, 1].
    ``auto``: ``fixed`` for ``uint8``, ``percentile`` otherwise.

    Example:
        >>> x = np.arange(1000, dtype=np.uint16).reshape(10, 100, 1)
        >>> y = normalize_intensity(x)
        >>> float(y.min()), float(y.max()), round(float(y[5, 0, 0]), 2)
        (0.0, 1.0, 0.5)
    """
    mode = _mode(array, mode)
    x = _finite_float(array)
    if mode == "fixed":
        if array.dtype.kind in "ui":
            x = x / float(np.iinfo(array.dtype).max)
    else:
        if value_range is None:
            value_range = np.percentile(x, PERCENTILES, axis=(0, 1)).astype(np.float32)
        lo, hi = value_range
        x = (x - lo) / np.where(hi > lo, hi - lo, np.inf)
    return np.clip(x, 0.0, 1.0)


def read_image(
    path: str | Path,
    channels: int = 3,
    normalize: str = "auto",
    select: Sequence[int] | None = None,
) -> torch.Tensor:
    """Image file -> ``(C, H, W)`` float32 in [0, 1], ``C = channels`` (3: RGB, 1: grey).

    ``select`` picks up to 3 of the stored channels, in that order, before anything else
    (``[1]``: the second channel alone, e.g. a nuclear stain; ``[2, 0]``: the third as red and
    the first as green); a file with fewer channels than a selected index is an error naming
    it. Without ``select`` every stored channel is used (at most 4).

    The stored values (:func:`read_raw`) are brought to [0, 1] by :func:`normalize_intensity`
    with ``normalize`` (``auto``: 8-bit divided by 255, any other type percentile-normalised).
    A grey image is repeated into 3 channels; 2 channels get a third of zeros; of 4, the 4th
    (alpha) is dropped; more is an error. For ``channels=1`` a colour image becomes its
    luminance (ITU-R 601). Each kind of conversion is stated once in the log
    (``logging.getLogger("pixelgroup.data.io")``).
    """
    check_read_options(channels, select)
    raw = model_channels(read_raw(path), select, path)
    return to_model_image(raw, channels, normalize, None)


def check_read_options(channels: int, select: Sequence[int] | None) -> None:
    """``ValueError`` unless ``channels`` is 1 or 3 and ``select`` lists 1 to 3 indices."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if select is not None and not 1 <= len(select) <= 3:
        raise ValueError(f"channels must list 1 to 3 channel indices, got {list(select)}")


def model_channels(
    raw: np.ndarray, select: Sequence[int] | None, path: str | Path, stored: int | None = None
) -> np.ndarray:
    """``raw (H, W, C)`` -> the (at most 3) stored channels the model uses: ``select``, or
    the first 3 (a 4th, alpha, dropped); ``stored`` (default ``C``) is the file's channel
    count, which must be at most 4 without ``select``."""
    c = raw.shape[2] if stored is None else stored
    if select is not None:
        bad = [i for i in select if not 0 <= i < c]
        if bad:
            raise DataError(
                f"{path}: has {c} channel(s) (0..{c - 1}), data.options.channels asks for {bad[0]}"
            )
        return raw[:, :, list(select)]
    if c > 4:
        raise DataError(
            f"{path}: {c} channels; pixelgroup reads 1 (grey), 2, 3 (RGB) or 4 (RGBA): "
            "choose up to 3 with data.options.channels: [i, j, k]"
        )
    return raw[:, :, :3]


def to_model_image(
    raw: np.ndarray, channels: int, normalize: str, value_range: np.ndarray | None
) -> torch.Tensor:
    """The model's channels ``raw (H, W, c)`` (c <= 3, :func:`model_channels`) -> ``(channels,
    H, W)`` float32 in [0, 1] (see :func:`read_image`; ``value_range`` as in
    :func:`normalize_intensity`)."""
    c = raw.shape[2]
    x = normalize_intensity(raw, normalize, value_range)
    if c == 2:
        x = np.concatenate([x, np.zeros_like(x[:, :, :1])], axis=2)
    if channels == 1 and x.shape[2] == 3:
        _note(f"{c}-channel", "grey")
        # per pixel, not a matrix product: a window's values are then the whole image's
        x = x[:, :, :1] * 0.299 + x[:, :, 1:2] * 0.587 + x[:, :, 2:3] * 0.114
    elif channels == 3 and x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def read_label_map(path: str | Path) -> torch.Tensor:
    """Single-channel integer PNG or TIFF (8/16/32-bit; e.g. instance ids, 0 = background)
    -> ``(H, W)`` int64."""
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        array = _read_tiff(path)
    else:
        with _open(path) as im:
            array = np.asarray(im)
    if array.dtype.kind == "f" and np.array_equal(array, np.round(array)):
        array = array.astype(np.int64)  # float TIFFs of whole-number ids (ImageJ)
    if array.dtype.kind not in "uib":
        raise DataError(f"{path}: a label map must hold integer ids, got dtype {array.dtype}")
    if array.ndim != 2:
        raise DataError(
            f"{path}: expected a single-channel label map, got shape {tuple(array.shape)}"
        )
    return torch.from_numpy(array.astype(np.int64))


def write_png(array: np.ndarray, path: str | Path) -> None:
    """Write ``(H, W)`` or ``(H, W, 3)`` uint8/uint16 atomically (temp file + ``os.replace``)."""
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def write_tiff(array: np.ndarray, path: str | Path) -> None:
    """Write an ``(H, W)`` array (e.g. uint32 instance ids) atomically as a tiled TIFF
    (512 x 512 tiles; BigTIFF past 2 GB), as QuPath, Fiji and ``tifffile`` read it."""
    import tifffile

    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp, array, tile=(512, 512), bigtiff=array.nbytes > 2**31, photometric="minisblack"
        )


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
