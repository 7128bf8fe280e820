"""COCO mask AP / AR: hand-checked cases, crowd regions, and agreement with InstanceEvaluator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pixelgroup.metrics import CocoEvaluator, InstanceEvaluator, InstancePrediction, InstanceTarget


def _two_boxes() -> np.ndarray:
    gt = np.zeros((24, 24), np.int64)
    gt[2:12, 2:12], gt[14:22, 12:22] = 1, 2
    return gt


def _score(pred, scores, gt, **kw) -> dict[str, float]:
    ev = CocoEvaluator(**kw)
    ev.process([InstancePrediction(pred, scores)], [InstanceTarget(gt)])
    return ev.evaluate()


def test_perfect_prediction_scores_one():
    gt = _two_boxes()
    out = _score(torch.from_numpy(gt), torch.tensor([0.9, 0.4]), torch.from_numpy(gt))
    for key in ("AP", "AP50", "AP75", "APs", "AR10", "AR100"):
        assert out[key] == 1.0
    assert out["AR1"] == 0.5  # one detection per image finds one of the two
    assert math.isnan(out["APm"]) and math.isnan(out["APl"])  # no object of that size


def test_one_missing_instance():
    """Precision 1 up to recall 0.5, then nothing: 51 of the 101 recall points."""
    gt = _two_boxes()
    pred = np.where(gt == 2, 0, gt)
    out = _score(pred, [0.7], gt)
    assert out["AP"] == pytest.approx(51 / 101) and out["AP50"] == pytest.approx(51 / 101)
    assert out["AR100"] == 0.5


def test_iou_thresholds():
    """A 8 x 9 prediction inside a 10 x 10 instance: IoU 0.72, a hit at 0.50..0.70 only."""
    gt = np.zeros((16, 16), np.int64)
    gt[3:13, 3:13] = 1
    pred = np.zeros_like(gt)
    pred[3:11, 3:12] = 1
    out = _score(pred, [0.5], gt)
    assert out["AP50"] == pytest.approx(1.0) and out["AP75"] == 0.0
    assert out["AP"] == pytest.approx(0.5)


def test_detection_in_a_crowd_region_is_ignored():
    gt = _two_boxes()
    gt[0:6, 16:24] = -1  # crowd
    pred = gt.clip(min=0)
    pred[1:5, 17:23] = 3  # a detection inside the crowd, scored highest
    assert _score(pred, [0.5, 0.5, 0.9], gt)["AP"] == 1.0
    assert _score(pred, [0.5, 0.5, 0.9], gt, ignore_label=None)["AP"] < 1.0


def test_matches_instance_evaluator_ap50_without_cap_or_crowd():
    rng = np.random.default_rng(0)
    coco, ours = CocoEvaluator(), InstanceEvaluator()
    for _ in range(4):
        gt = rng.integers(0, 4, (6, 8)).repeat(3, 0).repeat(3, 1)
        pred = gt.copy()
        pred[rng.random(gt.shape) < 0.3] = rng.integers(0, 5)
        scores = rng.random(pred.max())
        for ev in (coco, ours):
            ev.process([InstancePrediction(pred, scores)], [InstanceTarget(gt)])
    assert coco.evaluate()["AP50"] == pytest.approx(ours.evaluate()["AP50"])


def test_empty_cases_and_reset():
    gt = _two_boxes()
    ev = CocoEvaluator()
    assert all(math.isnan(v) for v in ev.evaluate().values())
    ev.process([InstancePrediction(np.zeros_like(gt), [])], [InstanceTarget(gt)])
    assert ev.evaluate()["AP"] == 0.0
    ev.reset()
    assert math.isnan(ev.evaluate()["AP"])


def test_input_errors():
    gt = _two_boxes()
    ev = CocoEvaluator()
    with pytest.raises(ValueError, match=r"labels shape \(24, 24\) != targets\[0\].labels shape"):
        ev.process([InstancePrediction(gt, [1.0, 1.0])], [InstanceTarget(gt[:4])])
    with pytest.raises(ValueError, match=r"must lie in 0..K = 0..1"):
        ev.process([InstancePrediction(gt, [1.0])], [InstanceTarget(gt)])
    with pytest.raises(TypeError, match=r"targets\[0\] must be a InstanceTarget"):
        ev.process([InstancePrediction(gt, [1.0, 1.0])], [gt])
    with pytest.raises(ValueError, match="ignore_label must be <= 0"):
        CocoEvaluator(ignore_label=255)
