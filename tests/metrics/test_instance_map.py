"""VOC mAP^r: a hand-computed case, agreement with pycocotools' COCOeval, and input errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from pixelgroup.metrics.instance_map import (
    InstanceMAPEvaluator,
    InstanceMAPPrediction,
    InstanceMAPTarget,
    instances_from_maps,
    voc_average_precision,
)
from pixelgroup.metrics.matching import greedy_match


def _process(ev, pred_masks, pred_classes, pred_scores, gt_masks, gt_classes, void=None):
    ev.process(
        [InstanceMAPPrediction(pred_masks, pred_classes, pred_scores)],
        [InstanceMAPTarget(gt_masks, gt_classes, void)],
    )


def _box(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_hand_computed_two_images():
    # class 1: one GT per image. Image A: a 0.9 hit (IoU 1) and a 0.8 duplicate (FP: GT taken).
    # Image B: a 0.7 prediction with IoU 0.6 (TP at 0.5, FP at 0.7).
    gt_a, gt_b = _box(10, 10, 0, 5, 0, 10), _box(10, 10, 0, 5, 0, 10)
    pred_b = _box(10, 10, 0, 3, 0, 10)  # IoU 30 / 50 = 0.6
    ev = InstanceMAPEvaluator()
    ev.process(
        [
            InstanceMAPPrediction(np.stack([gt_a, gt_a]), [1, 1], [0.9, 0.8]),
            InstanceMAPPrediction(pred_b[None], [1], [0.7]),
        ],
        [InstanceMAPTarget(gt_a[None], [1]), InstanceMAPTarget(gt_b[None], [1])],
    )
    out = ev.evaluate()
    # @0.5: P = 1, 1/2, 2/3 at R = 1/2, 1/2, 1 -> AP = 0.5 * 1 + 0.5 * 2/3
    assert out["mAP@0.5"] == pytest.approx(0.5 + 1 / 3)
    # @0.7: only the first is a hit: R = 1/2 at P = 1 -> AP = 0.5
    assert out["mAP@0.7"] == pytest.approx(0.5)
    assert out["AP@0.5/aeroplane"] == out["mAP@0.5"]
    assert out["num_images"] == 2 and out["num_instances"] == 2 and out["num_predictions"] == 3


def test_mean_over_present_classes_and_missed_class():
    gt = np.stack([_box(8, 8, 0, 4, 0, 8), _box(8, 8, 4, 8, 0, 8)])
    ev = InstanceMAPEvaluator()
    # class 2 found, class 15 (person) never predicted; predictions of class 7 have no GT.
    _process(ev, np.stack([gt[0], gt[1]]), [2, 7], [0.5, 0.9], gt, [2, 15])
    out = ev.evaluate()
    assert out["AP@0.5/bicycle"] == 1.0 and out["AP@0.5/person"] == 0.0
    assert "AP@0.5/car" not in out and out["num_classes_present"] == 2
    assert out["mAP@0.5"] == 0.5


def test_void_pixels_removed_from_predictions():
    gt = _box(8, 8, 0, 4, 0, 4)
    pred = _box(8, 8, 0, 4, 0, 8)  # IoU 0.5 -> 1.0 once the right half is void
    void = _box(8, 8, 0, 8, 4, 8)
    ev = InstanceMAPEvaluator(thresholds=(0.7,))
    _process(ev, pred[None], [1], [1.0], gt[None], [1], void=torch.from_numpy(void))
    assert ev.evaluate()["mAP@0.7"] == 1.0


def test_voc_ap_is_area_not_11_point():
    # one GT found at rank 1 of 1 with recall 1/3: area 1/3, 11-point would give 4/11.
    assert voc_average_precision(np.array([1.0]), np.array([1 / 3])) == pytest.approx(1 / 3)


def test_match_takes_best_gt_each_once():
    """The VOC rule: a prediction whose best GT is taken is a false positive, even when another
    GT above the threshold is free (COCO would take that one)."""
    ious = np.array([[0.6, 0.9], [0.1, 0.8], [0.7, 0.2]])
    assert (greedy_match(ious, 0.5, best_only=True) >= 0).tolist() == [True, False, True]
    gt = np.stack([_box(10, 10, 0, 10, 0, 6), _box(10, 10, 0, 10, 2, 10)])  # overlapping GTs
    pred = np.stack([gt[0], _box(10, 10, 0, 10, 0, 7)])  # the second: IoU .86 / .50
    ev = InstanceMAPEvaluator(thresholds=(0.5,))
    _process(ev, pred, [1, 1], [0.9, 0.8], gt, [1, 1])
    assert ev.evaluate()["mAP@0.5"] == pytest.approx(0.5)  # COCO's rule would give 1


def test_instances_from_maps_majority_class():
    inst = torch.tensor([[1, 1, 1, 0], [2, 2, 255, 0]])
    sem = torch.tensor([[3, 3, 5, 0], [0, 0, 255, 0]])
    masks, classes = instances_from_maps(inst, sem)
    assert masks.shape == (2, 2, 4) and classes.tolist() == [3, 0]


def _coco_eval(images, num_classes):
    """COCOeval at IoU 0.5, all areas, 100 detections per image: precision (101, C), recall."""
    h, w = images[0][0].shape[1:]
    gt = {"images": [], "annotations": [], "categories": []}
    gt["categories"] = [{"id": c} for c in range(1, num_classes + 1)]
    dets = []
    for i, (gm, gc, pm, pc, ps) in enumerate(images):
        gt["images"].append({"id": i, "height": h, "width": w})
        for m, c in zip(gm, gc, strict=True):
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            gt["annotations"].append(
                {
                    "id": len(gt["annotations"]) + 1,
                    "image_id": i,
                    "category_id": int(c),
                    "segmentation": rle,
                    "area": float(m.sum()),
                    "iscrowd": 0,
                    "bbox": list(mask_utils.toBbox(rle)),
                }
            )
        for m, c, s in zip(pm, pc, ps, strict=True):
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            dets.append({"image_id": i, "category_id": int(c), "segmentation": rle, "score": s})
    coco = COCO()
    coco.dataset = gt
    coco.createIndex()
    ev = COCOeval(coco, coco.loadRes(dets), "segm")
    ev.params.iouThrs = np.array([0.5])
    ev.params.maxDets = [100]
    ev.params.areaRng = [[0, 1e10]]
    ev.params.areaRngLbl = ["all"]
    ev.evaluate()
    ev.accumulate()
    return ev.eval["precision"][0, :, :, 0, 0], ev.eval["recall"][0, :, 0, 0], ev.params.recThrs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_cocoeval_at_iou_half(seed):
    """Disjoint GT masks (an instance map) make VOC's and COCO's matching coincide at IoU 0.5;
    then COCO's 101-point precision and its recall must follow from our PR curve."""
    rng = np.random.default_rng(seed)
    h = w = 24
    num_classes = 3
    images = []
    for _ in range(4):
        labels = np.zeros((h, w), np.int64)
        for k in range(1, 5):  # later rectangles overwrite: disjoint instance masks
            y, x = rng.integers(0, h - 6, 2)
            labels[y : y + rng.integers(4, 10), x : x + rng.integers(4, 10)] = k
        ids = [k for k in range(1, 5) if (labels == k).any()]
        gm = np.stack([labels == k for k in ids])
        gc = rng.integers(1, num_classes + 1, len(ids))
        pm, pc = [], []
        for m, c in zip(gm, gc, strict=True):
            for _ in range(2):  # jittered copies, some with the wrong class
                pm.append(np.roll(m, tuple(rng.integers(-2, 3, 2)), axis=(0, 1)))
                pc.append(c if rng.random() < 0.7 else rng.integers(1, num_classes + 1))
        ps = rng.permutation(len(pm)) / len(pm) + rng.random() * 1e-3  # distinct scores
        images.append((gm, gc, np.stack(pm), np.asarray(pc), ps.tolist()))

    ev = InstanceMAPEvaluator(num_classes=num_classes, thresholds=(0.5,))
    ev.process(
        [InstanceMAPPrediction(pm, pc, ps) for _, _, pm, pc, ps in images],
        [InstanceMAPTarget(gm, gc) for gm, gc, _, _, _ in images],
    )
    assert 0.0 < ev.evaluate()["mAP@0.5"] < 1.0  # a mix of hits and misses
    coco_precision, coco_recall, rec_thrs = _coco_eval(images, num_classes)
    for c in range(1, num_classes + 1):
        precision, recall = ev.curves(c)
        assert recall[-1] == pytest.approx(coco_recall[c - 1])
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        idx = np.searchsorted(recall, rec_thrs, side="left")
        ours = np.where(idx < len(recall), envelope[np.minimum(idx, len(recall) - 1)], 0.0)
        np.testing.assert_allclose(ours, coco_precision[:, c - 1], atol=1e-12)


def test_errors():
    gt = _box(4, 4, 0, 2, 0, 4)[None]
    ev = InstanceMAPEvaluator()
    with pytest.raises(ValueError, match=r"predictions\[0\].classes must lie in 1\.\.20, got 21"):
        _process(ev, gt, [21], [1.0], gt, [1])
    with pytest.raises(ValueError, match=r"predictions\[0\].classes must lie in 1\.\.20, got 0"):
        _process(ev, gt, [0], [1.0], gt, [1])
    with pytest.raises(ValueError, match=r"targets\[0\].classes must lie in 0..20, got -1"):
        _process(ev, gt, [1], [1.0], gt, [-1])
    with pytest.raises(ValueError, match="one class and score per predicted mask"):
        _process(ev, gt, [1, 2], [1.0], gt, [1])
    with pytest.raises(ValueError, match=r"targets\[0\]: expected 1 classes"):
        _process(ev, gt, [1], [1.0], gt, [1, 2])
    with pytest.raises(ValueError, match="predictions.0..scores must be finite"):
        _process(ev, gt, [1], [float("nan")], gt, [1])
    with pytest.raises(ValueError, match="predicted masks are 4x4 but the ground truth is 5x5"):
        _process(ev, gt, [1], [1.0], np.zeros((1, 5, 5), bool), [1])
    with pytest.raises(ValueError, match=r"targets\[0\]: void mask is \(3, 3\)"):
        _process(ev, gt, [1], [1.0], gt, [1], void=np.zeros((3, 3), bool))
    with pytest.raises(TypeError, match=r"predictions\[0\] must be a InstanceMAPPrediction"):
        ev.process([gt], [InstanceMAPTarget(gt, [1])])
    with pytest.raises(ValueError, match="no ground-truth instances with a class"):
        ev.evaluate()
    with pytest.raises(ValueError, match="num_classes must be an int >= 1"):
        InstanceMAPEvaluator(num_classes=0)
    with pytest.raises(ValueError, match=r"thresholds must be IoUs in \(0, 1\]"):
        InstanceMAPEvaluator(thresholds=(1.5,))
    with pytest.raises(ValueError, match="expected 2 class names"):
        InstanceMAPEvaluator(num_classes=2, class_names=["a"])
    with pytest.raises(ValueError, match="must be \\(H, W\\) maps of one shape"):
        instances_from_maps(torch.zeros(2, 2), torch.zeros(2, 3))
