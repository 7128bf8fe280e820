"""Object matching of two label maps at IoU thresholds: the numbers microscopy papers report.

StarDist, Cellpose and EmbedSeg score instance segmentations of label maps by matching the
objects one-to-one and counting:

* **Overlaps** from the joint histogram of the ``(gt, pred)`` label pairs of every pixel
  (:func:`label_iou`); pixels marked ``ignore`` take no part (in neither map's areas).
* **Matching at IoU t**: a pair can match when its IoU >= t. Of all one-to-one matchings of
  such pairs the one with the most pairs is taken, ties broken by the largest sum of matched
  IoUs (:func:`scipy.optimize.linear_sum_assignment`, StarDist's ``matching`` rule). For
  t > 0.5 the pairs with IoU >= t are already one-to-one (two disjoint objects cannot both
  overlap a third by more than half); only at t = 0.5 exactly can ties need the solver.
* **Counts**: TP matched pairs, FP unmatched predictions, FN unmatched ground truths, and the
  sum of the TP pairs' IoUs.
* **Scores** from the counts (:func:`matching_scores`): accuracy TP / (TP + FP + FN) (the
  Data Science Bowl 2018 "AP" that StarDist, Cellpose and EmbedSeg report), precision
  TP / (TP + FP), recall TP / (TP + FN), F1 2TP / (2TP + FP + FN), panoptic quality
  ΣIoU / (TP + FP/2 + FN/2) and mean matched IoU ΣIoU / TP. A ratio with a zero denominator
  is NaN (StarDist writes 0 there).
* **Data sets**: counts are summed over images first and the scores computed once from the
  sums (StarDist's ``matching_dataset`` with its default ``by_image=False``), so an image
  weighs by its number of objects. The DSB 2018 leaderboard and Cellpose's ``average_precision``
  instead average per-image scores; the two agree when every image has the same counts.

:class:`MatchingEvaluator` reports these at IoU 0.5, 0.55, ..., 0.95 (:data:`MATCH_THRESHOLDS`)
with the evaluator protocol of :mod:`pixelgroup.metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from pixelgroup.errors import InputError, InputTypeError
from pixelgroup.metrics.evaluator import PerImageEvaluator
from pixelgroup.metrics.instance import InstancePrediction, InstanceTarget, check_instance_record

__all__ = [
    "MATCH_THRESHOLDS",
    "MatchCounts",
    "MatchingEvaluator",
    "label_iou",
    "match_iou",
    "match_labels",
    "matching_scores",
]

MATCH_THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
"""IoU thresholds of :class:`MatchingEvaluator`: 0.5 to 0.95 in steps of 0.05 (DSB 2018)."""


def _dense_ids(labels: np.ndarray) -> tuple[int, np.ndarray]:
    """``(K, index (N,))``: the K distinct non-zero labels of ``labels (N,)`` numbered 1..K in
    increasing order, 0 staying 0."""
    ids, index = np.unique(labels, return_inverse=True)
    if ids.size and ids[0] == 0:
        return ids.size - 1, index
    return ids.size, index + 1


def label_iou(gt: np.ndarray, pred: np.ndarray, ignore: np.ndarray | None = None) -> np.ndarray:
    """IoU ``(G, P)`` of the objects of two label maps, from their joint histogram.

    Args:
        gt: ``(H, W)`` integer ground truth, 0 background, any positive ids.
        pred: ``(H, W)`` integer prediction, 0 background, any positive ids.
        ignore: optional ``(H, W)`` bool pixels left out of both maps.

    Returns:
        ``iou[g, p]`` of the g-th and p-th distinct positive id (increasing order) that keeps
        at least one pixel outside ``ignore``.

    Example:
        >>> label_iou(np.array([[1, 1, 2, 2]]), np.array([[5, 5, 5, 0]]))
        array([[0.66666667],
               [0.25      ]])

    Cost: a sort of the H·W labels and a ``(G + 1) x (P + 1)`` histogram (np.bincount).
    """
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape or gt.ndim != 2:
        raise InputError(
            f"gt and pred must be (H, W) maps of one shape, got {gt.shape} and {pred.shape}"
        )
    for name, x in (("gt", gt), ("pred", pred)):
        if not np.issubdtype(x.dtype, np.integer):
            raise InputTypeError(f"{name} must hold integer labels, got dtype {x.dtype}")
    if ignore is not None:
        ignore = np.asarray(ignore, dtype=bool)
        if ignore.shape != gt.shape:
            raise InputError(f"ignore must have the maps' shape {gt.shape}, got {ignore.shape}")
        gt, pred = gt[~ignore], pred[~ignore]
    gt, pred = gt.ravel(), pred.ravel()
    for name, x in (("gt", gt), ("pred", pred)):
        if x.size and x.min() < 0:
            raise InputError(f"{name} labels must be >= 0 (0 = background), got {x.min()}")
    num_gt, g = _dense_ids(gt)
    num_pred, p = _dense_ids(pred)
    joint = np.bincount(g * (num_pred + 1) + p, minlength=(num_gt + 1) * (num_pred + 1))
    joint = joint.reshape(num_gt + 1, num_pred + 1)
    inter = joint[1:, 1:]
    union = joint[1:].sum(1)[:, None] + joint[:, 1:].sum(0)[None, :] - inter
    return inter / union  # every object has a pixel, so union > 0


@dataclass(frozen=True)
class MatchCounts:
    """Matching counts at each of T IoU thresholds; ``a + b`` sums two images' counts.

    Attributes:
        thresholds: the T IoU thresholds.
        tp: ``(T,)`` int matched pairs.
        iou_sum: ``(T,)`` float sum of the matched pairs' IoUs.
        num_gt: ground-truth objects G.
        num_pred: predicted objects P.
    """

    thresholds: tuple[float, ...]
    tp: np.ndarray
    iou_sum: np.ndarray
    num_gt: int
    num_pred: int

    @property
    def fp(self) -> np.ndarray:
        """``(T,)`` unmatched predictions P - TP."""
        return self.num_pred - self.tp

    @property
    def fn(self) -> np.ndarray:
        """``(T,)`` unmatched ground truths G - TP."""
        return self.num_gt - self.tp

    def __add__(self, other: MatchCounts) -> MatchCounts:
        if self.thresholds != other.thresholds:
            raise InputError(
                f"cannot add counts at thresholds {self.thresholds} and {other.thresholds}"
            )
        return MatchCounts(
            self.thresholds,
            self.tp + other.tp,
            self.iou_sum + other.iou_sum,
            self.num_gt + other.num_gt,
            self.num_pred + other.num_pred,
        )


def _check_thresholds(thresholds: Sequence[float]) -> tuple[float, ...]:
    out = tuple(float(t) for t in thresholds)
    if not out or any(not 0.0 < t <= 1.0 for t in out):
        raise InputError(f"thresholds must be IoUs in (0, 1], got {list(thresholds)}")
    return out


def match_iou(iou: np.ndarray, thresholds: Sequence[float] = MATCH_THRESHOLDS) -> MatchCounts:
    """One-to-one matching of ground truths (rows of ``iou (G, P)``) and predictions (columns)
    at each threshold: most pairs with IoU >= t, then the largest IoU sum (module docstring).

    Example:
        >>> c = match_iou(np.array([[0.5, 0.5], [0.5, 0.0]]), [0.5, 0.6])
        >>> c.tp.tolist(), c.fp.tolist(), c.fn.tolist()
        ([2, 0], [0, 2], [0, 2])

    Cost: O(G·P) per threshold, plus the assignment solver on the rows and columns of
    conflicting candidate pairs (possible only at t = 0.5 on label maps).
    """
    thresholds = _check_thresholds(thresholds)
    iou = np.asarray(iou, dtype=np.float64)
    if iou.ndim != 2:
        raise InputError(f"iou must have shape (G, P), got shape {iou.shape}")
    tp = np.zeros(len(thresholds), dtype=np.int64)
    iou_sum = np.zeros(len(thresholds))
    for i, t in enumerate(thresholds):
        rows, cols = np.nonzero(iou >= t)
        if len(np.unique(rows)) < len(rows) or len(np.unique(cols)) < len(cols):
            rows, cols = np.unique(rows), np.unique(cols)
            sub = iou[np.ix_(rows, cols)]
            ok = sub >= t
            # every candidate pair is worth 1, its IoU breaks ties (the IoU terms sum to < 1)
            cost = -ok.astype(np.float64) - np.where(ok, sub, 0.0) / (2 * min(sub.shape))
            r, c = linear_sum_assignment(cost)
            keep = ok[r, c]
            rows, cols = rows[r[keep]], cols[c[keep]]
        tp[i] = len(rows)
        iou_sum[i] = iou[rows, cols].sum()
    return MatchCounts(thresholds, tp, iou_sum, iou.shape[0], iou.shape[1])


def match_labels(
    gt: np.ndarray,
    pred: np.ndarray,
    thresholds: Sequence[float] = MATCH_THRESHOLDS,
    ignore: np.ndarray | None = None,
) -> MatchCounts:
    """:func:`match_iou` of :func:`label_iou`: the counts of one image's ``gt (H, W)`` and
    ``pred (H, W)`` label maps (0 background), ``ignore (H, W)`` pixels left out.

    Example:
        >>> gt = np.array([[1, 1, 0, 2, 2]])
        >>> c = match_labels(gt, np.array([[1, 1, 1, 0, 0]]), [0.5])
        >>> c.tp.tolist(), c.fp.tolist(), c.fn.tolist()
        ([1], [0], [1])
    """
    return match_iou(label_iou(gt, pred, ignore), thresholds)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)


def matching_scores(counts: MatchCounts) -> dict[str, np.ndarray]:
    """The scores of the module docstring, each ``(T,)`` (one per threshold): ``accuracy``,
    ``precision``, ``recall``, ``f1``, ``pq``, ``miou``; NaN where a denominator is 0.

    Example:
        >>> s = matching_scores(match_labels(np.array([[1, 1, 0, 2, 2]]),
        ...                                  np.array([[1, 1, 1, 0, 0]]), [0.5]))
        >>> tuple(round(s[k].item(), 3) for k in ("accuracy", "f1", "pq"))
        (0.5, 0.667, 0.444)
    """
    tp, fp, fn, iou_sum = counts.tp, counts.fp, counts.fn, counts.iou_sum
    return {
        "accuracy": _ratio(tp, tp + fp + fn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "pq": _ratio(iou_sum, tp + (fp + fn) / 2),
        "miou": _ratio(iou_sum, tp),
    }


def _percent(t: float) -> str:
    return f"{round(100 * t)}"


class MatchingEvaluator(PerImageEvaluator):
    """Accumulates per-image matching counts; reports the data set's scores (counts summed
    over images first, see the module docstring).

    ``reset()``, ``process(predictions, targets)`` with one :class:`InstancePrediction` (scores
    unused: every predicted object counts) and one :class:`InstanceTarget` per image, whose
    pixels equal to ``ignore_label`` are left out of both maps; ``evaluate() -> dict``.

    Keys, ``NN`` the threshold in percent: ``accNN`` at every threshold, ``accAA_BB`` their
    mean over all thresholds (the DSB 2018 score, from summed counts), and at each threshold of
    ``detail`` ``precisionNN``, ``recallNN``, ``f1_NN``, ``pqNN``, ``miouNN`` (mean matched
    IoU), ``tpNN``, ``fpNN``, ``fnNN``. Scores are NaN where undefined (no object at all).

    Example:
        >>> gt = np.array([[0, 1, 1], [0, 2, 2]])
        >>> ev = MatchingEvaluator()
        >>> ev.process([InstancePrediction(gt, [0.9, 0.8])], [InstanceTarget(gt)])
        >>> ev.evaluate()["acc50"], ev.evaluate()["tp50"]
        (1.0, 2)
    """

    prediction_type = InstancePrediction
    target_type = InstanceTarget

    def __init__(
        self,
        thresholds: Sequence[float] = MATCH_THRESHOLDS,
        detail: Sequence[float] = (0.5, 0.75),
        ignore_label: int | None = -1,
    ) -> None:
        self.thresholds = _check_thresholds(thresholds)
        missing = [t for t in detail if float(t) not in self.thresholds]
        if missing:
            raise InputError(f"detail thresholds {missing} are not among {list(self.thresholds)}")
        if ignore_label is not None and ignore_label > 0:
            raise InputError(f"ignore_label must be <= 0 (1.. are objects), got {ignore_label}")
        self.detail = tuple(float(t) for t in detail)
        self.ignore_label = ignore_label
        self.reset()

    def reset(self) -> None:
        zeros = np.zeros(len(self.thresholds))
        self.counts = MatchCounts(self.thresholds, zeros.astype(np.int64), zeros, 0, 0)
        self.images = 0

    def process_image(self, prediction: InstancePrediction, target: InstanceTarget, i: int) -> None:
        pred, gt, _ = check_instance_record(prediction, target, i)
        ignore = None if self.ignore_label is None else gt == self.ignore_label
        if ignore is not None and not ignore.any():
            ignore = None
        rest = gt if ignore is None else gt[~ignore]
        if rest.size and rest.min() < 0:
            allowed = "" if self.ignore_label is None else f" or {self.ignore_label} (ignored)"
            raise InputError(f"targets[{i}].labels must be >= 0{allowed}, got {rest.min()}")
        self.counts = self.counts + match_labels(gt, pred, self.thresholds, ignore)
        self.images += 1

    def evaluate(self) -> dict[str, float]:
        """The keys of the class docstring (floats; counts as ints)."""
        scores = matching_scores(self.counts)
        out: dict[str, float] = {
            f"acc{_percent(t)}": float(a)
            for t, a in zip(self.thresholds, scores["accuracy"], strict=True)
        }
        if len(self.thresholds) > 1:
            first, last = _percent(self.thresholds[0]), _percent(self.thresholds[-1])
            out[f"acc{first}_{last}"] = float(np.mean(scores["accuracy"]))
        for t in self.detail:
            i, p = self.thresholds.index(t), _percent(t)
            for name in ("precision", "recall", "f1", "pq", "miou"):
                key = "f1_" if name == "f1" else name  # f1_50, not f150
                out[f"{key}{p}"] = float(scores[name][i])
            out[f"tp{p}"] = int(self.counts.tp[i])
            out[f"fp{p}"] = int(self.counts.fp[i])
            out[f"fn{p}"] = int(self.counts.fn[i])
        return out
