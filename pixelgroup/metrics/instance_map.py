"""Semantic instance segmentation: VOC-style mAP^r (Hariharan et al., SDS) at mask IoU thresholds.

Protocol (the one of SDS, MNC and FCIS on VOC 2012 val, METHOD.md §7):

* For each class c and IoU threshold t, pool the class-c predictions of **all** images and sort
  them by decreasing score (stable: ties keep input order).
* Each prediction, in that order, takes the class-c ground truth of its image with the highest
  mask IoU (PASCAL devkit rule). It is a true positive when that IoU is >= t and that ground
  truth has not been taken yet by a better-scored prediction; otherwise a false positive. Each
  ground truth is thus matched at most once.
* AP is the **area under the precision-recall curve** with precision made monotone
  (non-increasing in recall), as VOC 2010+ and the SDS/MNC evaluation code do; not the 11-point
  VOC 2007 variant.
* mAP^r@t is the mean AP over the classes that have at least one ground-truth instance.

Mask IoU comes from :func:`pycocotools.mask.iou` on RLE masks (see
:func:`pixelgroup.metrics.proposals.mask_iou`). Void pixels, when given, are removed from every
prediction first, so they count neither as hits nor as false positives.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from pixelgroup.metrics.proposals import _as_masks, mask_iou, proposals_to_coco

__all__ = [
    "VOC_CLASSES",
    "MAP_THRESHOLDS",
    "instances_from_maps",
    "match_predictions",
    "precision_recall",
    "voc_average_precision",
    "InstanceMAPEvaluator",
    "instances_to_coco",
]

# The 20 PASCAL VOC object classes; category_id k in 1..20 is VOC_CLASSES[k - 1].
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip
MAP_THRESHOLDS = (0.5, 0.7)


def _as_array(values: object, name: str, dtype: type) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    arr: np.ndarray = np.asarray(values, dtype=dtype).reshape(-1)
    if dtype is float and not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got {arr[~np.isfinite(arr)][:3].tolist()}")
    return arr


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
        raise ValueError(
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


def instances_to_coco(
    image_id: str, masks: object, classes: object, scores: object, num_classes: int = 20
) -> list[dict]:
    """COCO-results records of one image for ``pixelgroup eval-instances``.

    Args:
        image_id: the image stem.
        masks: ``(K, H, W)`` bool masks at image resolution.
        classes: ``(K,)`` class ids in 1..num_classes (VOC order for 20).
        scores: ``(K,)`` confidences.

    Returns:
        K dicts ``{"image_id", "segmentation" (compressed RLE), "score", "category_id"}``.
    """
    ids = _as_array(classes, "classes", np.int64)
    bad = ids[(ids < 1) | (ids > num_classes)]
    if bad.size:
        raise ValueError(f"classes must lie in 1..{num_classes}, got {int(bad[0])}")
    records = proposals_to_coco(image_id, masks, scores)
    if len(records) != len(ids):
        raise ValueError(f"expected {len(records)} classes (one per mask), got {len(ids)}")
    for record, c in zip(records, ids.tolist(), strict=True):
        record["category_id"] = int(c)
    return records


def match_predictions(ious: np.ndarray, threshold: float) -> np.ndarray:
    """True-positive flags ``(P,)`` of predictions ``(P, G)`` sorted by decreasing score.

    Each prediction takes the ground truth of highest IoU (the first on ties); it is a true
    positive when that IoU >= ``threshold`` and the ground truth is still free.
    """
    ious = np.asarray(ious, dtype=np.float64)
    if ious.ndim != 2:
        raise ValueError(f"ious must have shape (P, G), got shape {ious.shape}")
    tp = np.zeros(len(ious), dtype=bool)
    if ious.shape[1] == 0:
        return tp
    taken = np.zeros(ious.shape[1], dtype=bool)
    for p, row in enumerate(ious):
        g = int(np.argmax(row))
        if row[g] >= threshold and not taken[g]:
            tp[p] = taken[g] = True
    return tp


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


class InstanceMAPEvaluator:
    """Accumulates per-image class-labelled masks; reports AP per class and mAP^r at IoUs.

    ``process`` one image at a time, then ``evaluate``.

    Args:
        num_classes: object classes, ids 1..num_classes (20 for VOC).
        thresholds: mask-IoU thresholds (default 0.5 and 0.7).
        class_names: names for the per-class keys (default :data:`VOC_CLASSES` for 20 classes,
            else ``class<k>``).

    Example:
        >>> ev = InstanceMAPEvaluator()
        >>> gt = np.zeros((1, 4, 4), bool); gt[0, :2] = True
        >>> ev.process(gt, np.array([3]), np.array([0.9]), gt, np.array([3]))
        >>> ev.evaluate()["mAP@0.5"]
        1.0
    """

    def __init__(
        self,
        num_classes: int = 20,
        thresholds: Sequence[float] = MAP_THRESHOLDS,
        class_names: Sequence[str] | None = None,
    ) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
        if not thresholds or any(not 0.0 < t <= 1.0 for t in thresholds):
            raise ValueError(f"thresholds must be IoUs in (0, 1], got {list(thresholds)}")
        if class_names is None:
            class_names = (
                VOC_CLASSES
                if num_classes == 20
                else [f"class{k}" for k in range(1, num_classes + 1)]
            )
        if len(class_names) != num_classes:
            raise ValueError(f"expected {num_classes} class names, got {len(class_names)}")
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
            raise ValueError(f"{name} must lie in {low}..{self.num_classes}, got {int(bad[0])}")

    def process(
        self,
        pred_masks: object,
        pred_classes: object,
        pred_scores: object,
        gt_masks: object,
        gt_classes: object,
        void: object = None,
    ) -> None:
        """Add one image.

        Args:
            pred_masks: ``(P, H, W)`` bool predicted masks.
            pred_classes: ``(P,)`` class ids in 1..num_classes.
            pred_scores: ``(P,)`` confidences.
            gt_masks: ``(G, H, W)`` bool ground-truth masks.
            gt_classes: ``(G,)`` class ids; 0 (an instance with no class) is not evaluated.
            void: optional ``(H, W)`` bool pixels to ignore.
        """
        preds = _as_masks(pred_masks, "pred_masks")
        gts = _as_masks(gt_masks, "gt_masks")
        p_cls = _as_array(pred_classes, "pred_classes", np.int64)
        p_score = _as_array(pred_scores, "pred_scores", float)
        g_cls = _as_array(gt_classes, "gt_classes", np.int64)
        if not len(p_cls) == len(p_score) == len(preds):
            raise ValueError(
                f"expected one class and score per predicted mask ({len(preds)}), got "
                f"{len(p_cls)} classes and {len(p_score)} scores"
            )
        if len(g_cls) != len(gts):
            raise ValueError(f"expected {len(gts)} gt_classes (one per mask), got {len(g_cls)}")
        self._check_classes(p_cls, "pred_classes", allow_zero=False)
        self._check_classes(g_cls, "gt_classes", allow_zero=True)
        if preds.shape[1:] != gts.shape[1:]:
            raise ValueError(
                f"predicted masks are {preds.shape[1]}x{preds.shape[2]} but the ground truth is "
                f"{gts.shape[1]}x{gts.shape[2]}; predict at the image's resolution"
            )
        if void is not None:
            void_np = void.detach().cpu().numpy() if isinstance(void, torch.Tensor) else void
            preds = preds & ~np.asarray(void_np, dtype=bool)[None]
        ious = mask_iou(preds, gts)
        for c in range(1, self.num_classes + 1):
            p_idx, g_idx = np.flatnonzero(p_cls == c), np.flatnonzero(g_cls == c)
            self._num_gt[c - 1] += len(g_idx)
            if not len(p_idx):
                continue
            p_idx = p_idx[np.argsort(-p_score[p_idx], kind="stable")]
            sub = ious[np.ix_(p_idx, g_idx)]
            self._scores[c - 1].extend(p_score[p_idx].tolist())
            self._tp[c - 1].append(np.stack([match_predictions(sub, t) for t in self.thresholds]))
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
            raise ValueError(f"no ground-truth instances with a class in {self._num_images} images")
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
