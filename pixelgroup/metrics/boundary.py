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

The correspondence is the original's min-cost assignment, solved exactly: a matched pair costs its
pixel distance (x100, rounded as in the C++ matcher) and every unmatched pixel an outlier cost far
above any distance, so the answer is a maximum matching of least total distance. Each annotator's
candidate pairs (a vectorised scan of the disc of offsets) are tabulated once per image; the
candidate graph of each threshold goes to a compiled successive-shortest-path solver (without a
compiler: :func:`scipy.sparse.csgraph.min_weight_full_bipartite_matching` on each connected
component; :mod:`pixelgroup.metrics._bsds_match`). The original solves a sparsified version with
random outlier edges, so counts agree to within a pixel or so; which of several equally cheap
pixels gets matched may differ. pyEdgeEval seeds that generator from the clock when it is loaded,
so its scores change from run to run (and with the matches made before); ours do not. Thinning
gives :func:`skimage.morphology.thin`'s result pixel for pixel (MATLAB's ``bwmorph(..., 'thin',
inf)`` differs on a few pixels per map).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from pixelgroup._checks import check_count, check_real
from pixelgroup.errors import InputError
from pixelgroup.metrics._bsds_match import GroundTruthMatcher, assignment_library, thin
from pixelgroup.metrics._inputs import as_numpy
from pixelgroup.metrics.evaluator import PerImageEvaluator

__all__ = [
    "BoundaryPrediction",
    "BoundaryTarget",
    "BoundaryCounts",
    "BoundaryScores",
    "BoundaryEvaluator",
    "boundary_thresholds",
    "correspond_pixels",
    "boundary_counts",
    "boundary_scores",
]


def boundary_thresholds(num: int = 99) -> np.ndarray:
    """``(T,)`` thresholds ``1/(T+1), ..., T/(T+1)`` (0.01 ... 0.99 for T = 99), as in BSDS."""
    num = check_count(num, "num_thresholds")
    return np.linspace(1.0 / (num + 1), 1.0 - 1.0 / (num + 1), num)


def _check_max_dist(max_dist: float) -> None:
    max_dist = check_real(max_dist, "max_dist")
    if not 0.0 <= max_dist < math.inf:
        raise InputError(
            f"max_dist must be a finite number >= 0 (a fraction of the image diagonal, e.g. "
            f"0.0075), got {max_dist}"
        )


def correspond_pixels(
    pred: np.ndarray, gt: np.ndarray, max_dist: float = 0.0075, outlier_cost: float = 100.0
) -> tuple[np.ndarray, np.ndarray]:
    """Match two binary boundary maps one-to-one within ``max_dist`` x the image diagonal.

    The least-cost assignment of the BSDS matcher, solved exactly: a pair costs its distance
    x 100 (rounded), an unmatched pixel ``outlier_cost`` radii (x 100, rounded up), so the answer
    is a maximum matching of least total distance (solvers: :mod:`pixelgroup.metrics._bsds_match`).

    Args:
        pred, gt: ``(H, W)`` boolean maps (non-zero = boundary pixel).
        max_dist: matching radius as a fraction of the diagonal ``sqrt(H^2 + W^2)``.
        outlier_cost: cost of leaving a pixel unmatched, in units of the radius (> 1, so a
            maximum matching is always preferred; the original's 100).

    Returns:
        ``(matched_pred, matched_gt)``: ``(H, W)`` boolean maps of the matched pixels; both have
        the same number of pixels, the size of the matching.

    Example::

        mp, mg = correspond_pixels(pred_map, gt_map)  # mp.sum() == mg.sum()

    Cost: near-linear in the candidate pairs plus one shortest-path search per row that meets a
    conflict; 6-36 ms on a 481x321 map (AVX-512 kind).
    """
    if pred.shape != gt.shape:
        raise InputError(f"pred and gt must have the same shape, got {pred.shape} and {gt.shape}")
    _check_max_dist(max_dist)
    radius = max_dist * math.hypot(*pred.shape)
    matched_pred = np.zeros(pred.shape, dtype=bool)
    matched_gt = np.zeros(pred.shape, dtype=bool)
    a, b = GroundTruthMatcher(gt != 0, radius, outlier_cost).match(pred != 0)
    matched_pred.flat[a] = True
    matched_gt.flat[b] = True
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
        raise InputError(f"pred must be an (H, W) map, got shape {pred.shape}")
    if gts.ndim != 3 or gts.shape[1:] != pred.shape:
        raise InputError(
            f"ground truth must be (A, H, W) annotator maps matching pred (H, W) = {pred.shape}, "
            f"got shape {gts.shape}; resize the prediction to the image size"
        )
    if gts.shape[0] == 0 or not gts.any():
        raise InputError("ground truth is empty: no annotator marks any boundary pixel")
    if not np.isfinite(pred).all():
        raise InputError("pred contains non-finite values (NaN or inf)")
    lo, hi = float(pred.min()), float(pred.max())
    if lo < 0.0 or hi > 1.0:
        raise InputError(
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

    Cost: T thinnings and T x A assignments; each annotator's candidate table is built once
    and reused at every threshold. About 0.3-1 CPU-second per annotator at 481x321 and T = 99
    on a raw (non-NMS) map with the compiled solver (AVX-512 kind), less on an NMS map.
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
    radius = max_dist * math.hypot(*pred.shape)
    matchers = [GroundTruthMatcher(gt, radius) for gt in maps]
    matched_any = np.zeros(pred.size, dtype=bool)
    for k, t in enumerate(ts):
        binary = pred >= t
        if apply_thinning:
            binary = thin(binary)
        binary = binary.ravel()
        matched_any[:] = False
        for matcher in matchers:
            matched_pred, matched_gt = matcher.match(binary)
            matched_any[matched_pred] = True
            count_r[k] += len(matched_gt)
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
        raise InputError("no images to score: process at least one prediction first")
    ts = counts[0].thresholds
    if any(not np.array_equal(c.thresholds, ts) for c in counts):
        raise InputError("all images must be evaluated at the same thresholds")
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


@dataclass(frozen=True)
class BoundaryPrediction:
    """One image's boundary map: ``boundary (H, W)`` strength in [0, 1], higher = more boundary
    (divide 8-bit maps by 255)."""

    boundary: np.ndarray | torch.Tensor


@dataclass(frozen=True)
class BoundaryTarget:
    """One image's ground truth.

    Attributes:
        boundaries: ``(A, H, W)`` annotator boundary maps, or one ``(H, W)`` map; non-zero =
            boundary.
        image_id: names the image in :attr:`BoundaryScores.per_image_best` (default: its index).
    """

    boundaries: np.ndarray | torch.Tensor
    image_id: str = ""


def _counts_job(args: tuple[Any, ...]) -> BoundaryCounts:
    pred, gts, ts, max_dist, apply_thinning = args
    return boundary_counts(pred, gts, ts, max_dist=max_dist, apply_thinning=apply_thinning)


def _merge(parts: list[BoundaryCounts]) -> BoundaryCounts:
    return BoundaryCounts(
        *(np.concatenate([getattr(p, k) for p in parts]) for k in BoundaryCounts.__annotations__)
    )


def _parallel_map(
    fn: Callable[[Any], BoundaryCounts], jobs: list[Any], workers: int, progress: bool
) -> list[BoundaryCounts]:
    """``[fn(job) for job in jobs]``, in a pool of ``workers`` processes when ``workers > 1``."""
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            return list(_track(pool.map(fn, jobs), len(jobs), progress))
    return list(_track(map(fn, jobs), len(jobs), progress))


def _track(it: Iterable[BoundaryCounts], total: int, enabled: bool) -> Iterator[BoundaryCounts]:
    if not enabled:
        return iter(it)
    from tqdm import tqdm

    return iter(tqdm(it, total=total, desc="matching boundaries", unit="job"))


class BoundaryEvaluator(PerImageEvaluator):
    """The BSDS benchmark over accumulated images: ``reset / process / evaluate``.

    ``process(predictions, targets)`` with one :class:`BoundaryPrediction` and one
    :class:`BoundaryTarget` per image stores them (after checking); ``evaluate()`` runs the
    matching, in parallel over images and thresholds, and returns ``{"ODS", "OIS", "AP",
    "R50"}`` (R50 left out when precision never reaches 0.5). :meth:`scores` gives the full
    :class:`BoundaryScores` (PR curve, ODS operating point, per-image best) of the same run.

    Args:
        num_thresholds: T evenly spaced thresholds (99 in BSDS).
        max_dist: matching radius as a fraction of the image diagonal.
        apply_thinning: thin each thresholded map to one pixel width first (the standard).
        num_workers: processes (``None`` = all CPUs, 1 = in this process). Each image's
            thresholds are split into chunks so that a few images still keep every worker busy.
        progress: show a progress bar while matching.

    Example::

        ev = BoundaryEvaluator(num_thresholds=99)
        ev.process([BoundaryPrediction(pred)], [BoundaryTarget(gts, "104010")])
        ev.evaluate()  # {"ODS": ..., "OIS": ..., "AP": ..., "R50": ...}
        ev.scores().recall  # (T,) dataset PR curve, for plotting

    Cost: T thinnings and T x A assignments per image; about 1-2 CPU-seconds per annotator at
    481x321, T = 99, on a raw map (docs/boundaries.md has measured times).
    """

    prediction_type = BoundaryPrediction
    target_type = BoundaryTarget

    def __init__(
        self,
        num_thresholds: int = 99,
        max_dist: float = 0.0075,
        apply_thinning: bool = True,
        num_workers: int | None = None,
        progress: bool = False,
    ) -> None:
        _check_max_dist(max_dist)
        if num_workers is not None and (
            isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1
        ):
            raise InputError(
                f"num_workers must be an int >= 1 (1 = in this process) or None (all CPUs), "
                f"got {num_workers!r}"
            )
        self.thresholds = boundary_thresholds(num_thresholds)
        self.max_dist = max_dist
        self.apply_thinning = apply_thinning
        self.num_workers = num_workers
        self.progress = progress
        self.reset()

    def reset(self) -> None:
        self._samples: list[tuple[str, np.ndarray, np.ndarray]] = []
        self._scores: BoundaryScores | None = None

    def process_image(self, prediction: BoundaryPrediction, target: BoundaryTarget, i: int) -> None:
        pred = as_numpy(prediction.boundary, f"predictions[{i}].boundary").astype(np.float64)
        gts = as_numpy(target.boundaries, f"targets[{i}].boundaries")
        gts = gts[None] if gts.ndim == 2 else gts
        _check_pair(pred, gts)
        name = target.image_id or str(len(self._samples))
        self._samples.append((name, pred, gts != 0))
        self._scores = None

    def scores(self) -> BoundaryScores:
        """ODS, OIS, AP, R50, the dataset PR curve and each image's best threshold."""
        if self._scores is None:
            self._scores = self._run()
        return self._scores

    def evaluate(self) -> dict[str, float]:
        """``{"ODS", "OIS", "AP", "R50"}``; R50 is left out when precision stays below 0.5."""
        s = self.scores()
        out = {"ODS": s.ods, "OIS": s.ois, "AP": s.ap}
        if not math.isnan(s.r50):
            out["R50"] = s.r50
        return out

    def _run(self) -> BoundaryScores:
        ts, samples = self.thresholds, self._samples
        workers = (os.cpu_count() or 1) if self.num_workers is None else self.num_workers
        chunks = 1 if workers == 1 else math.ceil(2 * workers / max(len(samples), 1))
        pieces = np.array_split(ts, max(1, min(len(ts), chunks)))
        jobs = [
            (pred, gts, piece, self.max_dist, self.apply_thinning)
            for _, pred, gts in samples
            for piece in pieces
        ]
        assignment_library()  # a first use compiles the solver: here once, not in every worker
        results = _parallel_map(_counts_job, jobs, workers, self.progress)
        n = len(pieces)
        merged = [_merge(results[i : i + n]) for i in range(0, len(results), n)]
        return boundary_scores(merged, [name for name, _, _ in samples])
