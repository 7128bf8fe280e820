import math

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from pixelgroup.metrics import (
    InstanceEvaluator,
    InstancePrediction,
    InstanceTarget,
    average_precision,
    segmentation_covering,
)


def _process(ev, pred, scores, gt):
    ev.process([InstancePrediction(pred, scores)], [InstanceTarget(gt)])


def test_ap_hand_computed():
    # image 1: two gts; preds (score .9 matches gt0, .8 misses, .7 matches gt1)
    iou1 = np.array([[0.9, 0.0], [0.1, 0.2], [0.0, 0.6]])
    s1 = np.array([0.9, 0.8, 0.7])
    # ranking TP, FP, TP over 2 gts: precision 1, 1/2, 2/3 -> monotone 1, 2/3, 2/3
    # recall points <= 0.5 read precision 1 (51 points), > 0.5 read 2/3 (50 points)
    expected = (51 * 1.0 + 50 * 2 / 3) / 101
    assert average_precision([iou1], [s1], 0.5) == pytest.approx(expected)
    # at 0.7 only the first is a TP; recall tops out at 0.5
    assert average_precision([iou1], [s1], 0.7) == pytest.approx(51 / 101)
    assert average_precision([np.zeros((0, 2))], [np.zeros(0)], 0.5) == 0.0
    assert math.isnan(average_precision([np.zeros((1, 0))], [np.ones(1)], 0.5))


def test_greedy_matching_one_gt_per_prediction():
    # two preds overlap the same gt; only the higher-scored one counts
    iou = np.array([[0.8], [0.9]])
    assert average_precision([iou], [np.array([0.9, 0.5])], 0.5) == pytest.approx(1.0)
    # perfect precision then a false positive: AP stays 1 (recall reached before the FP)


def test_covering_hand_computed():
    gt = np.array([[0, 0, 1, 1]])
    pred = np.array([[0, 0, 0, 1]])
    # gt region 0 (2 px): best IoU 2/3; region 1 (2 px): best IoU 1/2
    assert segmentation_covering(pred, gt) == pytest.approx((2 * 2 / 3 + 2 * 0.5) / 4)
    assert segmentation_covering(gt, gt) == 1.0


def test_evaluator_perfect_prediction_with_permuted_ids():
    gt = np.zeros((8, 8), np.int64)
    gt[:3, :3], gt[5:, 4:] = 1, 2
    pred = np.where(gt == 1, 2, np.where(gt == 2, 1, 0))
    ev = InstanceEvaluator()
    _process(ev, torch.from_numpy(pred), torch.tensor([0.5, 0.9]), torch.from_numpy(gt))
    out = ev.evaluate()
    assert out["AP50"] == out["AP70"] == out["MBO"] == out["covering"] == out["ARI"] == 1.0
    assert (out["images"], out["instances"], out["predictions"]) == (1, 2, 2)
    ev.reset()
    assert ev.evaluate()["images"] == 0


def test_evaluator_merged_instances():
    gt = np.zeros((4, 8), np.int64)
    gt[:, :4], gt[:, 4:] = 1, 2
    pred = np.ones((4, 8), np.int64)  # both instances as one: IoU 0.5 with each
    ev = InstanceEvaluator()
    _process(ev, pred, np.array([1.0]), gt)
    out = ev.evaluate()
    assert out["MBO"] == pytest.approx(0.5)
    assert out["AP70"] == 0.0
    assert out["ARI"] == pytest.approx(0.0)


def _coco_ap(preds, scores, gts, threshold):
    images, annotations, detections = [], [], []
    for i, (pred, score, gt) in enumerate(zip(preds, scores, gts, strict=True), start=1):
        images.append({"id": i, "height": gt.shape[0], "width": gt.shape[1]})
        for k in np.unique(gt[gt > 0]):
            rle = mask_utils.encode(np.asfortranarray((gt == k).astype(np.uint8)))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": 1,
                    "segmentation": rle,
                    "area": float(mask_utils.area(rle)),
                    "iscrowd": 0,
                    "bbox": list(mask_utils.toBbox(rle)),
                }
            )
        for k in range(1, len(score) + 1):
            rle = mask_utils.encode(np.asfortranarray((pred == k).astype(np.uint8)))
            detections.append(
                {"image_id": i, "category_id": 1, "segmentation": rle, "score": float(score[k - 1])}
            )
    gt_api = COCO()
    gt_api.dataset = {"images": images, "annotations": annotations, "categories": [{"id": 1}]}
    gt_api.createIndex()
    coco_eval = COCOeval(gt_api, gt_api.loadRes(detections), "segm")
    coco_eval.params.iouThrs = np.array([threshold])
    coco_eval.params.maxDets = [1000]
    coco_eval.params.areaRng = [[0, 1e10]]
    coco_eval.params.areaRngLbl = ["all"]
    coco_eval.evaluate()
    coco_eval.accumulate()
    precision = coco_eval.eval["precision"][0, :, 0, 0, 0]
    return float(precision.mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_pycocotools(seed, capsys):
    rng = np.random.default_rng(seed)
    preds, scores, gts = [], [], []
    for _ in range(4):
        gt = np.zeros((24, 24), np.int64)
        for k in range(1, rng.integers(2, 6)):
            r, c = rng.integers(0, 18, 2)
            gt[r : r + 7, c : c + 7] = k
        pred = gt.copy()
        noise = rng.random(gt.shape) < 0.25
        pred[noise] = rng.integers(0, gt.max() + 1, noise.sum())
        for k in np.unique(pred[pred > 0]):  # some shifted or extra predictions
            if rng.random() < 0.3:
                pred = np.where(pred == k, 0, pred)
        ids = np.unique(pred[pred > 0])
        pred = np.searchsorted(np.concatenate([[0], ids]), pred)  # consecutive 1..K
        preds.append(pred)
        scores.append(rng.random(len(ids)))
        gts.append(gt)
    ev = InstanceEvaluator()
    ev.process(
        [InstancePrediction(p, s) for p, s in zip(preds, scores, strict=True)],
        [InstanceTarget(g) for g in gts],
    )
    out = ev.evaluate()
    for t in (0.5, 0.7):
        expected = _coco_ap(preds, scores, gts, t)
        assert out[f"AP{round(100 * t)}"] == pytest.approx(expected, abs=1e-12)
    capsys.readouterr()  # COCOeval prints progress


def test_an_iou_of_exactly_the_threshold_counts():
    """An IoU of exactly 7/10 is a true positive at 0.7, as in COCOeval."""
    gt = np.zeros((1, 10), np.int64)
    gt[0, :7] = 1
    pred = np.ones((1, 10), np.int64)
    ev = InstanceEvaluator()
    _process(ev, pred, np.array([1.0]), gt)
    assert ev.evaluate()["AP70"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "args, error, match",
    [
        (
            (np.zeros((2, 2, 2), int), np.zeros(0), np.zeros((2, 2), int)),
            ValueError,
            r"predictions\[0\].labels must be an \(H, W\) label map",
        ),
        (
            (np.zeros((2, 2)), np.zeros(0), np.zeros((2, 2), int)),
            TypeError,
            "predictions.0..labels must hold integer labels",
        ),
        (
            (np.zeros((2, 2), int), np.zeros(0), np.zeros((3, 2), int)),
            ValueError,
            r"predictions\[0\].labels shape \(2, 2\) != targets\[0\].labels shape \(3, 2\)",
        ),
        ((np.full((2, 2), 2), np.zeros(1), np.zeros((2, 2), int)), ValueError, "0..K = 0..1"),
        (
            (np.zeros((2, 2), int), ["a"], np.zeros((2, 2), int)),
            TypeError,
            "predictions.0..scores must be a sequence of numbers",
        ),
        (
            (np.zeros((2, 2), int), [0.1], [[0]]),
            TypeError,
            r"targets\[0\].labels must be a numpy array or torch.Tensor",
        ),
    ],
)
def test_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        _process(InstanceEvaluator(), *args)


def test_records_must_pair_up():
    gt = np.zeros((2, 2), int)
    ev = InstanceEvaluator()
    with pytest.raises(ValueError, match="got 2 predictions and 1 targets"):
        ev.process([InstancePrediction(gt, [])] * 2, [InstanceTarget(gt)])
    with pytest.raises(TypeError, match=r"targets\[0\] must be a InstanceTarget, got ndarray"):
        ev.process([InstancePrediction(gt, [])], [gt])
    with pytest.raises(TypeError, match="predictions must be a sequence"):
        ev.process(InstancePrediction(gt, []), [InstanceTarget(gt)])
    assert ev.evaluate()["images"] == 0  # nothing was added
