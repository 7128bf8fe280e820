"""Class-agnostic instance-segmentation metrics over label maps.

Label maps are ``(H, W)`` integer arrays with 0 = background and 1..K instances; predicted
instances carry one score each (``scores[k - 1]`` for label k).

* **AP at IoU t** (mAP^r style, class-agnostic): all predictions of the data set ranked by
  score, each matched greedily within its image to the unmatched ground truth of highest
  IoU >= t; precision made monotone and read at 101 recall points (COCO's protocol, so it
  equals :class:`pycocotools.cocoeval.COCOeval` with one category and no detection cap).
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
from sklearn.metrics import adjusted_rand_score

__all__ = [
    "mask_iou",
    "average_precision",
    "segmentation_covering",
    "mean_best_overlap",
    "InstanceEvaluator",
    "AP_IOUS",
]

AP_IOUS = (0.5, 0.7)
_RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def _as_numpy(x: object, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or torch.Tensor, got {type(x).__name__}")
    return x


def _check_label_map(x: object, name: str) -> np.ndarray:
    x = _as_numpy(x, name)
    if x.ndim != 2:
        raise ValueError(f"{name} must be an (H, W) label map, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"{name} must hold integer labels, got dtype {x.dtype}")
    return x


def _masks(labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``(K, H*W)`` float32 indicator rows of ``ids`` in ``labels``."""
    return (labels.reshape(1, -1) == ids.reshape(-1, 1)).astype(np.float32)


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU ``(K, G)`` between ``(K, H*W)`` and ``(G, H*W)`` 0/1 float mask rows."""
    inter = pred @ gt.T
    union = pred.sum(1)[:, None] + gt.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _match(iou: np.ndarray, order: np.ndarray, threshold: float) -> np.ndarray:
    """True positives of predictions in ``order`` under greedy COCO matching at ``threshold``."""
    taken = np.zeros(iou.shape[1], dtype=bool)
    tp = np.zeros(len(order), dtype=bool)
    for rank, k in enumerate(order):
        best, match = min(threshold, 1 - 1e-10), -1
        for g in range(iou.shape[1]):
            if taken[g] or iou[k, g] < best:
                continue
            best, match = iou[k, g], g
        if match >= 0:
            taken[match] = True
            tp[rank] = True
    return tp


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
        all_tp.append(_match(iou, order, threshold))
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


def segmentation_covering(pred: np.ndarray, gt: np.ndarray) -> float:
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


class InstanceEvaluator:
    """Accumulates images and reports AP@0.5, AP@0.7, MBO, covering and ARI.

    ``process(pred (H, W), scores (K,), gt (H, W))`` with 0 = background in both maps and
    ``scores[k - 1]`` the score of predicted instance k; ``evaluate()`` returns a dict.
    """

    def __init__(self, iou_thresholds: Sequence[float] = AP_IOUS) -> None:
        self.iou_thresholds = tuple(iou_thresholds)
        self.reset()

    def reset(self) -> None:
        self.images: list[_Image] = []

    def process(self, pred: object, scores: object, gt: object) -> None:
        pred, gt = _check_label_map(pred, "pred"), _check_label_map(gt, "gt")
        scores = _as_numpy(scores, "scores").astype(np.float64).reshape(-1)
        if pred.shape != gt.shape:
            raise ValueError(f"pred shape {pred.shape} != gt shape {gt.shape}")
        if pred.min(initial=0) < 0 or pred.max(initial=0) > len(scores):
            raise ValueError(
                f"pred labels must lie in 0..K = 0..{len(scores)} (one score per instance), "
                f"got labels {pred.min()}..{pred.max()}"
            )
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
        """``{"AP50", "AP70", "MBO", "covering", "ARI", "images", "instances", "predictions"}``."""
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
