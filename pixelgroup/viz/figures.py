"""Tutorial figures (PNG): panel grids (embeddings / instances per loop), the unit sphere
before / after GBMS, loss curves.

matplotlib is imported lazily with the Agg backend; every figure is written atomically.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pixelgroup._atomic import atomic_path
from pixelgroup.viz.colors import PALETTE, labels_to_rgb, mosaic

__all__ = [
    "pyplot",
    "save_figure",
    "panel_grid",
    "sphere_scatter",
    "loss_curves",
    "overlay_grid",
]


@functools.cache
def pyplot() -> Any:
    """pyplot with the non-interactive Agg backend; the only place that selects a backend
    (once per process, on the first figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    finally:
        pyplot().close(fig)
    return Path(path)


def panel_grid(
    rows: Sequence[Sequence[np.ndarray]], titles: Sequence[str], path: str | Path
) -> Path:
    """A grid of ``(H, W, 3)`` RGB panels in [0, 1], one row per image, titled columns.

    Build the panels with :func:`embedding_to_rgb` (the embedding at each GBMS loop) and
    :func:`labels_to_rgb` (ground-truth or predicted instances).
    """
    if not rows or any(len(r) != len(titles) for r in rows):
        raise ValueError(f"every row needs {len(titles)} panels (one per title)")
    plt = pyplot()
    ncols = len(titles)
    fig, axes = plt.subplots(
        len(rows), ncols, figsize=(1.25 * ncols, 1.25 * len(rows)), squeeze=False
    )
    for r, panels in enumerate(rows):
        for c, panel in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=8)
    fig.subplots_adjust(wspace=0.04, hspace=0.04)
    return save_figure(fig, path)


def sphere_scatter(
    embeddings: Sequence[np.ndarray],
    labels: np.ndarray,
    titles: Sequence[str],
    path: str | Path,
    max_points: int = 2000,
    seed: int = 0,
) -> Path:
    """3-D scatter of ``(3, H, W)`` embeddings on the unit sphere, one panel each, coloured by
    the ``(H, W)`` instance ``labels`` (same pixel subsample in every panel)."""
    plt = pyplot()
    lab = np.asarray(labels).ravel()
    rng = np.random.default_rng(seed)
    keep = rng.permutation(lab.size)[: min(max_points, lab.size)]
    colors = labels_to_rgb(lab[keep][None])[0]
    fig = plt.figure(figsize=(4 * len(embeddings), 4))
    u, v = np.mgrid[0 : 2 * np.pi : 30j, 0 : np.pi : 15j]
    for i, (emb, title) in enumerate(zip(embeddings, titles, strict=True)):
        if emb.shape[0] != 3:
            raise ValueError(f"sphere_scatter needs 3-D embeddings (3, H, W), got {emb.shape}")
        pts = emb.reshape(3, -1)[:, keep]
        ax = fig.add_subplot(1, len(embeddings), i + 1, projection="3d")
        ax.plot_wireframe(
            np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="0.85", lw=0.3
        )
        ax.scatter(*pts, c=np.where(colors.sum(1, keepdims=True) == 0, 0.4, colors), s=3)
        ax.set_title(title, fontsize=10)
        ax.set_box_aspect((1, 1, 1))
        ax.set_xlim(-1, 1), ax.set_ylim(-1, 1), ax.set_zlim(-1, 1)
        ax.set_xticklabels([]), ax.set_yticklabels([]), ax.set_zticklabels([])
    return save_figure(fig, path)


def loss_curves(history: Sequence[dict[str, float]], path: str | Path, smooth: int = 20) -> Path:
    """Per-loop training loss (``loss_iter0`` .. ``loss_iterT``) against iteration, smoothed
    with a running mean over ``smooth`` iterations; one line per loop index."""
    if not history:
        raise ValueError("loss_curves needs a non-empty training history")
    plt = pyplot()
    keys = sorted((k for k in history[0] if k.startswith("loss_iter")), key=lambda k: int(k[9:]))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = max(1, min(smooth, len(history)))
    for i, key in enumerate(keys):
        values = np.array([h[key] for h in history])
        running = np.convolve(values, np.ones(width) / width, mode="valid")
        steps = np.arange(width, len(values) + 1)
        ax.plot(steps, running, color=PALETTE[i + 1], label=f"loop {key[9:]}")
    ax.set_xlabel("iteration")
    ax.set_ylabel(f"pair loss (mean of {width})")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def overlay_grid(
    overlays: Sequence[np.ndarray],
    path: str | Path,
    ncols: int = 3,
    title: str = "predicted instances (overlay)",
) -> Path:
    """``overlays``: ``(H, W, 3)`` images (e.g. :func:`~pixelgroup.viz.colors.overlay`) tiled
    ``ncols`` wide into one PNG with ``title``, each pixel of an overlay drawn as a 4 x 4 block
    so that mask borders can be judged at full size."""
    cols = min(len(overlays), ncols)
    tile = mosaic(overlays, ncols=cols, pad=3)
    fig, ax = pyplot().subplots(figsize=(tile.shape[1] * 4 / 100, tile.shape[0] * 4 / 100 + 0.3))
    ax.imshow(tile, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=10)
    return save_figure(fig, path)
