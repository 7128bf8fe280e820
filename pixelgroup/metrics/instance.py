"""Class-agnostic instance-segmentation metrics over label maps.

Label maps are ``(H, W)`` integer arrays with 0 = background and 1..K instances; predicted
instances carry one score each (``scores[k - 1]`` for label k).

* **AP at IoU t** (mAP^r style, class-agnostic): all predictions of the data set ranked by
  score, each matched greedily within its image to the unmatched ground truth of highest
  IoU >= t (:func:`~pixelgroup.metrics.matching.greedy_match`); precision made monotone and
  read at 101 recall points (COCO's protocol, so it equals
  :class:`pycocotools.cocoeval.COCOeval` with one category and no detection cap).
* **Mean best overlap (MBO)**: mean over ground-truth instances of the best IoU of any
  predicted instance.
* **Segmentation covering**: ``(1/N) Σ_R |R| max_R' IoU(R, R')`` over the ground-truth regions R
  of each whole label map (background included) against the predicted regions R'; averaged
  over images.
* **Adjusted Rand index** of the two label maps (all pixels; scikit-learn), averaged over images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pixelgroup.errors import InputError, InputTypeError
from pixelgroup.metrics._inputs import as_numpy, as_vector
from pixelgroup.metrics.evaluator import PerImageEvaluator
from pixelgroup.metrics.matching import greedy_match, mask_iou

__all__ = [
    "InstancePrediction",
    "InstanceTarget",
    "InstanceEvaluator",
    "average_precision",
    "segmentation_covering",
    "mean_best_overlap",
    "AP_IOUS",
]

AP_IOUS = (0.5, 0.7)
_RECALL_POINTS = np.linspace(0.0, 1.0, 101)


@dataclass(frozen=True)
class InstancePrediction:
    """One image's predicted instances.

    Attributes:
        labels: ``(H, W)`` integer label map, 0 = background, 1..K instances.
        scores: ``(K,)`` confidence of instance k at ``scores[k - 1]``.
    """

    labels: np.ndarray | torch.Tensor
    scores: np.ndarray | torch.Tensor | Sequence[float]


@dataclass(frozen=True)
class InstanceTarget:
    """One image's ground truth: ``labels (H, W)`` integer map, 0 = background."""

    labels: np.ndarray | torch.Tensor


def _check_label_map(x: object, name: str) -> np.ndarray:
    x = as_numpy(x, name)
    if x.ndim != 2:
        raise InputError(f"{name} must be an (H, W) label map, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.integer):
        raise InputTypeError(f"{name} must hold integer labels, got dtype {x.dtype}")
    return x


def check_instance_record(
    prediction: InstancePrediction, target: InstanceTarget, i: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image ``i``'s record pair as arrays ``(pred (H, W), gt (H, W), scores (K,))``, checked:
    integer label maps of one shape, prediction labels in 0..K (one score per instance)."""
    pred = _check_label_map(prediction.labels, f"predictions[{i}].labels")
    gt = _check_label_map(target.labels, f"targets[{i}].labels")
    scores = as_vector(prediction.scores, f"predictions[{i}].scores", float)
    if pred.shape != gt.shape:
        raise InputError(
            f"predictions[{i}].labels shape {pred.shape} != targets[{i}].labels shape {gt.shape}"
        )
    if pred.min(initial=0) < 0 or pred.max(initial=0) > len(scores):
        raise InputError(
            f"predictions[{i}].labels must lie in 0..K = 0..{len(scores)} (one score per "
            f"instance), got labels {pred.min()}..{pred.max()}"
        )
    return pred, gt, scores


def _masks(labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``(K, H, W)`` bool masks of the label values ``ids (K,)``."""
    return labels[None] == ids.reshape(-1, 1, 1)


def average_precision(
    ious: Sequence[np.ndarray], scores: Sequence[np.ndarray], threshold: float
) -> float:
    """Class-agnostic AP at IoU ``threshold`` over images (COCO 101-point interpolation).

    Args:
        ious: per image a ``(K_i, G_i)`` IoU matrix (predictions x ground truths).
        scores: per image ``(K_i,)`` prediction scores.
        threshold: IoU needed for a true positive.

    Returns:
        AP in [0, 1]; NaN when there is no ground-truth instance at all.
    """
    all_scores, all_tp = [], []
    num_gt = 0
    for iou, score in zip(ious, scores, strict=True):
        order = np.argsort(-score, kind="mergesort")
        # COCOeval caps the threshold just below 1 so that a perfect match counts at t = 1
        all_tp.append(greedy_match(iou[order], min(threshold, 1 - 1e-10)) >= 0)
        all_scores.append(score[order])
        num_gt += iou.shape[1]
    if num_gt == 0:
        return float("nan")
    if not all_scores or sum(len(s) for s in all_scores) == 0:
        return 0.0
    order = np.argsort(-np.concatenate(all_scores), kind="mergesort")
    tp = np.concatenate(all_tp)[order]
    tp_sum, fp_sum = np.cumsum(tp), np.cumsum(~tp)
    recall = tp_sum / num_gt
    precision = tp_sum / (tp_sum + fp_sum + np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, _RECALL_POINTS, side="left")
    sampled = np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0.0)
    return float(sampled.mean())


def segmentation_covering(pred: object, gt: object) -> float:
    """Covering of the ground-truth regions of ``gt (H, W)`` by the regions of ``pred (H, W)``."""
    pred, gt = _check_label_map(pred, "pred"), _check_label_map(gt, "gt")
    gt_ids, gt_area = np.unique(gt, return_counts=True)
    iou = mask_iou(_masks(pred, np.unique(pred)), _masks(gt, gt_ids))
    return float((gt_area * iou.max(0)).sum() / gt.size)


def mean_best_overlap(iou: np.ndarray) -> float:
    """Mean over ground truths (columns of ``iou (K, G)``) of the best IoU; NaN when G = 0."""
    if iou.shape[1] == 0:
        return float("nan")
    return float(iou.max(0).mean()) if iou.shape[0] else 0.0


@dataclass
class _Image:
    iou: np.ndarray
    scores: np.ndarray
    covering: float
    ari: float


class InstanceEvaluator(PerImageEvaluator):
    """Accumulates images and reports AP@0.5, AP@0.7, MBO, covering and ARI.

    With ``ignore_label``, the pixels a target labels so (e.g. crowd regions) are background
    in both label maps.

    ``reset()``, ``process(predictions, targets)`` with one :class:`InstancePrediction` and one
    :class:`InstanceTarget` per image, ``evaluate() -> dict``.

    Example:
        >>> gt = np.array([[0, 1, 1], [0, 2, 2]])
        >>> ev = InstanceEvaluator()
        >>> ev.process([InstancePrediction(gt, np.array([0.9, 0.8]))], [InstanceTarget(gt)])
        >>> ev.evaluate()["AP50"]
        1.0
    """

    prediction_type = InstancePrediction
    target_type = InstanceTarget

    def __init__(
        self, iou_thresholds: Sequence[float] = AP_IOUS, ignore_label: int | None = None
    ) -> None:
        self.iou_thresholds = tuple(iou_thresholds)
        self.ignore_label = ignore_label
        self.reset()

    def reset(self) -> None:
        self.images: list[_Image] = []

    def process_image(self, prediction: InstancePrediction, target: InstanceTarget, i: int) -> None:
        from sklearn.metrics import adjusted_rand_score  # scikit-learn takes ~1 s to import

        pred, gt, scores = check_instance_record(prediction, target, i)
        if self.ignore_label is not None and (gt == self.ignore_label).any():
            ignore = gt == self.ignore_label
            pred, gt = np.where(ignore, 0, pred), np.where(ignore, 0, gt)
        pred_ids = np.arange(1, len(scores) + 1)
        present = np.isin(pred_ids, pred)
        gt_ids = np.unique(gt[gt > 0])
        iou = mask_iou(_masks(pred, pred_ids[present]), _masks(gt, gt_ids))
        self.images.append(
            _Image(
                iou=iou,
                scores=scores[present],
                covering=segmentation_covering(pred, gt),
                ari=float(adjusted_rand_score(gt.ravel(), pred.ravel())),
            )
        )

    def evaluate(self) -> dict[str, float]:
        """``{"AP50", "AP70", "MBO", "covering", "ARI", "images", "instances", "predictions"}``;
        NaN scores when no image (or no ground-truth instance) was processed."""
        ious = [im.iou for im in self.images]
        out = {
            f"AP{round(100 * t)}": average_precision(ious, [im.scores for im in self.images], t)
            for t in self.iou_thresholds
        }
        best = [iou.max(0) if iou.shape[0] else np.zeros(iou.shape[1]) for iou in ious]
        flat = np.concatenate(best) if best else np.zeros(0)
        out["MBO"] = float(flat.mean()) if flat.size else float("nan")
        out["covering"] = float(np.mean([im.covering for im in self.images]) if ious else "nan")
        out["ARI"] = float(np.mean([im.ari for im in self.images]) if ious else "nan")
        out["images"] = len(self.images)
        out["instances"] = int(sum(iou.shape[1] for iou in ious))
        out["predictions"] = int(sum(iou.shape[0] for iou in ious))
        return out
