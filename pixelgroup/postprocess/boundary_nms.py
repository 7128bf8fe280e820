"""Thin a boundary-strength map by non-maximum suppression along the boundary normal.

The standard post-processing of edge detectors (Dollar's structured-edges toolbox ``edgesNms``,
docs/boundaries.md), vectorised in numpy:

1. orientation from a smoothed copy (triangle filter of radius 4, symmetric padding): with
   central-difference gradients taken twice, ``O = mod(atan(Oyy * sign(-Oxy) / (Oxx + 1e-5)), pi)``
   (x = column, y = row; ``sign(0)`` taken as +1); ``O`` is the direction *across* the boundary;
2. on the unsmoothed map, a pixel of value e is zeroed when ``multiplier * e`` is smaller than the
   bilinearly interpolated value at any offset ``d = +-1 .. +-radius`` along ``(cos O, sin O)``
   (coordinates clamped to the image);
3. values within ``border`` pixels of the image edge are scaled by ``distance / border``.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import convolve1d

from pixelgroup._checks import check_count
from pixelgroup.errors import InputError

__all__ = ["triangle_smooth", "boundary_orientation", "boundary_nms"]


def triangle_smooth(x: np.ndarray, radius: int = 4) -> np.ndarray:
    """Separable triangle filter ``[1, 2, .., r+1, .., 2, 1] / (r+1)^2`` (symmetric padding).

    Args:
        x: ``(H, W)`` map. radius: r >= 0 (0 returns a copy).
    """
    if radius == 0:
        return np.array(x, dtype=np.float64)
    k = np.concatenate([np.arange(1, radius + 2), np.arange(radius, 0, -1)]) / (radius + 1) ** 2
    x = convolve1d(np.asarray(x, dtype=np.float64), k, axis=0, mode="reflect")
    return convolve1d(x, k, axis=1, mode="reflect")


def boundary_orientation(edges: np.ndarray, smooth_radius: int = 4) -> np.ndarray:
    """``(H, W)`` normal angle in ``[0, pi)`` of an ``(H, W)`` boundary map (x right, y down)."""
    smooth = triangle_smooth(edges, smooth_radius)
    oy, ox = np.gradient(smooth)
    _, oxx = np.gradient(ox)
    oyy, oxy = np.gradient(oy)
    # the toolbox's sign(-Oxy), except that Oxy == 0 counts as +1 rather than 0: with 0 an exactly
    # axis-aligned boundary (Oxy == 0, only in synthetic maps) would get O = 0 whatever its angle
    sign = np.where(oxy > 0, -1.0, 1.0)
    return np.mod(np.arctan(oyy * sign / (oxx + 1e-5)), np.pi)


def _bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    h, w = img.shape
    x = np.clip(x, 0, w - 1.001)
    y = np.clip(y, 0, h - 1.001)
    x0, y0 = x.astype(np.int64), y.astype(np.int64)
    dx, dy = x - x0, y - y0
    return (
        img[y0, x0] * (1 - dx) * (1 - dy)
        + img[y0, x0 + 1] * dx * (1 - dy)
        + img[y0 + 1, x0] * (1 - dx) * dy
        + img[y0 + 1, x0 + 1] * dx * dy
    )


def boundary_nms(
    edges: np.ndarray,
    orientation: np.ndarray | None = None,
    *,
    radius: int = 1,
    multiplier: float = 1.01,
    border: int = 5,
    smooth_radius: int = 4,
) -> np.ndarray:
    """Non-maximum suppression of a boundary map along its normal (Dollar's ``edgesNms``).

    Args:
        edges: ``(H, W)`` boundary strength (>= 0, higher = more boundary); H, W >= 2.
        orientation: ``(H, W)`` normal angle in radians; computed by
            :func:`boundary_orientation` when None.
        radius: suppression radius r in pixels (1 in the original).
        multiplier: m; a pixel survives only if ``m * e`` >= its neighbours along the normal.
        border: s; values within s pixels of the image border are scaled by distance / s.
        smooth_radius: triangle radius for the orientation estimate.

    Returns:
        ``(H, W)`` float64 thinned map (suppressed pixels are 0).

    Example::

        thin = boundary_nms(prob)  # prob: (H, W) in [0, 1]

    Cost: O(H W r).
    """
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 2 or min(edges.shape) < 2:
        raise InputError(f"edges must be an (H, W) map with H, W >= 2, got shape {edges.shape}")
    if not np.isfinite(edges).all():
        raise InputError("edges contains non-finite values (NaN or inf)")
    if orientation is None:
        orientation = boundary_orientation(edges, smooth_radius)
    elif np.shape(orientation) != edges.shape:
        raise InputError(
            f"orientation must match edges {edges.shape}, got shape {np.shape(orientation)}"
        )
    radius, border = check_count(radius, "radius"), check_count(border, "border", minimum=0)
    h, w = edges.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    cos, sin = np.cos(orientation), np.sin(orientation)
    keep = edges > 0
    scaled = edges * multiplier
    for d in range(-radius, radius + 1):
        if d != 0:
            keep &= scaled >= _bilinear(edges, xs + d * cos, ys + d * sin)
    out = np.where(keep, edges, 0.0)
    if border > 0:
        s = min(border, w // 2, h // 2)
        ramp = np.arange(s) / s
        out[:, :s] *= ramp
        out[:, w - s :] *= ramp[::-1]
        out[:s, :] *= ramp[:, None]
        out[h - s :, :] *= ramp[::-1, None]
    return out
