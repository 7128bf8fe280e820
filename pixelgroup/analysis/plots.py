"""Figures of the studies (PNG), drawn with :mod:`pixelgroup.viz`'s lazily imported pyplot."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from pixelgroup.analysis.capacity import CapacityRow, exact_max_groups
from pixelgroup.analysis.gradient import GradientStudyResult, euclidean_gbms, regressor
from pixelgroup.viz.figures import pyplot, save_figure

__all__ = ["plot_gradient_summary", "plot_trajectories", "plot_capacity"]

_RANGE = (2.0, 6.0)


def _hist(ax: Any, values: torch.Tensor, title: str, labels: torch.Tensor | None = None) -> None:
    bins = torch.linspace(*_RANGE, 161).tolist()
    if labels is None:
        ax.hist(values.tolist(), bins=bins, color="tab:gray")
    else:
        for cls, color in ((1, "tab:red"), (2, "tab:blue")):
            ax.hist(values[labels == cls].tolist(), bins=bins, color=color, label=f"class {cls}")
        ax.legend(fontsize=7)
    ax.set_xlim(*_RANGE)
    ax.set_title(title, fontsize=9)


def plot_gradient_summary(
    result: GradientStudyResult,
    without_gbms: GradientStudyResult,
    path: str | os.PathLike,
    *,
    cluster_bandwidth: float = 0.2,
    cluster_iters: int = 5,
) -> Path:
    """The 2×3 summary of one K (``result``) next to plain regression (``without_gbms``).

    Panels: original data by class; the regressor; unsupervised GBMS of the data; points after
    the updates through K loops; GBMS of those; points after updates without mean shift.
    """
    plt = pyplot()
    x0, labels = result.trajectory[0], result.labels
    fig, axes = plt.subplots(2, 3, figsize=(12, 6), constrained_layout=True)
    _hist(axes[0, 0], x0, "original data by class", labels)
    grid = torch.linspace(*_RANGE, 41)
    axes[0, 1].plot(grid.tolist(), regressor(grid).tolist(), "k-")
    axes[0, 1].axvline(4.0, color="tab:orange", ls="--", label="decision x = 4 (ŷ = 1.5)")
    axes[0, 1].set_xlim(*_RANGE)
    axes[0, 1].set_title("fixed regressor ŷ = 0.5x − 0.5", fontsize=9)
    axes[0, 1].legend(fontsize=7)
    with torch.no_grad():
        unsupervised = euclidean_gbms(x0, cluster_bandwidth, cluster_iters)[-1]
    gbms = f"{cluster_iters} GBMS steps (δ = {cluster_bandwidth:g})"
    _hist(axes[0, 2], unsupervised, f"{gbms} of the data (unsupervised)")
    k = result.num_loops
    _hist(axes[1, 0], result.trajectory[-1], f"after updates through K = {k} loops", labels)
    _hist(
        axes[1, 1],
        result.clustered,
        f"{gbms} of those: {result.num_modes} modes, "
        f"{100 * result.on_target_fraction:.0f}% on target",
    )
    _hist(axes[1, 2], without_gbms.trajectory[-1], "after updates without mean shift", labels)
    fig.suptitle(f"Gradient through mean shift, K = {k}, N = {x0.numel()}")
    return save_figure(fig, path, dpi=80)


def plot_trajectories(
    result: GradientStudyResult, path: str | os.PathLike, *, num_points: int = 100, seed: int = 0
) -> Path:
    """Positions of ``num_points`` random points (seeded) over the supervised updates."""
    plt = pyplot()
    generator = torch.Generator().manual_seed(seed)
    n = result.trajectory.shape[1]
    picked = torch.randperm(n, generator=generator)[: min(num_points, n)]
    steps = torch.arange(result.trajectory.shape[0]).tolist()
    fig, ax = plt.subplots(figsize=(6, 4.5), constrained_layout=True)
    colors = {1: "tab:red", 2: "tab:blue"}
    for i in picked.tolist():
        color = colors[int(result.labels[i])]
        ax.plot(result.trajectory[:, i].tolist(), steps, color=color, lw=0.7, alpha=0.7)
    ax.set_xlim(*_RANGE)
    ax.set_xlabel("x")
    ax.set_ylabel("update")
    where = f"through K = {result.num_loops} loops" if result.num_loops else "without mean shift"
    ax.set_title(f"{len(picked)} random points, updates {where}\n(red: class 1, blue: class 2)")
    return save_figure(fig, path, dpi=80)


def plot_capacity(rows: list[CapacityRow], path: str | os.PathLike) -> Path:
    """Number of separable groups vs margin α, one colour per D (log scale).

    Solid: exact where known (α <= 0.5, any α for D = 2); circles: empirical packings (lower
    bounds); dashed: best upper bound where the exact value is unknown.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    dims = sorted({row.dim for row in rows})
    for i, dim in enumerate(dims):
        color = f"C{i}"
        mine = sorted((r for r in rows if r.dim == dim), key=lambda r: r.margin)
        grid = [i / 400 for i in range(400)]  # exact answers are cheap: draw them finely
        exact = [(a, n) for a in grid if (n := exact_max_groups(dim, a)) is not None]
        if exact:
            xs, ys = zip(*exact, strict=True)
            ax.step(xs, ys, where="post", color=color, lw=1.5, label=f"D = {dim} exact")
        ax.plot(
            [r.margin for r in mine],
            [r.empirical for r in mine],
            "o",
            color=color,
            ms=4,
            mfc="none",
            label=f"D = {dim} packed",
        )
        bounds = [(r.margin, r.upper) for r in mine if r.exact is None and r.upper < 1e4]
        if bounds:
            xs, ys = zip(*bounds, strict=True)
            ax.plot(xs, ys, "--", color=color, lw=1, label=f"D = {dim} upper bound")
    ax.axvline(0.5, color="k", lw=0.8, ls=":")
    ax.set_yscale("log", base=2)
    ax.set_xlabel("calibrated margin α (different groups need s <= α; cosine <= 2α − 1)")
    ax.set_ylabel("max number of groups n")
    ax.set_title("Feasible (D, α, n): below a curve is feasible")
    ax.legend(fontsize=6, ncol=2)
    return save_figure(fig, path, dpi=80)
