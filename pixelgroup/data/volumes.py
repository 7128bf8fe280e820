"""Volumes as TIFF stacks: reading images, label stacks and voxel sizes; writing label stacks.

A volume file is a TIFF (ImageJ hyperstack, OME-TIFF or plain pages) whose first series holds
``(Z, Y, X)`` or, with a channel axis, ``(C, Z, Y, X)`` (in any axis order tifffile names);
axes of length 1 are dropped. The voxel size comes from the OME ``PhysicalSizeZ/Y/X`` or the
ImageJ ``spacing`` (z) and the X/YResolution tags (y, x); where none is stored, ``None``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from pixelgroup._atomic import atomic_path
from pixelgroup.data.io import normalize_intensity, tiff_series
from pixelgroup.errors import DataError

__all__ = ["read_volume", "read_label_volume", "voxel_size_of", "write_label_volume"]

_CHANNEL_AXES = "CS"


def _read(path: Path) -> tuple[np.ndarray, str]:
    """The first series of a TIFF and its axes (tifffile's letters), axes of length 1
    dropped."""
    array, axes = tiff_series(path, "volume")
    keep = [i for i, n in enumerate(array.shape) if n > 1 or axes[i] in "YX"]
    return array.reshape([array.shape[i] for i in keep]), "".join(axes[i] for i in keep)


def _zyx(array: np.ndarray, axes: str, path: Path, labels: bool) -> np.ndarray:
    """``array`` with ``axes`` -> ``(C, Z, Y, X)`` (``labels``: ``(Z, Y, X)``, no channel)."""
    channel = [a for a in axes if a in _CHANNEL_AXES]
    depth = [a for a in axes if a not in _CHANNEL_AXES + "YX"]
    if labels and not depth and len(channel) == 1:  # a plain 3-D TIFF read as samples
        depth, channel = channel, []
    what = "a label stack (Z, Y, X)" if labels else "a volume (Z, Y, X) or (C, Z, Y, X)"
    if len(depth) != 1 or len(channel) > (0 if labels else 1) or "Y" not in axes:
        raise DataError(
            f"{path}: expected {what}, got shape {array.shape} (axes {axes}); "
            + ("a 2-D image is not a volume" if not depth else "save one volume per file")
        )
    order = [axes.index(a) for a in channel + depth + ["Y", "X"]]
    array = array.transpose(order)
    return array if labels or channel else array[None]


def voxel_size_of(path: str | Path) -> tuple[float, float, float] | None:
    """``(z, y, x)`` voxel size stored in a TIFF (OME PhysicalSize*, else ImageJ spacing and
    the resolution tags), or ``None`` when the file states no z spacing."""
    import tifffile

    with tifffile.TiffFile(Path(path)) as tif:
        if tif.ome_metadata:
            found = {
                k: float(v)
                for k, v in re.findall(r'PhysicalSize([XYZ])="([0-9.eE+-]+)"', tif.ome_metadata)
            }
            if "Z" in found:
                return (found["Z"], found.get("Y", 1.0), found.get("X", 1.0))
        spacing = (tif.imagej_metadata or {}).get("spacing")
        if spacing is None:
            return None
        tags = tif.pages[0].tags
        sizes = []
        for name in ("YResolution", "XResolution"):
            tag = tags.get(name)
            num, den = tag.value if tag is not None else (1, 1)
            sizes.append(den / num if num else 1.0)
        return (float(spacing), sizes[0], sizes[1])


def read_volume(
    path: str | Path,
    channels: int = 1,
    normalize: str = "auto",
    select: Sequence[int] | None = None,
) -> torch.Tensor:
    """Volume file -> ``(C, Z, Y, X)`` float32 in [0, 1] with ``C = channels``.

    ``select`` picks stored channels in that order; without it the first ``channels`` are
    used and a grey volume given to a model of more channels is an error. Values are mapped
    per channel over the whole volume as 2-D images are
    (:func:`~pixelgroup.data.io.normalize_intensity`: 8-bit / 255, otherwise 1-99.8 %
    percentiles). A 2-D image is an error naming the file.
    """
    path = Path(path)
    array = _zyx(*_read(path), path, labels=False)
    if select is not None:
        bad = [i for i in select if not 0 <= i < array.shape[0]]
        if bad:
            raise DataError(f"{path}: has {array.shape[0]} channel(s), asked for channel {bad[0]}")
        array = array[list(select)]
    if array.shape[0] < channels:
        raise DataError(
            f"{path}: {array.shape[0]} channel(s), the model takes {channels} "
            "(model.options.in_channels)"
        )
    c, z, y, x = array[:channels].shape
    flat = array[:channels].reshape(c, z * y, x).transpose(1, 2, 0)  # (H, W, C) for the 2-D code
    values = normalize_intensity(flat, normalize).transpose(2, 0, 1).reshape(c, z, y, x)
    return torch.from_numpy(np.ascontiguousarray(values))


def read_label_volume(path: str | Path) -> torch.Tensor:
    """Label stack file (integer ids, 0 background) -> ``(Z, Y, X)`` int64."""
    path = Path(path)
    array = _zyx(*_read(path), path, labels=True)
    if array.dtype.kind not in "ui":
        raise DataError(f"{path}: label stacks hold integer ids, got dtype {array.dtype}")
    if array.dtype.kind == "i" and array.size and array.min() < 0:
        raise DataError(f"{path}: label ids must be >= 0, got {array.min()}")
    return torch.from_numpy(array.astype(np.int64))


def write_label_volume(
    labels: torch.Tensor | np.ndarray,
    path: str | Path,
    voxel_size: Sequence[float] | None = None,
) -> Path:
    """``labels (Z, Y, X)`` as an OME-TIFF stack, 16-bit (32-bit above 65535 labels), written
    to a temp file then renamed (:func:`~pixelgroup._atomic.atomic_path`), with the
    ``voxel_size (z, y, x)`` as OME PhysicalSizeZ/Y/X when given. Returns ``path``."""
    import tifffile

    array = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if array.ndim != 3:
        raise ValueError(f"labels must be (Z, Y, X), got shape {array.shape}")
    dtype = np.uint16 if int(array.max(initial=0)) <= 65535 else np.uint32
    metadata: dict = {"axes": "ZYX"}
    if voxel_size is not None:
        z, y, x = (float(v) for v in voxel_size)
        metadata.update(PhysicalSizeZ=z, PhysicalSizeY=y, PhysicalSizeX=x)
    path = Path(path)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, array.astype(dtype), ome=True, metadata=metadata)
    return path
