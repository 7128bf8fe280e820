"""COCO mask AP / AR of class-agnostic instances, computed by pycocotools' own ``COCOeval``.

The numbers every instance-segmentation paper reports: :class:`CocoEvaluator` turns label maps
into an in-memory COCO ground truth and detections (one category, compressed RLE masks) and
runs ``pycocotools.cocoeval.COCOeval(iouType="segm")`` unchanged: AP averaged over IoU
0.50:0.05:0.95 with 101-point interpolation, at most 100 detections per image (ranked by
score), AP by object size (COCO's absolute areas: small < 32², large > 96² pixels) and AR at
1, 10, 100 detections. Target pixels equal to ``ignore_label`` form one ``iscrowd`` region per
image: a detection lying mostly inside it (intersection over the detection's area >= the IoU
threshold) counts neither as a true nor as a false positive.

Unlike :class:`~pixelgroup.metrics.InstanceEvaluator`'s AP50 (no detection cap, no crowd), a
value here is what ``COCOeval`` prints for the same masks.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from pixelgroup.errors import InputError
from pixelgroup.metrics.evaluator import PerImageEvaluator
from pixelgroup.metrics.instance import (
    InstancePrediction,
    InstanceTarget,
    check_instance_record,
)

__all__ = ["CocoEvaluator", "COCO_KEYS"]

COCO_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")
"""The keys of :meth:`CocoEvaluator.evaluate`, in the order of ``COCOeval.stats[:9]``."""


@dataclass
class _Image:
    size: tuple[int, int]
    gt: list[dict[str, Any]]
    crowd: dict[str, Any] | None
    pred: list[dict[str, Any]]
    scores: np.ndarray


def _encode(masks: np.ndarray) -> list[dict[str, Any]]:
    """``(K, H, W)`` bool -> K compressed RLEs (pycocotools' column-major format)."""
    if len(masks) == 0:
        return []
    return list(mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8))))


class CocoEvaluator(PerImageEvaluator):
    """Accumulates images and reports COCO mask AP / AR (see the module docstring).

    ``reset()``, ``process(predictions, targets)`` with one
    :class:`~pixelgroup.metrics.InstancePrediction` (``labels (H, W)``, 0 = background, and
    ``scores (K,)``, instance k's at ``scores[k - 1]``) and one
    :class:`~pixelgroup.metrics.InstanceTarget` (``labels (H, W)``, 0 = background, 1..G
    instances, ``ignore_label`` = crowd) per image, ``evaluate() -> dict``.

    Args:
        ignore_label: target label of crowd / ignored pixels (``None``: none).
        max_dets: the detection caps of the AR keys (the last also caps AP), COCO's
            ``(1, 10, 100)``.

    Cost: one RLE encoding per instance (O(H·W) each) in ``process``; ``evaluate`` is
    ``COCOeval`` itself, O(detections x ground truths) RLE IoUs per image.

    Example:
        >>> gt = np.array([[0, 1, 1], [0, 2, 2]])
        >>> ev = CocoEvaluator()
        >>> ev.process([InstancePrediction(gt, [0.9, 0.8])], [InstanceTarget(gt)])
        >>> ev.evaluate()["AP"]
        1.0
    """

    prediction_type = InstancePrediction
    target_type = InstanceTarget

    def __init__(
        self, ignore_label: int | None = -1, max_dets: tuple[int, int, int] = (1, 10, 100)
    ) -> None:
        if len(max_dets) != 3 or any(int(m) < 1 for m in max_dets):
            raise InputError(f"max_dets must be three positive caps, got {max_dets!r}")
        if ignore_label is not None and ignore_label > 0:
            raise InputError(f"ignore_label must be <= 0 (1.. are instances), got {ignore_label}")
        self.ignore_label = ignore_label
        self.max_dets = tuple(int(m) for m in max_dets)
        self.reset()

    def reset(self) -> None:
        self.images: list[_Image] = []

    def process_image(self, prediction: InstancePrediction, target: InstanceTarget, i: int) -> None:
        pred, gt, scores = check_instance_record(prediction, target, i)
        pred_ids = np.array([k for k in range(1, len(scores) + 1) if (pred == k).any()])
        gt_ids = np.unique(gt[gt > 0])
        crowd = None
        if self.ignore_label is not None and (gt == self.ignore_label).any():
            crowd = _encode((gt == self.ignore_label)[None])[0]
        self.images.append(
            _Image(
                size=(int(gt.shape[0]), int(gt.shape[1])),
                gt=_encode(gt[None] == gt_ids.reshape(-1, 1, 1)),
                crowd=crowd,
                pred=_encode(pred[None] == pred_ids.reshape(-1, 1, 1)),
                scores=scores[pred_ids - 1] if len(pred_ids) else np.zeros(0),
            )
        )

    def _datasets(self) -> tuple[dict[str, Any], dict[str, Any]]:
        images = [
            {"id": i + 1, "height": im.size[0], "width": im.size[1]}
            for i, im in enumerate(self.images)
        ]
        gts: list[dict[str, Any]] = []
        dts: list[dict[str, Any]] = []
        for i, im in enumerate(self.images):
            crowd = [] if im.crowd is None else [im.crowd]
            for rle, iscrowd in [(r, 0) for r in im.gt] + [(r, 1) for r in crowd]:
                gts.append(_annotation(len(gts) + 1, i + 1, rle) | {"iscrowd": iscrowd})
            for rle, score in zip(im.pred, im.scores.tolist(), strict=True):
                dts.append(_annotation(len(dts) + 1, i + 1, rle) | {"score": score})
        categories = [{"id": 1, "name": "object"}]
        return (
            {"images": images, "annotations": gts, "categories": categories},
            {"images": images, "annotations": dts, "categories": categories},
        )

    def evaluate(self) -> dict[str, float]:
        """``{"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100"}`` in [0, 1]
        (:data:`COCO_KEYS`; ``AR100`` names the last of ``max_dets``); NaN where COCOeval
        has nothing to average (no image, no ground-truth instance, none of that size)."""
        keys = [*COCO_KEYS[:6], *(f"AR{m}" for m in self.max_dets)]
        if not self.images:
            return dict.fromkeys(keys, float("nan"))
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        gt_data, dt_data = self._datasets()
        with contextlib.redirect_stdout(io.StringIO()):  # COCO and COCOeval print progress
            gt, dt = COCO(), COCO()
            gt.dataset, dt.dataset = gt_data, dt_data
            gt.createIndex()
            dt.createIndex()
            ev = COCOeval(gt, dt, iouType="segm")
            ev.params.maxDets = list(self.max_dets)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        stats = [float(v) for v in ev.stats[:9]]
        return {k: (v if v >= 0 else float("nan")) for k, v in zip(keys, stats, strict=True)}


def _annotation(ann_id: int, image_id: int, rle: dict[str, Any]) -> dict[str, Any]:
    """A COCO annotation of one RLE (ids from 1: COCOeval reads id 0 as "unmatched")."""
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "segmentation": rle,
        "area": float(mask_utils.area(rle)),
        "bbox": [float(v) for v in mask_utils.toBbox(rle)],
    }
