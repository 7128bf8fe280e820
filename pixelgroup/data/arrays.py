"""Image files opened as arrays that are read window by window, never whole.

A TIFF / BigTIFF / OME-TIFF (tiled or striped; of a pyramid, its full-resolution level) is
opened through ``tifffile.imread(path, aszarr=True)`` and ``zarr.open`` (an uncompressed
image stored in one piece, through a memory map: zarr would see it as a single chunk); a
zarr or OME-Zarr directory through ``zarr.open`` (of a group, the first dataset of its OME
``multiscales``, the highest resolution, or else its largest array). :func:`open_array` gives a
:class:`RawArray`: the file's ``(H, W, C)`` values in its own dtype, of which
:meth:`RawArray.read` decodes only the chunks a window touches. :func:`plane_layout` says how
a stored array's axes become ``(H, W)`` or ``(H, W, C)``; it is shared with the eager reader
(:mod:`pixelgroup.data.io`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pixelgroup.errors import DataError

__all__ = ["RawArray", "open_array", "plane_layout", "is_array_path", "TIFF_SUFFIXES"]

TIFF_SUFFIXES = (".tif", ".tiff")

_OME_AXES = {"y": "Y", "x": "X", "c": "C", "z": "Z", "t": "T"}


def plane_layout(axes: str, shape: tuple[int, ...], path: Path) -> list[int]:
    """How a stored array of ``axes`` (tifffile's letters: Y, X rows and columns; S samples,
    C channels, Q unknown; Z, T planes and times) and ``shape`` becomes ``(H, W)`` or
    ``(H, W, C)``: the axes to keep, in that order (the others have length 1). Axes of
    length 1 are dropped first; one axis besides Y and X is the channels (unless it is Z or
    T: a stack, an error); two or more are an error. Where
    the axes are not named (Q: a plain array written without metadata), the layout is
    read from the shape: of three axes, the shorter of the first and the last is the channels."""
    kept = [i for i, (a, n) in enumerate(zip(axes, shape, strict=True)) if n != 1 or a in "YX"]
    if "Q" in axes or "Y" not in axes or "X" not in axes:
        kept = [i for i in range(len(shape)) if shape[i] != 1]
        kept = kept if len(kept) >= 2 else list(range(len(shape)))[-2:]
        if len(kept) == 3 and shape[kept[0]] < shape[kept[2]]:  # (C, H, W)
            return [kept[1], kept[2], kept[0]]
        if len(kept) in (2, 3):
            return kept
    extra = [i for i in kept if axes[i] not in "YX"]
    if len(extra) > 1 or any(axes[i] in "ZT" for i in extra) or len(shape) < 2:
        raise DataError(
            f"{path}: expected a 2-D image (H, W) or (H, W, C), got axes "
            f"{''.join(axes[i] for i in kept)} of shape {tuple(shape[i] for i in kept)} "
            "(a stack: save one plane per file)"
        )
    return [axes.index("Y"), axes.index("X"), *extra]


def is_array_path(path: str | Path) -> bool:
    """Whether :func:`open_array` reads ``path`` window by window: a TIFF file or a
    directory (zarr / OME-Zarr)."""
    path = Path(path)
    return path.is_dir() or path.suffix.lower() in TIFF_SUFFIXES


class RawArray:
    """An image file's values as stored, ``(H, W, C)`` in its own dtype, read by window.

    Attributes:
        path: the file or directory.
        shape: ``(H, W, C)`` (C >= 1).
        dtype: the stored NumPy dtype.
    """

    def __init__(self, path: Path, array: Any, axes: str) -> None:
        self.path = path
        self._array = array
        stored = tuple(int(n) for n in array.shape)
        if not stored or min(stored) < 1:
            raise DataError(f"cannot read image {path}: no image data (shape {stored})")
        if np.dtype(array.dtype).kind not in "uif":
            raise DataError(
                f"{path}: images must hold integer or float values, got dtype {array.dtype}"
            )
        self._order = plane_layout(axes, stored, path)
        self._stored = stored
        h, w = stored[self._order[0]], stored[self._order[1]]
        self.shape = (h, w, stored[self._order[2]] if len(self._order) == 3 else 1)
        self.dtype = np.dtype(array.dtype)

    def read(self, rows: slice, cols: slice) -> np.ndarray:
        """``(h, w, C)`` values of ``rows`` x ``cols`` (slices with an optional step, e.g.
        ``slice(None, None, 4)`` for every 4th row); only the chunks they touch are decoded."""
        index: list[Any] = [0] * len(self._stored)
        index[self._order[0]], index[self._order[1]] = rows, cols
        if len(self._order) == 3:
            index[self._order[2]] = slice(None)
        try:
            values = np.asarray(self._array[tuple(index)])
        except Exception as e:  # a truncated tile, a missing chunk file: the codecs' own types
            raise DataError(f"cannot read image {self.path}: a part is unreadable ({e})") from None
        kept = sorted(self._order)  # the result's axes, in stored order
        values = values.transpose([kept.index(i) for i in self._order])
        return values if values.ndim == 3 else values[:, :, None]


def open_array(path: str | Path) -> RawArray:
    """A TIFF file or a zarr / OME-Zarr directory as a :class:`RawArray` (see the module
    docstring); a file that is none of these, or holds no 2-D image, is a one-line
    :class:`~pixelgroup.errors.DataError`."""
    import zarr

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image not found: {path}")
    if path.is_dir():
        try:
            node = zarr.open(str(path), mode="r")
        except Exception as e:
            raise DataError(f"cannot read image {path}: not a zarr array or group ({e})") from None
        return RawArray(path, *_zarr_image(node, path))
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes, offset = series.axes, series.dataoffset
            if (
                offset is not None
                and len(series.levels) == 1
                and path.stat().st_size >= (offset + series.nbytes)
            ):
                stored = np.dtype(series.dtype).newbyteorder(tif.byteorder)
                array: Any = _Mapped(path, offset, tuple(series.shape), stored)
            else:
                store = tifffile.imread(path, aszarr=True, series=0, level=0)
                array = zarr.open(store, mode="r")
    except Exception as e:  # tifffile raises many types for a broken file
        raise DataError(f"cannot read image {path}: not a readable TIFF file ({e})") from None
    return RawArray(path, array, axes)


class _Mapped:
    """An uncompressed TIFF whose image is stored in one piece (tifffile's and ImageJ's
    default: one strip, one chunk for zarr), read by window through a memory map opened for
    each read and closed after it, so that pages read do not stay in the process."""

    def __init__(self, path: Path, offset: int, shape: tuple[int, ...], stored: np.dtype) -> None:
        self.path, self.offset, self.shape, self.stored = path, offset, shape, stored
        self.dtype = stored.newbyteorder("=")  # what reads give: the machine's byte order
        self.ndim = len(shape)

    def __getitem__(self, index: Any) -> np.ndarray:
        mapped = np.memmap(self.path, self.stored, "r", self.offset, self.shape)
        try:
            return np.asarray(mapped[index]).astype(self.dtype)
        finally:
            mapped._mmap.close()  # type: ignore[attr-defined]


def _zarr_image(node: Any, path: Path) -> tuple[Any, str]:
    """The array of a zarr node holding the full-resolution image, and its axes' letters."""
    import zarr

    if isinstance(node, zarr.Array):
        return node, "Q" * node.ndim
    attrs = dict(node.attrs)
    multiscales = attrs.get("multiscales", attrs.get("ome", {}).get("multiscales"))
    if isinstance(multiscales, list) and multiscales and isinstance(multiscales[0], dict):
        first = multiscales[0]
        try:
            array = node[first["datasets"][0]["path"]]
        except Exception:
            raise DataError(
                f"{path}: its OME-Zarr multiscales metadata names no readable dataset"
            ) from None
        names = [
            a.get("name", "") if isinstance(a, dict) else str(a) for a in first.get("axes", [])
        ]
        axes = "".join(_OME_AXES.get(n.lower(), "Q") for n in names)
        return array, axes if len(axes) == array.ndim and "Q" not in axes else "Q" * array.ndim
    arrays = [a for _, a in node.arrays()]
    if not arrays:
        raise DataError(f"{path}: a zarr group without arrays, not an image")
    array = max(arrays, key=lambda a: int(np.prod(a.shape)))
    return array, "Q" * array.ndim
