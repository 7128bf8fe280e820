"""Semantic instance segmentation: VOC-style mAP^r (Hariharan et al., SDS) at mask IoU thresholds.

Protocol (the one of SDS, MNC and FCIS on VOC 2012 val, docs/instance.md):

* For each class c and IoU threshold t, pool the class-c predictions of **all** images and sort
  them by decreasing score (stable: ties keep input order).
* Each prediction, in that order, takes the class-c ground truth of its image with the highest
  mask IoU (PASCAL devkit rule). It is a true positive when that IoU is >= t and that ground
  truth has not been taken yet by a better-scored prediction; otherwise a false positive. Each
  ground truth is thus matched at most once
  (:func:`~pixelgroup.metrics.matching.greedy_match` with ``best_only=True``).
* AP is the **area under the precision-recall curve** with precision made monotone
  (non-increasing in recall), as VOC 2010+ and the SDS/MNC evaluation code do; not the 11-point
  VOC 2007 variant.
* mAP^r@t is the mean AP over the classes that have at least one ground-truth instance.

Mask IoU is :func:`~pixelgroup.metrics.matching.mask_iou` (equal to pycocotools' on RLEs). Void
pixels, when given, are removed from every prediction first, so they count neither as hits nor
as false positives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pixelgroup._checks import check_count
from pixelgroup.errors import InputError
from pixelgroup.metrics._inputs import as_masks, as_numpy, as_vector
from pixelgroup.metrics.evaluator import PerImageEvaluator
from pixelgroup.metrics.matching import greedy_match, mask_iou

__all__ = [
    "VOC_CLASSES",
    "MAP_THRESHOLDS",
    "InstanceMAPPrediction",
    "InstanceMAPTarget",
    "InstanceMAPEvaluator",
    "instances_from_maps",
    "precision_recall",
    "voc_average_precision",
]

# The 20 PASCAL VOC object classes; category_id k in 1..20 is VOC_CLASSES[k - 1].
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip
MAP_THRESHOLDS = (0.5, 0.7)


@dataclass(frozen=True)
class InstanceMAPPrediction:
    """One image's class-labelled instances.

    Attributes:
        masks: ``(P, H, W)`` bool predicted masks at image resolution.
        classes: ``(P,)`` class ids in 1..num_classes.
        scores: ``(P,)`` confidences.
    """

    masks: np.ndarray | torch.Tensor
    classes: np.ndarray | torch.Tensor | Sequence[int]
    scores: np.ndarray | torch.Tensor | Sequence[float]


@dataclass(frozen=True)
class InstanceMAPTarget:
    """One image's ground truth.

    Attributes:
        masks: ``(G, H, W)`` bool instance masks.
        classes: ``(G,)`` class ids; 0 (an instance with no class) is not evaluated.
        void: optional ``(H, W)`` bool pixels to ignore.
    """

    masks: np.ndarray | torch.Tensor
    classes: np.ndarray | torch.Tensor | Sequence[int]
    void: np.ndarray | torch.Tensor | None = None


def instances_from_maps(
    instance: torch.Tensor, semantic: torch.Tensor, ignore_index: int = 255
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground-truth masks and classes from label maps.

    Args:
        instance: ``(H, W)`` int, 0 background, 1..K instances, ``ignore_index`` void.
        semantic: ``(H, W)`` int VOC class 0..20, ``ignore_index`` void.
        ignore_index: the void label of both maps.

    Returns:
        ``masks (K, H, W)`` bool (ascending instance id) and ``classes (K,)`` int64: the most
        frequent non-void, non-background class of ``semantic`` inside each mask (0 if none).
    """
    if instance.shape != semantic.shape or instance.dim() != 2:
        raise InputError(
            f"instance and semantic must be (H, W) maps of one shape, got "
            f"{tuple(instance.shape)} and {tuple(semantic.shape)}"
        )
    valid = (instance > 0) & (instance != ignore_index)
    ids = torch.unique(instance[valid])
    masks = instance[None] == ids[:, None, None]
    classes = torch.zeros(len(ids), dtype=torch.int64)
    for k, mask in enumerate(masks):
        inside = semantic[mask & (semantic > 0) & (semantic != ignore_index)]
        if inside.numel():
            classes[k] = torch.mode(inside.long().cpu()).values
    return masks, classes


def precision_recall(
    scores: np.ndarray, true_positive: np.ndarray, num_gt: int
) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall ``(P,)`` after each of P pooled predictions, by decreasing score."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    tp = np.cumsum(np.asarray(true_positive, dtype=np.float64)[order])
    fp = np.cumsum(1.0 - np.asarray(true_positive, dtype=np.float64)[order])
    return tp / np.maximum(tp + fp, np.finfo(np.float64).eps), tp / max(num_gt, 1)


def voc_average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under the monotone PR curve (VOC 2010+ ``VOCap``) from :func:`precision_recall`."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


class InstanceMAPEvaluator(PerImageEvaluator):
    """Accumulates per-image class-labelled masks; reports AP per class and mAP^r at IoUs.

    ``reset()``, ``process(predictions, targets)`` with one :class:`InstanceMAPPrediction` and
    one :class:`InstanceMAPTarget` per image, ``evaluate() -> dict``; a class's PR curve is
    :meth:`curves`.

    Args:
        num_classes: object classes, ids 1..num_classes (20 for VOC).
        thresholds: mask-IoU thresholds (default 0.5 and 0.7).
        class_names: names for the per-class keys (default :data:`VOC_CLASSES` for 20 classes,
            else ``class<k>``).

    Example:
        >>> ev = InstanceMAPEvaluator()
        >>> gt = np.zeros((1, 4, 4), bool); gt[0, :2] = True
        >>> ev.process(
        ...     [InstanceMAPPrediction(gt, [3], [0.9])], [InstanceMAPTarget(gt, [3])]
        ... )
        >>> ev.evaluate()["mAP@0.5"]
        1.0
    """

    prediction_type = InstanceMAPPrediction
    target_type = InstanceMAPTarget

    def __init__(
        self,
        num_classes: int = 20,
        thresholds: Sequence[float] = MAP_THRESHOLDS,
        class_names: Sequence[str] | None = None,
    ) -> None:
        check_count(num_classes, "num_classes")
        if not thresholds or any(not 0.0 < t <= 1.0 for t in thresholds):
            raise InputError(f"thresholds must be IoUs in (0, 1], got {list(thresholds)}")
        if class_names is None:
            class_names = (
                VOC_CLASSES
                if num_classes == 20
                else [f"class{k}" for k in range(1, num_classes + 1)]
            )
        if len(class_names) != num_classes:
            raise InputError(f"expected {num_classes} class names, got {len(class_names)}")
        self.num_classes = num_classes
        self.thresholds = tuple(float(t) for t in thresholds)
        self.class_names = tuple(class_names)
        self.reset()

    def reset(self) -> None:
        self._scores: list[list[float]] = [[] for _ in range(self.num_classes)]
        self._tp: list[list[np.ndarray]] = [[] for _ in range(self.num_classes)]
        self._num_gt = np.zeros(self.num_classes, dtype=np.int64)
        self._num_images = 0

    def _check_classes(self, classes: np.ndarray, name: str, allow_zero: bool) -> None:
        low = 0 if allow_zero else 1
        bad = classes[(classes < low) | (classes > self.num_classes)]
        if bad.size:
            raise InputError(f"{name} must lie in {low}..{self.num_classes}, got {int(bad[0])}")

    def process_image(
        self, prediction: InstanceMAPPrediction, target: InstanceMAPTarget, i: int
    ) -> None:
        p, t = f"predictions[{i}]", f"targets[{i}]"
        preds = as_masks(prediction.masks, f"{p}.masks")
        gts = as_masks(target.masks, f"{t}.masks")
        p_cls = as_vector(prediction.classes, f"{p}.classes", np.int64)
        p_score = as_vector(prediction.scores, f"{p}.scores", float)
        g_cls = as_vector(target.classes, f"{t}.classes", np.int64)
        if not len(p_cls) == len(p_score) == len(preds):
            raise InputError(
                f"{p}: expected one class and score per predicted mask ({len(preds)}), got "
                f"{len(p_cls)} classes and {len(p_score)} scores"
            )
        if len(g_cls) != len(gts):
            raise InputError(f"{t}: expected {len(gts)} classes (one per mask), got {len(g_cls)}")
        self._check_classes(p_cls, f"{p}.classes", allow_zero=False)
        self._check_classes(g_cls, f"{t}.classes", allow_zero=True)
        if preds.shape[1:] != gts.shape[1:]:
            raise InputError(
                f"{p}: predicted masks are {preds.shape[1]}x{preds.shape[2]} but the ground "
                f"truth is {gts.shape[1]}x{gts.shape[2]}; predict at the image's resolution"
            )
        if target.void is not None:
            void = as_numpy(target.void, f"{t}.void").astype(bool, copy=False)
            if void.shape != preds.shape[1:]:
                raise InputError(f"{t}: void mask is {void.shape}, masks are {preds.shape[1:]}")
            preds = preds & ~void[None]
        ious = mask_iou(preds, gts)
        for c in range(1, self.num_classes + 1):
            p_idx, g_idx = np.flatnonzero(p_cls == c), np.flatnonzero(g_cls == c)
            self._num_gt[c - 1] += len(g_idx)
            if not len(p_idx):
                continue
            p_idx = p_idx[np.argsort(-p_score[p_idx], kind="stable")]
            sub = ious[np.ix_(p_idx, g_idx)]
            self._scores[c - 1].extend(p_score[p_idx].tolist())
            self._tp[c - 1].append(
                np.stack([greedy_match(sub, t, best_only=True) >= 0 for t in self.thresholds])
            )
        self._num_images += 1

    def curves(self, class_id: int, threshold_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Precision and recall ``(P,)`` of class ``class_id`` (1-based) at one threshold."""
        c = class_id - 1
        tp = (
            np.concatenate(self._tp[c], axis=1)[threshold_index]
            if self._tp[c]
            else np.zeros(0, bool)
        )
        return precision_recall(np.asarray(self._scores[c]), tp, int(self._num_gt[c]))

    def evaluate(self) -> dict[str, float]:
        """``mAP@t``, ``AP@t/<class>`` (classes with ground truth) and counts.

        Raises ``ValueError`` when no ground-truth instance of any class was seen.
        """
        present = np.flatnonzero(self._num_gt > 0)
        if not len(present):
            raise InputError(f"no ground-truth instances with a class in {self._num_images} images")
        out: dict[str, float] = {}
        for i, t in enumerate(self.thresholds):
            aps = []
            for c in present:
                precision, recall = self.curves(int(c) + 1, i)
                ap = voc_average_precision(precision, recall) if len(recall) else 0.0
                out[f"AP@{t:g}/{self.class_names[c]}"] = ap
                aps.append(ap)
            out[f"mAP@{t:g}"] = float(np.mean(aps))
        out["num_images"] = self._num_images
        out["num_instances"] = int(self._num_gt.sum())
        out["num_predictions"] = sum(len(s) for s in self._scores)
        out["num_classes_present"] = len(present)
        return out
