"""Proposal recall: hand-made cases, matching rules, ranking order and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pixelgroup.metrics.matching import box_iou, mask_iou, masks_to_boxes
from pixelgroup.metrics.proposals import (
    IOU_THRESHOLDS,
    ProposalEvaluator,
    ProposalPrediction,
    ProposalTarget,
    match_proposals,
)


def _square(h, w, y, x, size):
    m = np.zeros((h, w), bool)
    m[y : y + size, x : x + size] = True
    return m


def _gt():
    return np.stack([_square(40, 40, 0, 0, 10), _square(40, 40, 20, 20, 10)])


def _process(ev, gt, props, scores, void=None):
    ev.process([ProposalPrediction(props, scores)], [ProposalTarget(gt, void)])


def test_perfect_proposals_give_ar_one():
    ev = ProposalEvaluator()
    gt = _gt()
    _process(ev, gt, gt, np.array([0.9, 0.8]))
    out = ev.evaluate()
    assert out["AR@1"] == pytest.approx(0.5)  # one proposal covers one of two instances
    for k in (5, 10, 100):
        assert out[f"AR@{k}"] == 1.0 and out[f"box_AR@{k}"] == 1.0 and out[f"R50@{k}"] == 1.0
    assert out["num_images"] == 1 and out["num_instances"] == 2
    assert ev.recall("mask").shape == (6, 10) and ev.recall("box")[2].tolist() == [1.0] * 10


def test_shifted_mask_has_known_iou():
    gt = _square(40, 40, 0, 0, 10)[None]
    for shift, expected in ((2, 80 / 120), (5, 50 / 150)):
        prop = _square(40, 40, 0, shift, 10)[None]
        assert mask_iou(prop, gt)[0, 0] == pytest.approx(expected)
        assert box_iou(masks_to_boxes(prop), masks_to_boxes(gt))[0, 0] == pytest.approx(expected)


def test_recall_of_shifted_mask_counts_thresholds():
    # IoU 2/3 meets thresholds 0.50..0.65 (4 of 10): AR = 0.4, recall@0.5 = 1.
    ev = ProposalEvaluator(counts=(1,))
    gt = _square(40, 40, 0, 0, 10)[None]
    _process(ev, gt, _square(40, 40, 0, 2, 10)[None], [1.0])
    out = ev.evaluate()
    assert out["AR@1"] == pytest.approx(0.4)
    assert out["R50@1"] == 1.0
    # an IoU of exactly a threshold (3/5 = 0.6) meets it
    ev.reset()
    prop = np.zeros((1, 40, 40), bool)
    prop[0, :10, :6] = True  # 60 pixels inside a 100-pixel GT: IoU 0.6
    _process(ev, gt, prop, [1.0])
    assert ev.evaluate()["AR@1"] == pytest.approx(0.3)


def test_reverse_order_gives_lower_ar_at_one():
    gt = _square(40, 40, 0, 0, 10)[None]
    good, bad = gt[0], _square(40, 40, 0, 5, 10)
    props = np.stack([good, bad])
    forward, reverse = ProposalEvaluator(), ProposalEvaluator()
    _process(forward, gt, props, [2.0, 1.0])
    _process(reverse, gt, props, [1.0, 2.0])
    assert forward.evaluate()["AR@1"] == 1.0
    assert reverse.evaluate()["AR@1"] == pytest.approx(0.0)  # IoU 1/3 < 0.5
    assert reverse.evaluate()["AR@5"] == 1.0


def test_each_gt_and_proposal_matched_once():
    # one proposal overlapping two GTs covers only one of them
    gt = np.stack([_square(20, 20, 0, 0, 10), _square(20, 20, 0, 0, 10)])
    ious = mask_iou(gt[:1], gt)
    assert match_proposals(ious, (1,)).tolist() == [[1.0, 0.0]]
    # greedy by IoU, not by score: the best pair is taken first
    ious = np.array([[0.6, 0.9], [0.0, 0.7]])
    assert match_proposals(ious, (1, 2)).tolist() == [[0.0, 0.9], [0.0, 0.9]]
    ious = np.array([[0.6, 0.9], [0.7, 0.0]])
    assert match_proposals(ious, (2,)).tolist() == [[0.7, 0.9]]
    with pytest.raises(ValueError, match=r"ious must have shape \(K, G\)"):
        match_proposals(np.zeros(3))


def test_recall_pools_instances_over_images():
    ev = ProposalEvaluator(counts=(10,))
    gt = _gt()
    ev.process(
        [
            ProposalPrediction(gt, [1.0, 1.0]),
            ProposalPrediction(_square(40, 40, 30, 30, 5)[None], [1.0]),
        ],
        [ProposalTarget(gt), ProposalTarget(gt[:1])],
    )  # 2 of 2 found, then 0 of 1
    assert ev.evaluate()["AR@10"] == pytest.approx(2 / 3)
    assert ev.evaluate()["num_images"] == 2


def test_void_pixels_are_ignored():
    gt = _square(40, 40, 0, 0, 10)[None]
    prop = _square(40, 40, 0, 0, 12)[None]  # spills 44 pixels outside the GT
    void = _square(40, 40, 0, 0, 12) & ~gt[0]
    ev = ProposalEvaluator(counts=(1,))
    _process(ev, gt, prop, [1.0], void=void)
    assert ev.evaluate()["AR@1"] == 1.0


def test_accepts_tensors():
    gt = torch.from_numpy(_gt())
    ev = ProposalEvaluator()
    _process(ev, gt, gt, torch.tensor([1.0, 0.5]), void=torch.zeros(40, 40, dtype=torch.bool))
    assert ev.evaluate()["AR@10"] == 1.0


def test_thresholds_default():
    assert IOU_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def test_errors():
    ev = ProposalEvaluator()
    gt = _gt()
    with pytest.raises(ValueError, match="proposal masks are 20x20 but the image's ground truth"):
        _process(ev, gt, np.zeros((1, 20, 20), bool), [1.0])
    with pytest.raises(ValueError, match=r"predictions\[0\] has no proposals"):
        _process(ev, gt, np.zeros((0, 40, 40), bool), [])
    with pytest.raises(ValueError, match="expected 2 scores"):
        _process(ev, gt, gt, [1.0])
    with pytest.raises(ValueError, match=r"predictions\[0\].masks must have shape \(K, H, W\)"):
        _process(ev, gt, gt[0], [1.0])
    with pytest.raises(TypeError, match="must be a numpy array or torch.Tensor"):
        _process(ev, gt, [[0]], [1.0])
    with pytest.raises(ValueError, match=r"targets\[0\]: void mask is \(4, 4\)"):
        _process(ev, gt, gt, [1.0, 1.0], void=np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="predictions.0..scores must be finite"):
        _process(ev, gt, gt, [1.0, float("nan")])
    with pytest.raises(TypeError, match=r"targets\[0\] must be a ProposalTarget, got ndarray"):
        ev.process([ProposalPrediction(gt, [1.0, 1.0])], [gt])
    with pytest.raises(ValueError, match="no images processed"):
        ev.evaluate()
    with pytest.raises(ValueError, match="kind must be 'mask' or 'box'"):
        ev.recall("polygon")
    with pytest.raises(ValueError, match="counts must be positive ints"):
        ProposalEvaluator(counts=(0,))
    with pytest.raises(ValueError, match="thresholds must lie in"):
        ProposalEvaluator(thresholds=(1.5,))
    empty = ProposalEvaluator()
    _process(empty, np.zeros((0, 4, 4), bool), np.ones((1, 4, 4), bool), [1.0])
    with pytest.raises(ValueError, match="no ground-truth instances"):
        empty.evaluate()
