"""Numpy-only pictures: embedding -> RGB, label maps -> colours, overlays and mosaics."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["embedding_to_rgb", "labels_to_rgb", "overlay", "mosaic", "PALETTE"]


def _palette(n: int = 64) -> np.ndarray:
    """``(n, 3)`` well-spread colours (golden-ratio hues, alternating lightness); row 0 black."""
    import colorsys

    rows = [(0.0, 0.0, 0.0)]
    for i in range(1, n):
        hue = (i * 0.618033988749895) % 1.0
        rows.append(colorsys.hls_to_rgb(hue, 0.5 + 0.15 * ((i % 3) - 1), 0.85))
    return np.asarray(rows)


PALETTE: np.ndarray = _palette()
"""``(64, 3)`` float colours for labels 0..63 (0 = background, black); reused cyclically."""


def _numpy(x: object, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or torch.Tensor, got {type(x).__name__}")
    return x


def embedding_to_rgb(embedding: object, seed: int = 777) -> np.ndarray:
    """``(D, H, W)`` unit embedding -> ``(H, W, 3)`` float RGB in [0, 1].

    D = 3 maps each coordinate from [-1, 1] to [0, 1] (a fixed map, so loops stay comparable);
    D != 3 first projects with a fixed Gaussian matrix seeded by ``seed`` (as the original
    does for 64-D) and re-normalises onto the sphere.
    """
    x = _numpy(embedding, "embedding").astype(np.float64)
    if x.ndim != 3:
        raise ValueError(f"embedding must have shape (D, H, W), got {x.shape}")
    if x.shape[0] != 3:
        proj = np.random.default_rng(seed).standard_normal((3, x.shape[0]))
        x = np.einsum("kd,dhw->khw", proj, x)
        x = x / (np.linalg.norm(x, axis=0, keepdims=True) + 1e-12)
    return np.clip((x.transpose(1, 2, 0) + 1.0) / 2.0, 0.0, 1.0)


def labels_to_rgb(labels: object) -> np.ndarray:
    """``(H, W)`` integer labels -> ``(H, W, 3)`` float RGB (0 black, others from PALETTE)."""
    x = _numpy(labels, "labels")
    if x.ndim != 2:
        raise ValueError(f"labels must have shape (H, W), got {x.shape}")
    idx = np.where(x > 0, (x - 1) % (len(PALETTE) - 1) + 1, 0)
    return PALETTE[idx]


def overlay(image: object, labels: object, alpha: float = 0.55) -> np.ndarray:
    """Blend ``(H, W, 3)`` image in [0, 1] with label colours where labels > 0 -> ``(H, W, 3)``."""
    img = _numpy(image, "image").astype(np.float64)
    lab = _numpy(labels, "labels")
    if img.shape[:2] != lab.shape or img.ndim != 3:
        raise ValueError(f"image (H, W, 3) {img.shape} and labels (H, W) {lab.shape} must match")
    out = img.copy()
    fg = lab > 0
    out[fg] = (1 - alpha) * img[fg] + alpha * labels_to_rgb(lab)[fg]
    return out


def mosaic(tiles: Sequence[np.ndarray], ncols: int, pad: int = 2, fill: float = 1.0) -> np.ndarray:
    """Tile equally-sized ``(H, W, 3)`` arrays row-major into one image with ``pad``-px gaps."""
    if not tiles:
        raise ValueError("mosaic needs at least one tile")
    h, w, c = tiles[0].shape
    nrows = -(-len(tiles) // ncols)
    out = np.full((nrows * h + (nrows - 1) * pad, ncols * w + (ncols - 1) * pad, c), fill)
    for i, tile in enumerate(tiles):
        r, col = divmod(i, ncols)
        out[r * (h + pad) : r * (h + pad) + h, col * (w + pad) : col * (w + pad) + w] = tile
    return out
