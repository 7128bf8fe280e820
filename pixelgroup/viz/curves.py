"""Benchmark curves (PNG): precision-recall of the BSDS boundary benchmark and average recall
of proposals against the number per image.

Reference results (e.g. a paper's reported numbers) are passed in by the caller; nothing here
knows any. matplotlib is imported lazily (:func:`pixelgroup.viz.figures.pyplot`), and every
figure is written atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from pixelgroup.viz.figures import pyplot, save_figure

__all__ = ["PRCurve", "plot_pr_curves", "plot_average_recall"]

_REFERENCE_COLORS = ("C3", "C4", "C5", "k", "C6", "C7", "C8", "C9")
_REFERENCE_MARKERS = ("*", "^", "s", "D", "v", "P")


class PRCurve(Protocol):
    """What :func:`plot_pr_curves` draws, e.g. a
    :class:`~pixelgroup.metrics.boundary.BoundaryScores`: the ``(T,)`` dataset curve and its
    best-F (ODS) point."""

    @property
    def recall(self) -> np.ndarray: ...
    @property
    def precision(self) -> np.ndarray: ...
    @property
    def ods(self) -> float: ...
    @property
    def ods_recall(self) -> float: ...
    @property
    def ods_precision(self) -> float: ...


def _check_png(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"figure path must end in .png, got {path}")
    return path


def _iso_f(f: float, recall: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points ``(recall, precision)`` of the iso-F curve ``f`` inside the unit square."""
    precision = f * recall / (2 * recall - f)
    ok = (precision > 0) & (precision <= 1)
    return recall[ok], precision[ok]


def plot_pr_curves(
    curves: Mapping[str, PRCurve],
    path: str | Path,
    *,
    references: Mapping[str, float] | None = None,
    title: str = "BSDS boundary benchmark (precision-recall)",
) -> Path:
    """Precision-recall PNG: each curve with its ODS point, over iso-F contours.

    Args:
        curves: ``{label: scores}`` (e.g. ``BoundaryEvaluator.scores()``).
        path: output ``.png``.
        references: ``{label: F}`` drawn as dashed iso-F lines, for results known only by
            their F (a paper's ODS), e.g. ``{"HED": 0.780}``.
        title: the axes' title.
    """
    path = _check_png(path)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 6))
    r = np.linspace(0.01, 1, 400)
    for f in np.arange(0.1, 1.0, 0.1):
        ax.plot(*_iso_f(f, r), color="0.88", lw=0.8)
    for i, (label, f) in enumerate((references or {}).items()):
        color = _REFERENCE_COLORS[i % len(_REFERENCE_COLORS)]
        ax.plot(*_iso_f(f, r), ls="--", lw=1, color=color, label=f"[F={f:.3f}] {label} ODS")
    for i, (label, s) in enumerate(curves.items()):
        ax.plot(s.recall, s.precision, lw=2, color=f"C{i}", label=f"[F={s.ods:.3f}] {label}")
        ax.plot([s.ods_recall], [s.ods_precision], "o", color=f"C{i}")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="Recall", ylabel="Precision", aspect="equal")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path, dpi=120)


def plot_average_recall(
    curves: Mapping[str, Mapping[int, float]],
    path: str | Path,
    *,
    references: Mapping[str, Sequence[tuple[float, float]]] | None = None,
    title: str = "Class-agnostic mask proposals",
) -> Path:
    """Average recall against proposals per image (log x) as a PNG.

    Args:
        curves: ``{label: {k: AR@k}}``, e.g. ``{"ours": {1: .2, 10: .5}}``.
        path: output ``.png``.
        references: ``{label: [(k, recall), ...]}`` drawn as grey dotted markers, e.g. points
            read off a paper's plot.
        title: the axes' title.
    """
    path = _check_png(path)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    for label, curve in curves.items():
        ks = sorted(curve)
        ax.plot(ks, [curve[k] for k in ks], "o-", label=label)
    for i, (label, points) in enumerate((references or {}).items()):
        marker = _REFERENCE_MARKERS[i % len(_REFERENCE_MARKERS)]
        xs, ys = zip(*points, strict=True) if points else ((), ())
        ax.plot(xs, ys, marker, ls=":", color="gray", label=label, ms=8)
    ax.set(xscale="log", xlabel="proposals per image", ylabel="recall", ylim=(0, 1), title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)
