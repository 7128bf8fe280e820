"""Semantic segmentation metrics: mIoU, pixel / mean accuracy, and semantic boundary F.

Region scores come from a confusion matrix. Boundary F measures how well the class map's
contours sit: the boundaries of the predicted and the ground-truth class maps (one pixel wide,
:func:`label_boundaries`) are matched one-to-one within ``max_dist`` x the image diagonal by the
BSDS matcher :func:`pixelgroup.metrics.boundary.correspond_pixels`; precision is the matched
fraction of predicted boundary pixels, recall that of ground-truth ones, pooled over images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from pixelgroup._checks import check_tensor
from pixelgroup.errors import InputError, InputTypeError
from pixelgroup.metrics._inputs import as_numpy
from pixelgroup.metrics.boundary import correspond_pixels
from pixelgroup.metrics.evaluator import PerImageEvaluator

__all__ = [
    "SemanticPrediction",
    "SemanticTarget",
    "confusion_matrix",
    "scores_from_confusion",
    "label_boundaries",
    "boundary_match_counts",
    "SemanticEvaluator",
]


@dataclass(frozen=True)
class SemanticPrediction:
    """One image's predicted class map: ``labels (H, W)`` integer class ids in ``[0, C)``."""

    labels: torch.Tensor | np.ndarray


@dataclass(frozen=True)
class SemanticTarget:
    """One image's ground truth: ``labels (H, W)`` integer class ids, ``ignore_index`` void."""

    labels: torch.Tensor | np.ndarray


def _as_label_tensor(x: object, name: str) -> torch.Tensor:
    """An ``(H, W)`` integer CPU tensor from a tensor or array."""
    labels = torch.from_numpy(as_numpy(x, name)) if not isinstance(x, torch.Tensor) else x
    if labels.dim() != 2:
        raise InputError(f"{name} must be an (H, W) class map, got shape {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise InputTypeError(f"{name} must hold integer class ids, got dtype {labels.dtype}")
    return labels.detach().cpu()


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
        raise InputError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    if num_classes < 1:
        raise InputError(f"num_classes must be >= 1, got {num_classes}")
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    keep = target != ignore_index if ignore_index is not None else torch.ones_like(target).bool()
    pred, target = pred[keep], target[keep]
    for name, t in (("pred", pred), ("target", target)):
        if t.numel() and (t.min() < 0 or t.max() >= num_classes):
            raise InputError(
                f"{name} has class ids outside [0, {num_classes}): "
                f"min {int(t.min())}, max {int(t.max())}"
            )
    flat = target * num_classes + pred
    return torch.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def _class_iou(confusion: torch.Tensor) -> torch.Tensor:
    """``(C,)`` float64 IoU per class from ``(C, C)`` counts; NaN where the union is empty."""
    conf = confusion.double()
    true_pos = conf.diagonal()
    union = conf.sum(1) + conf.sum(0) - true_pos
    return torch.where(union > 0, true_pos / union.clamp(min=1), torch.nan)


def scores_from_confusion(confusion: torch.Tensor) -> dict[str, float | list[float]]:
    """mIoU, pixel accuracy, mean class accuracy and per-class IoU from ``(C, C)`` counts.

    Classes absent from both ground truth and prediction are left out of the means (NaN IoU).
    """
    conf = confusion.double()
    true_pos = conf.diagonal()
    gt_total = conf.sum(1)
    iou = _class_iou(confusion)
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
        raise InputError(f"labels must be an (H, W) map, got shape {labels.shape}")
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
        raise InputError(
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


class SemanticEvaluator(PerImageEvaluator):
    """Accumulates a confusion matrix (and boundary counts) over images.

    ``reset()``, ``process(predictions, targets)`` with one :class:`SemanticPrediction` and one
    :class:`SemanticTarget` per image, ``evaluate() -> dict``; per-class IoU is
    :meth:`class_iou`. With ``boundary_max_dist`` (a fraction of the image diagonal),
    ``evaluate`` adds ``boundary_P``, ``boundary_R`` and ``boundary_F``.

    Example:
        >>> ev = SemanticEvaluator(num_classes=2)
        >>> labels = torch.tensor([[0, 1], [1, 1]])
        >>> ev.process([SemanticPrediction(labels)], [SemanticTarget(labels)])
        >>> ev.evaluate()["mIoU"]
        1.0
    """

    prediction_type = SemanticPrediction
    target_type = SemanticTarget

    def __init__(
        self,
        num_classes: int,
        ignore_index: int | None = 255,
        boundary_max_dist: float | None = None,
    ) -> None:
        if boundary_max_dist is not None and not boundary_max_dist > 0:
            raise InputError(f"boundary_max_dist must be > 0 or None, got {boundary_max_dist}")
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.boundary_max_dist = boundary_max_dist
        self.reset()

    def reset(self) -> None:
        self.confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.long)
        self.boundary_counts = np.zeros(4, dtype=np.int64)

    def process_image(self, prediction: SemanticPrediction, target: SemanticTarget, i: int) -> None:
        pred = _as_label_tensor(prediction.labels, f"predictions[{i}].labels")
        gt = _as_label_tensor(target.labels, f"targets[{i}].labels")
        self.confusion += confusion_matrix(pred, gt, self.num_classes, self.ignore_index)
        if self.boundary_max_dist is not None:
            self.boundary_counts += boundary_match_counts(
                pred.numpy(), gt.numpy(), self.boundary_max_dist, self.ignore_index
            )

    def class_iou(self) -> list[float]:
        """IoU of each class ``(C,)``; NaN for classes absent from ground truth and prediction."""
        return _class_iou(self.confusion).tolist()

    def evaluate(self) -> dict[str, float]:
        """``mIoU``, ``pixel_acc``, ``mean_acc`` and, with ``boundary_max_dist``, ``boundary_P``,
        ``boundary_R`` and ``boundary_F``."""
        scores = scores_from_confusion(self.confusion)
        out = {k: float(v) for k, v in scores.items() if not isinstance(v, list)}
        if self.boundary_max_dist is not None:
            out.update(_boundary_scores(self.boundary_counts))
        return out
