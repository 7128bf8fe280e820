"""Semantic segmentation metrics: mIoU, pixel / mean accuracy, and semantic boundary F.

Region scores come from a confusion matrix. Boundary F measures how well the class map's
contours sit: the boundaries of the predicted and the ground-truth class maps (one pixel wide,
:func:`label_boundaries`) are matched one-to-one within ``max_dist`` x the image diagonal by the
BSDS matcher :func:`pixelgroup.metrics.boundary.correspond_pixels`; precision is the matched
fraction of predicted boundary pixels, recall that of ground-truth ones, pooled over images.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from pixelgroup._checks import check_tensor
from pixelgroup.metrics.boundary import correspond_pixels

__all__ = [
    "confusion_matrix",
    "scores_from_confusion",
    "label_boundaries",
    "boundary_match_counts",
    "SemanticEvaluator",
]


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None = 255
) -> torch.Tensor:
    """Confusion counts ``(C, C)`` int64, rows = ground truth, columns = prediction.

    Args:
        pred: integer class map of any shape, e.g. ``(B, H, W)``, values in ``[0, C)``.
        target: same shape; pixels equal to ``ignore_index`` are skipped.
        num_classes: C.
    """
    pred, target = check_tensor(pred, "pred"), check_tensor(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    keep = target != ignore_index if ignore_index is not None else torch.ones_like(target).bool()
    pred, target = pred[keep], target[keep]
    for name, t in (("pred", pred), ("target", target)):
        if t.numel() and (t.min() < 0 or t.max() >= num_classes):
            raise ValueError(
                f"{name} has class ids outside [0, {num_classes}): "
                f"min {int(t.min())}, max {int(t.max())}"
            )
    flat = target * num_classes + pred
    return torch.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def scores_from_confusion(confusion: torch.Tensor) -> dict[str, float | list[float]]:
    """mIoU, pixel accuracy, mean class accuracy and per-class IoU from ``(C, C)`` counts.

    Classes absent from both ground truth and prediction are left out of the means (NaN IoU).
    """
    conf = confusion.double()
    true_pos = conf.diagonal()
    gt_total, pred_total = conf.sum(1), conf.sum(0)
    union = gt_total + pred_total - true_pos
    iou = torch.where(union > 0, true_pos / union.clamp(min=1), torch.nan)
    acc = torch.where(gt_total > 0, true_pos / gt_total.clamp(min=1), torch.nan)
    return {
        "mIoU": float(iou.nanmean()),
        "pixel_acc": float(true_pos.sum() / conf.sum().clamp(min=1)),
        "mean_acc": float(acc.nanmean()),
        "iou": iou.tolist(),
    }


def label_boundaries(labels: np.ndarray, ignore_index: int | None = 255) -> np.ndarray:
    """``(H, W)`` class map -> ``(H, W)`` bool, True where the right or lower neighbour differs.

    One pixel wide (each contour is marked on one side only). Pixels equal to ``ignore_index``
    first take the label of the nearest labelled pixel, so a void band (VOC's object outlines)
    gets a contour through its middle; a map with no labelled pixel has no boundary.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be an (H, W) map, got shape {labels.shape}")
    if ignore_index is not None:
        void = labels == ignore_index
        if void.all():
            return np.zeros(labels.shape, dtype=bool)
        if void.any():
            nearest = ndimage.distance_transform_edt(
                void, return_distances=False, return_indices=True
            )
            labels = labels[tuple(nearest)]
    edges = np.zeros(labels.shape, dtype=bool)
    edges[:, :-1] |= labels[:, 1:] != labels[:, :-1]
    edges[:-1, :] |= labels[1:, :] != labels[:-1, :]
    return edges


def boundary_match_counts(
    pred: torch.Tensor | np.ndarray,
    target: torch.Tensor | np.ndarray,
    max_dist: float = 0.0075,
    ignore_index: int | None = 255,
) -> np.ndarray:
    """Boundary matches of one ``(H, W)`` predicted vs ground-truth class map.

    Returns ``(4,)`` int64 ``[matched_pred, num_pred, matched_gt, num_gt]`` boundary pixels
    (:func:`label_boundaries`, matched by :func:`correspond_pixels` within ``max_dist`` x the
    diagonal; 0.0075 is the BSDS radius).
    """
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape or pred.ndim != 2:
        raise ValueError(
            f"pred and target must be (H, W) maps of one shape, got {pred.shape} and {target.shape}"
        )
    pb, gb = label_boundaries(pred, None), label_boundaries(target, ignore_index)
    matched_pred, matched_gt = correspond_pixels(pb, gb, max_dist)
    return np.array([matched_pred.sum(), pb.sum(), matched_gt.sum(), gb.sum()], dtype=np.int64)


def _boundary_scores(counts: np.ndarray) -> dict[str, float]:
    """P, R, F from pooled counts; no predicted (GT) boundary at all gives precision (recall) 1."""
    matched_pred, num_pred, matched_gt, num_gt = (float(c) for c in counts)
    precision = matched_pred / num_pred if num_pred else 1.0
    recall = matched_gt / num_gt if num_gt else 1.0
    f = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"boundary_P": precision, "boundary_R": recall, "boundary_F": f}


class SemanticEvaluator:
    """Accumulates a confusion matrix (and boundary counts) over images.

    ``reset`` / ``process`` / ``evaluate``. With ``boundary_max_dist`` (a fraction of the image
    diagonal), ``evaluate`` adds ``boundary_P``, ``boundary_R`` and ``boundary_F``.
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int | None = 255,
        boundary_max_dist: float | None = None,
    ) -> None:
        if boundary_max_dist is not None and not boundary_max_dist > 0:
            raise ValueError(f"boundary_max_dist must be > 0 or None, got {boundary_max_dist}")
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.boundary_max_dist = boundary_max_dist
        self.reset()

    def reset(self) -> None:
        self.confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.long)
        self.boundary_counts = np.zeros(4, dtype=np.int64)

    def process(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add integer maps ``pred`` and ``target`` of one shape: ``(H, W)`` or ``(B, H, W)``."""
        pred, target = pred.cpu(), target.cpu()
        conf = confusion_matrix(pred, target, self.num_classes, self.ignore_index)
        self.confusion += conf
        if self.boundary_max_dist is None:
            return
        if pred.dim() not in (2, 3):
            raise ValueError(
                f"boundary F needs (H, W) or (B, H, W) maps, got shape {tuple(pred.shape)}"
            )
        size = pred.shape[-2:]
        for p, t in zip(pred.reshape(-1, *size), target.reshape(-1, *size), strict=True):
            self.boundary_counts += boundary_match_counts(
                p.numpy(), t.numpy(), self.boundary_max_dist, self.ignore_index
            )

    def evaluate(self) -> dict[str, float | list[float]]:
        """``mIoU``, ``pixel_acc``, ``mean_acc``, ``iou`` (per class) and the boundary scores."""
        scores = scores_from_confusion(self.confusion)
        if self.boundary_max_dist is not None:
            scores.update(_boundary_scores(self.boundary_counts))
        return scores
