"""The BSDS boundary benchmark: ODS, OIS, AP and R50 over a sweep of thresholds.

Follows the Berkeley benchmark (``evaluation_bdry`` / ``correspondPixels``) as run by pyEdgeEval:
for each threshold t the prediction ``pred >= t`` is thinned to one pixel width, then matched to
each annotator's boundary map by a one-to-one correspondence between pixels at most
``max_dist * image diagonal`` apart (0.0075 -> 4.3 px on a 481x321 image). Per threshold::

    count_r = sum over annotators of matched ground-truth pixels      sum_r = all GT pixels
    count_p = predicted pixels matched to at least one annotator      sum_p = predicted pixels

Summed over images, recall = count_r / sum_r and precision = count_p / sum_p give the dataset
curve; ODS is its best F (linearly interpolated between neighbouring thresholds), OIS sums each
image's counts at that image's best threshold, AP is the area under the curve sampled at
recall 0, 0.01, ..., 1 (Dollar's edges toolbox and pyEdgeEval's ``AUC``; a curve with a single
recall value has area 0, as in pyEdgeEval) and R50 is the recall at 50 % precision.

The correspondence is the original's min-cost assignment, solved exactly: a matched pair costs
its pixel distance (x100, rounded as in the C++ matcher) and every unmatched pixel an outlier cost
far above any distance, so the answer is a maximum matching of least total distance. Candidate
pairs come from a vectorised scan of the disc of offsets and the sparse assignment is solved by
:func:`scipy.sparse.csgraph.min_weight_full_bipartite_matching` (LAPJVsp). The original solves a
sparsified version with random outlier edges, so counts agree to within a pixel or so; which of
several equally cheap pixels gets matched may differ. Thinning is :func:`skimage.morphology.thin`
(MATLAB's ``bwmorph(..., 'thin', inf)`` differs on a few pixels per map).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import min_weight_full_bipartite_matching
from skimage.morphology import thin

from pixelgroup._atomic import atomic_path

__all__ = [
    "PAPER_ODS",
    "BoundaryCounts",
    "BoundaryScores",
    "BoundaryEvaluator",
    "boundary_thresholds",
    "correspond_pixels",
    "boundary_counts",
    "boundary_scores",
    "evaluate_boundaries",
    "plot_pr_curves",
]

#: ODS F on the BSDS500 test set reported in the paper (Kong & Fowlkes 2018, Fig./Table).
PAPER_ODS = {"Kong & Fowlkes (paper)": 0.796, "HED": 0.780, "COB": 0.793, "Human": 0.803}

_COST_SCALE = 100  # the C++ matcher works on integer costs: distance x 100, rounded


def boundary_thresholds(num: int = 99) -> np.ndarray:
    """``(T,)`` thresholds ``1/(T+1), ..., T/(T+1)`` (0.01 ... 0.99 for T = 99), as in BSDS."""
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"num_thresholds must be an int >= 1, got {num!r}")
    return np.linspace(1.0 / (num + 1), 1.0 - 1.0 / (num + 1), num)


def _disc_offsets(radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r = int(math.ceil(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    keep = dy**2 + dx**2 <= radius**2
    dy, dx = dy[keep], dx[keep]
    return dy, dx, np.rint(np.hypot(dy, dx) * _COST_SCALE)


def correspond_pixels(
    pred: np.ndarray, gt: np.ndarray, max_dist: float = 0.0075, outlier_cost: float = 100.0
) -> tuple[np.ndarray, np.ndarray]:
    """Match two binary boundary maps one-to-one within ``max_dist`` x the image diagonal.

    Args:
        pred, gt: ``(H, W)`` boolean maps (non-zero = boundary pixel).
        max_dist: matching radius as a fraction of the diagonal ``sqrt(H^2 + W^2)``.
        outlier_cost: cost of leaving a pixel unmatched, in units of the radius (> 1, so a
            maximum matching is always preferred; the original's 100).

    Returns:
        ``(matched_pred, matched_gt)``: ``(H, W)`` boolean maps of the matched pixels; both have
        the same number of pixels, the size of a maximum matching.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt must have the same shape, got {pred.shape} and {gt.shape}")
    height, width = pred.shape
    radius = max_dist * math.hypot(height, width)
    dy, dx, cost = _disc_offsets(radius)
    matched_pred = np.zeros(pred.shape, dtype=bool)
    matched_gt = np.zeros(pred.shape, dtype=bool)
    y1, x1 = np.nonzero(pred)
    y2, x2 = np.nonzero(gt)
    if len(y1) == 0 or len(y2) == 0:
        return matched_pred, matched_gt
    gt_id = np.full(pred.shape, -1, dtype=np.int64)
    gt_id[y2, x2] = np.arange(len(y2))
    # (n_pred, n_offsets) candidate partners; -1 outside the image or off the GT boundary
    ys, xs = y1[:, None] + dy, x1[:, None] + dx
    inside = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
    partner = np.where(inside, gt_id[ys.clip(0, height - 1), xs.clip(0, width - 1)], -1)
    pi, oi = np.nonzero(partner >= 0)
    if len(pi) == 0:
        return matched_pred, matched_gt
    # only pixels with a candidate take part ("matchable" nodes of the original)
    nodes1, ei = np.unique(pi, return_inverse=True)
    nodes2, ej = np.unique(partner[pi, oi], return_inverse=True)
    n1, n2 = len(nodes1), len(nodes2)
    outlier = math.ceil(outlier_cost * radius * _COST_SCALE)
    # Rows: pred nodes, then one outlier per GT node; cols: GT nodes, then one outlier per pred
    # node. A pred node may stay unmatched via its own outlier, likewise a GT node; the outlier
    # twins of a matched pair (i, j) pair up through the mirror edge. Every perfect matching
    # then costs outlier * (n1 + n2 - k) + (distances of its k real pairs). The +1 keeps
    # zero-distance pairs from being dropped as sparse zeros; it adds the same n1 + n2 to all.
    e = len(ei)
    rows = np.concatenate([ei, np.arange(n1), n1 + np.arange(n2), n1 + ej])
    cols = np.concatenate([ej, n2 + np.arange(n1), np.arange(n2), n2 + ei])
    weights = np.concatenate([cost[oi], np.full(n1 + n2 + e, outlier, dtype=np.float64)]) + 1.0
    graph = sp.csr_matrix((weights, (rows, cols)), shape=(n1 + n2, n1 + n2))
    row_ind, col_ind = min_weight_full_bipartite_matching(graph)
    real = (row_ind < n1) & (col_ind < n2)
    a, b = nodes1[row_ind[real]], nodes2[col_ind[real]]
    matched_pred[y1[a], x1[a]] = True
    matched_gt[y2[b], x2[b]] = True
    return matched_pred, matched_gt


@dataclass(frozen=True)
class BoundaryCounts:
    """Per-threshold match counts of one image; every array has shape ``(T,)``."""

    thresholds: np.ndarray
    count_r: np.ndarray
    sum_r: np.ndarray
    count_p: np.ndarray
    sum_p: np.ndarray


def _check_pair(pred: np.ndarray, gts: np.ndarray) -> None:
    if pred.ndim != 2:
        raise ValueError(f"pred must be an (H, W) map, got shape {pred.shape}")
    if gts.ndim != 3 or gts.shape[1:] != pred.shape:
        raise ValueError(
            f"ground truth must be (A, H, W) annotator maps matching pred (H, W) = {pred.shape}, "
            f"got shape {gts.shape}; resize the prediction to the image size"
        )
    if gts.shape[0] == 0 or not gts.any():
        raise ValueError("ground truth is empty: no annotator marks any boundary pixel")
    if not np.isfinite(pred).all():
        raise ValueError("pred contains non-finite values (NaN or inf)")
    lo, hi = float(pred.min()), float(pred.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"pred values must lie in [0, 1], got range [{lo:.4g}, {hi:.4g}]; "
            "divide 8-bit maps by 255 and 16-bit maps by 65535"
        )


def boundary_counts(
    pred: np.ndarray,
    gts: np.ndarray | Sequence[np.ndarray],
    thresholds: int | np.ndarray = 99,
    *,
    max_dist: float = 0.0075,
    apply_thinning: bool = True,
) -> BoundaryCounts:
    """Match counts of one image over a threshold sweep (the BSDS ``evaluation_bdry``).

    Args:
        pred: ``(H, W)`` boundary strength in [0, 1], higher = more boundary.
        gts: ``(A, H, W)`` annotator boundary maps (or a list of ``(H, W)``; non-zero = boundary).
        thresholds: number T of evenly spaced thresholds, or a ``(T,)`` array.
        max_dist: matching radius as a fraction of the image diagonal.
        apply_thinning: thin each thresholded map to one pixel width first (the standard).

    Cost: T x A sparse assignments on the boundary pixels; ~0.1-0.6 s each at 481x321.
    """
    pred = np.asarray(pred, dtype=np.float64)
    maps = np.asarray(gts)
    if maps.ndim == 2:
        maps = maps[None]
    _check_pair(pred, maps)
    maps = maps != 0
    ts = boundary_thresholds(thresholds) if isinstance(thresholds, int) else np.asarray(thresholds)
    count_r, count_p, sum_p = np.zeros(len(ts)), np.zeros(len(ts)), np.zeros(len(ts))
    sum_r = np.full(len(ts), float(maps.sum()))
    for k, t in enumerate(ts):
        binary = pred >= t
        if apply_thinning:
            binary = thin(binary)
        matched_any = np.zeros(pred.shape, dtype=bool)
        for gt in maps:
            matched_pred, matched_gt = correspond_pixels(binary, gt, max_dist)
            matched_any |= matched_pred
            count_r[k] += matched_gt.sum()
        count_p[k] = matched_any.sum()
        sum_p[k] = binary.sum()
    return BoundaryCounts(ts, count_r, sum_r, count_p, sum_p)


def _ratio(num, den):
    return num / np.where(den == 0, 1, den)


def _f1(p, r):
    return 2 * p * r / np.where(p + r == 0, 1, p + r)


@dataclass(frozen=True)
class BoundaryScores:
    """Benchmark results. ``recall``/``precision``/``f1`` are the ``(T,)`` dataset curve."""

    ods: float
    ods_threshold: float
    ods_recall: float
    ods_precision: float
    ois: float
    ap: float
    r50: float
    thresholds: np.ndarray
    recall: np.ndarray
    precision: np.ndarray
    f1: np.ndarray
    per_image_best: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready dict (R50 is ``None`` when the curve never reaches 50 % precision)."""
        return {
            "ODS": self.ods,
            "ODS_threshold": self.ods_threshold,
            "ODS_recall": self.ods_recall,
            "ODS_precision": self.ods_precision,
            "OIS": self.ois,
            "AP": self.ap,
            "R50": None if math.isnan(self.r50) else self.r50,
            "curve": [
                {"threshold": float(t), "recall": float(r), "precision": float(p), "f1": float(f)}
                for t, r, p, f in zip(
                    self.thresholds, self.recall, self.precision, self.f1, strict=True
                )
            ],
            "per_image": self.per_image_best,
        }


def _interpolated_best(ts, rec, prec):
    """Best F on the curve linearly interpolated between neighbouring thresholds (101 steps)."""
    best = (float(ts[0]), float(rec[0]), float(prec[0]))
    if len(ts) > 1:
        d = np.linspace(0.0, 1.0, 101)[:, None]
        t = ts[1:] * d + ts[:-1] * (1 - d)
        r = rec[1:] * d + rec[:-1] * (1 - d)
        p = prec[1:] * d + prec[:-1] * (1 - d)
        f = _f1(p, r)
        k = np.unravel_index(np.argmax(f.T), f.T.shape)[::-1]  # first max in threshold order
        if f[k] > _f1(prec[0], rec[0]):
            best = (float(t[k]), float(r[k]), float(p[k]))
    t, r, p = best
    return float(_f1(p, r)), t, r, p


def _average_precision(rec, prec):
    rec_u, first = np.unique(rec, return_index=True)
    if len(rec_u) < 2:
        return 0.0
    grid = np.linspace(0.0, 1.0, 101)
    inside = (grid >= rec_u[0]) & (grid <= rec_u[-1])
    return float(np.interp(grid[inside], rec_u, prec[first]).sum() / 100)


def _recall_at_half_precision(rec, prec):
    prec_u, first = np.unique(prec, return_index=True)
    if prec_u[-1] < 0.5:
        return float("nan")
    if len(prec_u) == 1:
        return float(rec[first[0]])
    return float(np.interp(max(prec_u[0], 0.5), prec_u, rec[first]))


def boundary_scores(counts: Sequence[BoundaryCounts], names: Sequence[str] = ()) -> BoundaryScores:
    """ODS, OIS, AP and R50 from the per-image counts of :func:`boundary_counts`.

    All images must share one threshold array ``(T,)``. ``names`` label ``per_image_best``.
    """
    if len(counts) == 0:
        raise ValueError("no images to score: process at least one prediction first")
    ts = counts[0].thresholds
    if any(not np.array_equal(c.thresholds, ts) for c in counts):
        raise ValueError("all images must be evaluated at the same thresholds")
    names = list(names) or [str(i) for i in range(len(counts))]
    stack = {k: np.stack([getattr(c, k) for c in counts]) for k in ("count_r", "sum_r")}
    stack |= {k: np.stack([getattr(c, k) for c in counts]) for k in ("count_p", "sum_p")}
    # OIS: each image at its own best threshold (first max, as pyEdgeEval)
    img_r = _ratio(stack["count_r"], stack["sum_r"])
    img_p = _ratio(stack["count_p"], stack["sum_p"])
    best = np.argmax(_f1(img_p, img_r), axis=1)
    rows = np.arange(len(counts))
    ois_r = _ratio(stack["count_r"][rows, best].sum(), stack["sum_r"][rows, best].sum())
    ois_p = _ratio(stack["count_p"][rows, best].sum(), stack["sum_p"][rows, best].sum())
    per_image = [
        {
            "name": n,
            "threshold": float(ts[b]),
            "recall": float(img_r[i, b]),
            "precision": float(img_p[i, b]),
            "f1": float(_f1(img_p[i, b], img_r[i, b])),
        }
        for i, (n, b) in enumerate(zip(names, best, strict=True))
    ]
    rec = _ratio(stack["count_r"].sum(0), stack["sum_r"].sum(0))
    prec = _ratio(stack["count_p"].sum(0), stack["sum_p"].sum(0))
    ods, ods_t, ods_r, ods_p = _interpolated_best(ts, rec, prec)
    return BoundaryScores(
        ods=ods,
        ods_threshold=ods_t,
        ods_recall=ods_r,
        ods_precision=ods_p,
        ois=float(_f1(ois_p, ois_r)),
        ap=_average_precision(rec, prec),
        r50=_recall_at_half_precision(rec, prec),
        thresholds=ts,
        recall=rec,
        precision=prec,
        f1=_f1(prec, rec),
        per_image_best=per_image,
    )


def _counts_job(args):
    pred, gts, ts, max_dist, apply_thinning = args
    return boundary_counts(pred, gts, ts, max_dist=max_dist, apply_thinning=apply_thinning)


def _merge(parts: list[BoundaryCounts]) -> BoundaryCounts:
    return BoundaryCounts(
        *(np.concatenate([getattr(p, k) for p in parts]) for k in BoundaryCounts.__annotations__)
    )


def evaluate_boundaries(
    samples: Iterable[tuple[str, np.ndarray, np.ndarray]],
    thresholds: int | np.ndarray = 99,
    *,
    max_dist: float = 0.0075,
    apply_thinning: bool = True,
    num_workers: int | None = None,
    progress: bool = False,
) -> BoundaryScores:
    """Benchmark ``(name, pred (H, W), gts (A, H, W))`` samples, in parallel over images and
    thresholds.

    ``num_workers``: processes (``None`` = all CPUs, ``0`` = run in this process). Each image's
    thresholds are split into chunks so that a few images still keep every worker busy.
    """
    ts = boundary_thresholds(thresholds) if isinstance(thresholds, int) else np.asarray(thresholds)
    samples = list(samples)
    names = [s[0] for s in samples]
    workers = (os.cpu_count() or 1) if num_workers is None else num_workers
    chunks = max(1, min(len(ts), math.ceil(2 * workers / max(len(samples), 1))))
    pieces = np.array_split(ts, chunks)
    jobs = [(p, g, piece, max_dist, apply_thinning) for _, p, g in samples for piece in pieces]
    if workers > 0 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(_track(pool.map(_counts_job, jobs), len(jobs), progress))
    else:
        results = list(_track(map(_counts_job, jobs), len(jobs), progress))
    merged = [_merge(results[i : i + chunks]) for i in range(0, len(results), chunks)]
    return boundary_scores(merged, names)


def _track(it, total, enabled):
    if not enabled:
        return it
    from tqdm import tqdm

    return tqdm(it, total=total, desc="matching boundaries", unit="job")


class BoundaryEvaluator:
    """Accumulates ``(pred, gts)`` pairs and runs the benchmark: ``reset / process / evaluate``.

    Example::

        ev = BoundaryEvaluator(num_thresholds=99)
        ev.process("104010", pred, gts)  # pred (H, W) in [0, 1]; gts (A, H, W)
        scores = ev.evaluate()  # BoundaryScores with .ods, .ois, .ap, .r50
    """

    def __init__(
        self,
        num_thresholds: int = 99,
        max_dist: float = 0.0075,
        apply_thinning: bool = True,
        num_workers: int | None = None,
    ) -> None:
        self.thresholds = boundary_thresholds(num_thresholds)
        self.max_dist = max_dist
        self.apply_thinning = apply_thinning
        self.num_workers = num_workers
        self.reset()

    def reset(self) -> None:
        self._samples: list[tuple[str, np.ndarray, np.ndarray]] = []

    def process(self, name: str, pred: np.ndarray, gts: np.ndarray) -> None:
        """Add one image: ``pred (H, W)`` in [0, 1], ``gts (A, H, W)`` or ``(H, W)``."""
        pred = np.asarray(pred, dtype=np.float64)
        gts = np.asarray(gts)
        gts = gts[None] if gts.ndim == 2 else gts
        _check_pair(pred, gts)
        self._samples.append((name, pred, gts != 0))

    def evaluate(self, progress: bool = False) -> BoundaryScores:
        return evaluate_boundaries(
            self._samples,
            self.thresholds,
            max_dist=self.max_dist,
            apply_thinning=self.apply_thinning,
            num_workers=self.num_workers,
            progress=progress,
        )


def plot_pr_curves(curves: dict[str, BoundaryScores], path: str | os.PathLike) -> None:
    """Write a precision-recall PNG: each curve with its ODS point, iso-F contours, and the
    paper's reported ODS values (:data:`PAPER_ODS`) as dashed iso-F lines (their operating
    points are not published, only F). Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 6))
    r = np.linspace(0.01, 1, 400)
    for f in np.arange(0.1, 1.0, 0.1):
        p = f * r / (2 * r - f)
        ok = (p > 0) & (p <= 1)
        ax.plot(r[ok], p[ok], color="0.88", lw=0.8)
    for (label, f), color in zip(PAPER_ODS.items(), ["C3", "C4", "C5", "k"], strict=True):
        p = f * r / (2 * r - f)
        ok = (p > 0) & (p <= 1)
        ax.plot(r[ok], p[ok], ls="--", lw=1, color=color, label=f"[F={f:.3f}] {label} ODS")
    for i, (label, s) in enumerate(curves.items()):
        ax.plot(s.recall, s.precision, lw=2, color=f"C{i}", label=f"[F={s.ods:.3f}] {label}")
        ax.plot([s.ods_recall], [s.ods_precision], "o", color=f"C{i}")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="Recall", ylabel="Precision", aspect="equal")
    ax.set_title("BSDS boundary benchmark (precision-recall)")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    finally:
        plt.close(fig)
