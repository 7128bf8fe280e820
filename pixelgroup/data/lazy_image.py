"""An image larger than memory, read one window at a time as the model takes it.

:class:`LazyImage` is what :func:`pixelgroup.data.io.read_image` returns, window by window:
the same channels and the same intensity normalisation, from a TIFF / BigTIFF / OME-TIFF or a
zarr / OME-Zarr directory (:func:`pixelgroup.data.arrays.open_array`), decoding only the
stored chunks each window touches. Percentile normalisation needs the whole image's
percentiles: they are computed once from every ``s``-th row and column, with ``s`` the
smallest stride that keeps the sample within :data:`SAMPLE_PIXELS`, so that an image of up to
that many pixels is normalised exactly as :func:`~pixelgroup.data.io.read_image` does it, and
a larger one by the percentiles of a regular subsample (docs/large_images.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from pixelgroup.data.arrays import RawArray, open_array
from pixelgroup.data.io import (
    check_read_options,
    intensity_range,
    model_channels,
    to_model_image,
)
from pixelgroup.postprocess.tiles import Box

__all__ = ["LazyImage", "SAMPLE_PIXELS"]

SAMPLE_PIXELS = 2048 * 2048
"""Most pixels the percentiles of a lazily read image are computed from (a strided
subsample beyond): exact up to 2048 x 2048, and a bounded memory cost above."""


class LazyImage:
    """An image file read by window as :func:`~pixelgroup.data.io.read_image` would read it
    whole (same arguments).

    Attributes:
        path: the file or directory.
        size: ``(H, W)``.
        channels: C of every window (1 or 3).

    Example:
        >>> import tifffile, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "a.tif")
        >>> tifffile.imwrite(path, np.arange(64 * 80, dtype=np.uint16).reshape(64, 80))
        >>> image = LazyImage(path)
        >>> image.size, tuple(image.read(Box(8, 16, 40, 48)).shape)
        ((64, 80), (3, 32, 32))
    """

    def __init__(
        self,
        path: str | Path,
        channels: int = 3,
        normalize: str = "auto",
        select: Sequence[int] | None = None,
    ) -> None:
        check_read_options(channels, select)
        self.path = Path(path)
        self._raw: RawArray = open_array(self.path)
        self.channels = channels
        self._normalize = normalize
        self._select = None if select is None else list(select)
        model_channels(self._raw.read(slice(0, 1), slice(0, 1)), self._select, self.path)
        self.size = self._raw.shape[:2]

    def _values(self, rows: slice, cols: slice) -> np.ndarray:
        raw = self._raw.read(rows, cols)
        return model_channels(raw, self._select, self.path)

    @cached_property
    def value_range(self) -> np.ndarray | None:
        """The ``(2, C)`` values mapped to 0 and 1 (:func:`~pixelgroup.data.io.
        intensity_range`) of every ``s``-th row and column (see the module docstring);
        None when the normalisation needs none. Computed at the first read."""
        h, w = self.size
        stride = max(1, math.ceil(math.sqrt(h * w / SAMPLE_PIXELS)))
        step = slice(None, None, stride)
        return intensity_range(self._values(step, step), self._normalize)

    def read(self, box: Box) -> torch.Tensor:
        """``(channels, h, w)`` float32 in [0, 1]: the pixels of ``box`` (rows ``top:bottom``,
        columns ``left:right``), normalised with the whole image's :attr:`value_range`."""
        rows, cols = box.slices()
        return to_model_image(
            self._values(rows, cols), self.channels, self._normalize, self.value_range
        )
