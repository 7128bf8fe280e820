"""An image larger than memory seen at another size, read one window at a time.

A model trained at a scale of its own (``data.options.scale``, e.g. a zoom that ``--config
cells`` chose for large nuclei) or ``pixelgroup predict --max-size`` sees an image resized.
:class:`ResizedWindows` gives the windows of that resized image without reading the image
whole: each output window is the antialiased bilinear resize that
``torch.nn.functional.interpolate(..., mode="bilinear", antialias=True, align_corners=False)``
makes of the whole image (its weights, :func:`resize_matrix`, applied as sparse matrices of
each filter's few taps), computed from the source pixels under the window only, a strip of
source rows at a time.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from scipy import sparse

from pixelgroup.postprocess.tiles import Box

__all__ = ["ResizedWindows", "resize_matrix"]

STRIP_VALUES = 1 << 24
"""Most source values (rows x columns x channels) one strip of a window reads at a time."""


class _Windows(Protocol):
    size: tuple[int, int]
    channels: int

    def read(self, box: Box) -> torch.Tensor: ...


def resize_matrix(n_in: int, n_out: int, out: range, source: range) -> torch.Tensor:
    """``(len(out), len(source))`` float64: the weights of the source samples ``source`` in
    the output samples ``out`` of an antialiased bilinear resize of ``n_in`` samples to
    ``n_out`` (PIL's triangle filter, as torch's ``interpolate(antialias=True)``: a support of
    one output sample on each side, the filter stretched by ``n_in / n_out`` when shrinking,
    each output's weights normalised to sum to 1). Source samples outside ``source`` are left
    out, so a row sums to 1 only where ``source`` covers its support (:func:`source_span`).

    Example:
        >>> m = resize_matrix(8, 4, range(4), range(8))
        >>> x = torch.arange(8.0, dtype=torch.float64)
        >>> image = x[None, None, :, None].expand(1, 1, 8, 3)
        >>> resized = torch.nn.functional.interpolate(
        ...     image, size=(4, 3), mode="bilinear", antialias=True)
        >>> torch.allclose(m @ x, resized[0, 0, :, 0])
        True
    """
    return torch.from_numpy(_sparse_weights(n_in, n_out, out, source).toarray())


def _sparse_weights(n_in: int, n_out: int, out: range, source: range) -> sparse.csr_matrix:
    """:func:`resize_matrix` as a sparse matrix (each row holds its filter's few taps)."""
    centre, first, last, inverse = _footprints(n_in, n_out, np.arange(out.start, out.stop))
    taps = int((last - first).max(initial=0))
    j = first[:, None] + np.arange(taps)[None, :]
    weights = np.clip(1.0 - np.abs((j - centre[:, None] + 0.5) * inverse), 0.0, None)
    weights[j >= last[:, None]] = 0.0
    total = weights.sum(1, keepdims=True)
    weights = np.divide(weights, total, out=np.zeros_like(weights), where=total != 0)
    inside = (j >= source.start) & (j < source.stop)
    rows = np.broadcast_to(np.arange(len(out))[:, None], j.shape)
    return sparse.csr_matrix(
        (weights[inside], (rows[inside], j[inside] - source.start)),
        shape=(len(out), len(source)),
    )


def source_span(n_in: int, n_out: int, start: int, stop: int) -> range:
    """The source samples that output samples ``start..stop`` of :func:`resize_matrix` read
    (from the first one's footprint to the last one's: footprints move forward with the
    output sample)."""
    _, first, last, _ = _footprints(n_in, n_out, np.array([start, stop - 1]))
    return range(int(first[0]), max(int(first[0]), int(last[1])))


def _footprints(
    n_in: int, n_out: int, out: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Of output samples ``out`` of :func:`resize_matrix`: their centres in source
    coordinates, the first and the end of the source samples their filter covers, and the
    filter's stretch (``1 / scale`` when shrinking, else 1)."""
    scale = n_in / n_out
    support, inverse = (scale, 1.0 / scale) if scale >= 1.0 else (1.0, 1.0)
    centre = scale * (out.astype(np.float64) + 0.5)
    first = np.maximum((centre - support + 0.5).astype(np.int64), 0)
    last = np.minimum((centre + support + 0.5).astype(np.int64), n_in)
    return centre, first, last, inverse


class ResizedWindows:
    """The windows of ``image`` (anything with ``size = (H, W)``, ``channels`` and
    ``read(box) -> (C, h, w)`` in [0, 1], e.g. :class:`~pixelgroup.data.lazy_image.LazyImage`)
    resized to ``size = (h, w)``, read by window.

    ``read(box)`` (``box`` in the resized image) -> ``(C, box height, box width)`` float32 in
    [0, 1]: equal, to float rounding, to the same window of
    ``F.interpolate(whole[None], size, mode="bilinear", antialias=True)``; it reads the source
    pixels under the box (a strip of rows at a time, at most :data:`STRIP_VALUES` values) and
    never the whole image.

    Example:
        >>> class Ramp:
        ...     size, channels = (64, 48), 1
        ...     def read(self, box):
        ...         rows, cols = box.slices()
        ...         ramp = torch.arange(64.0)[:, None] + torch.arange(48.0)
        ...         return ramp[None, rows, cols] / 111
        >>> small = ResizedWindows(Ramp(), (32, 24))
        >>> small.size, tuple(small.read(Box(4, 0, 20, 24)).shape)
        ((32, 24), (1, 16, 24))
    """

    def __init__(self, image: _Windows, size: tuple[int, int]) -> None:
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"size must be (h, w) with h, w >= 1, got {size}")
        self.image = image
        self.size = (int(size[0]), int(size[1]))
        self.channels = image.channels

    def read(self, box: Box) -> torch.Tensor:
        (source_h, source_w), (h, w) = self.image.size, self.size
        rows = source_span(source_h, h, box.top, box.bottom)
        cols = source_span(source_w, w, box.left, box.right)
        across = _sparse_weights(source_w, w, range(box.left, box.right), cols).T.astype(np.float32)
        _, first, last, _ = _footprints(source_h, h, np.arange(box.top, box.bottom))
        strip = max(1, STRIP_VALUES // max(1, len(cols) * self.channels))
        out = np.zeros((self.channels, box.bottom - box.top, box.right - box.left), np.float32)
        for top in range(rows.start, rows.stop, strip):
            part = range(top, min(top + strip, rows.stop))
            pixels = self.image.read(Box(part.start, cols.start, part.stop, cols.stop)).numpy()
            narrow = pixels.reshape(-1, len(cols)) @ across  # (C * rows, out columns)
            narrow = narrow.reshape(self.channels, len(part), -1)
            # the output rows whose filter reaches this strip (footprints move with the row)
            a = int(np.searchsorted(last, part.start, side="right"))
            b = int(np.searchsorted(first, part.stop, side="left"))
            down = _sparse_weights(source_h, h, range(box.top + a, box.top + b), part)
            down = down.astype(np.float32)
            for c in range(self.channels):
                out[c, a:b] += down @ narrow[c]
        return torch.from_numpy(out).clamp_(0.0, 1.0)
