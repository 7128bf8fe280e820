import math

import numpy as np
import pytest
import torch

from pixelgroup.metrics import (
    MATCH_THRESHOLDS,
    InstancePrediction,
    InstanceTarget,
    MatchingEvaluator,
    label_iou,
    match_iou,
    match_labels,
    matching_scores,
)
from tests._reference import label_iou_reference, match_reference


def _hand_case():
    # gt: A 4 px, B 4 px, C 2 px; pred: 1 covers A and 1 px more (IoU 4/5),
    # 2 covers 2 px of B (IoU 2/4), 3 is a false blob, C is missed
    gt = np.array(
        [
            [1, 1, 0, 2, 2, 0, 3],
            [1, 1, 0, 2, 2, 0, 3],
        ]
    )
    pred = np.array(
        [
            [1, 1, 1, 2, 2, 0, 0],
            [1, 1, 0, 0, 0, 3, 0],
        ]
    )
    return gt, pred


def test_hand_computed_case():
    gt, pred = _hand_case()
    np.testing.assert_allclose(
        label_iou(gt, pred), [[4 / 5, 0, 0], [0, 2 / 4, 0], [0, 0, 0]], atol=0
    )
    counts = match_labels(gt, pred, [0.5, 0.55, 0.8, 0.85])
    assert counts.tp.tolist() == [2, 1, 1, 0]
    assert counts.fp.tolist() == [1, 2, 2, 3]
    assert counts.fn.tolist() == [1, 2, 2, 3]
    np.testing.assert_allclose(counts.iou_sum, [1.3, 0.8, 0.8, 0.0])
    s = matching_scores(counts)
    np.testing.assert_allclose(s["accuracy"], [2 / 4, 1 / 5, 1 / 5, 0])
    np.testing.assert_allclose(s["precision"], [2 / 3, 1 / 3, 1 / 3, 0])
    np.testing.assert_allclose(s["recall"], [2 / 3, 1 / 3, 1 / 3, 0])
    np.testing.assert_allclose(s["f1"], [4 / 6, 2 / 6, 2 / 6, 0])
    np.testing.assert_allclose(s["pq"][:3], [1.3 / 3, 0.8 / 3, 0.8 / 3])
    np.testing.assert_allclose(s["miou"][:3], [0.65, 0.8, 0.8])
    assert math.isnan(s["miou"][3])  # no match: the mean matched IoU is undefined


def test_evaluator_keys_hand_computed():
    gt, pred = _hand_case()
    ev = MatchingEvaluator()
    ev.process([InstancePrediction(pred, [0.9, 0.8, 0.7])], [InstanceTarget(gt)])
    out = ev.evaluate()
    assert [k for k in out if k.startswith("acc")] == [
        *(f"acc{round(100 * t)}" for t in MATCH_THRESHOLDS),
        "acc50_95",
    ]
    assert out["acc50"] == 0.5 and out["acc55"] == out["acc80"] == pytest.approx(0.2)
    assert out["acc85"] == out["acc95"] == 0.0
    assert out["acc50_95"] == pytest.approx((0.5 + 6 * 0.2) / 10)
    assert (out["tp50"], out["fp50"], out["fn50"]) == (2, 1, 1)
    assert (out["tp75"], out["fp75"], out["fn75"]) == (1, 2, 2)
    assert out["f1_50"] == pytest.approx(2 / 3) and out["pq50"] == pytest.approx(1.3 / 3)
    assert out["miou75"] == pytest.approx(0.8)
    assert out["precision75"] == out["recall75"] == pytest.approx(1 / 3)
    assert all(isinstance(out[k], int) for k in ("tp50", "fp50", "fn50"))


def test_counts_are_summed_over_images_before_the_ratios():
    # image 1: 1 of 1 found (acc 1); image 2: 1 of 3 found, nothing else predicted (acc 1/3).
    # Summed counts: TP 2, FN 2 -> 0.5, not the per-image mean 2/3 (StarDist's convention).
    gt1 = np.array([[1, 1, 0, 0]])
    gt2 = np.array([[1, 0, 2, 0, 3]])
    pred2 = np.array([[1, 0, 0, 0, 0]])
    ev = MatchingEvaluator(thresholds=[0.5], detail=[0.5])
    ev.process(
        [InstancePrediction(gt1, [1.0]), InstancePrediction(pred2, [1.0])],
        [InstanceTarget(gt1), InstanceTarget(gt2)],
    )
    out = ev.evaluate()
    assert out["acc50"] == 0.5 and out["recall50"] == 0.5 and out["precision50"] == 1.0
    assert "acc50_95" not in out  # one threshold: no mean over thresholds
    counts = match_labels(gt1, gt1, [0.5]) + match_labels(gt2, pred2, [0.5])
    assert (counts.tp.tolist(), counts.num_gt, counts.num_pred) == ([2], 4, 2)


@pytest.mark.parametrize("seed", range(6))
def test_label_iou_and_counts_agree_with_the_slow_reference(seed):
    rng = np.random.default_rng(seed)
    gt = np.zeros((14, 15), np.int64)
    pred = np.zeros_like(gt)
    for k in range(1, 7):  # overlapping rectangles painted over each other, arbitrary ids
        for labels, value in ((gt, 10 * k), (pred, 1000 + k)):
            y, x = rng.integers(0, 11, size=2)
            h, w = rng.integers(2, 6, size=2)
            labels[y : y + h, x : x + w] = value
    pred[rng.random(pred.shape) < 0.1] = 0  # holes
    ignore = rng.random(gt.shape) < 0.1 if seed % 2 else None
    iou = label_iou(gt, pred, ignore)
    np.testing.assert_allclose(iou, label_iou_reference(gt, pred, ignore), rtol=0, atol=1e-15)
    thresholds = [0.1, 0.3, 0.5, 0.7, 0.9]
    counts = match_labels(gt, pred, thresholds, ignore)
    for i, t in enumerate(thresholds):
        tp, iou_sum = match_reference(iou, t)
        assert counts.tp[i] == tp
        assert counts.iou_sum[i] == pytest.approx(iou_sum)
    assert counts.num_gt == iou.shape[0] and counts.num_pred == iou.shape[1]


@pytest.mark.parametrize("seed", range(8))
def test_optimal_matching_of_any_iou_matrix_agrees_with_brute_force(seed):
    # low thresholds on arbitrary (overlapping-mask) IoUs: greedy matching would fall short
    rng = np.random.default_rng(seed)
    iou = np.round(rng.random((4, 5)), 1)
    counts = match_iou(iou, [0.2, 0.5, 0.6])
    for i, t in enumerate([0.2, 0.5, 0.6]):
        tp, iou_sum = match_reference(iou, t)
        assert counts.tp[i] == tp and counts.iou_sum[i] == pytest.approx(iou_sum)


def test_matching_maximises_pairs_then_iou():
    # greedy on the best pair (0.9) would leave row 1 unmatched: optimal takes 0.6 and 0.8
    counts = match_iou(np.array([[0.9, 0.6], [0.8, 0.0]]), [0.5])
    assert counts.tp.tolist() == [2] and counts.iou_sum[0] == pytest.approx(1.4)
    # two full matchings of 2 pairs: the larger IoU sum wins
    counts = match_iou(np.array([[0.6, 0.7], [0.7, 0.6]]), [0.5])
    assert counts.iou_sum[0] == pytest.approx(1.4)


def test_a_prediction_covering_two_halves_matches_one_at_exactly_half():
    # pred 1 is the union of two equal gt objects: IoU exactly 0.5 with each, one match
    gt = np.array([[1, 1, 2, 2]])
    pred = np.array([[1, 1, 1, 1]])
    counts = match_labels(gt, pred, [0.5, 0.55])
    assert counts.tp.tolist() == [1, 0] and counts.iou_sum.tolist() == [0.5, 0.0]


def test_empty_maps():
    empty, one = np.zeros((3, 3), np.int64), np.zeros((3, 3), np.int64)
    one[1, 1] = 4
    s = matching_scores(match_labels(empty, empty, [0.5]))
    assert all(math.isnan(v[0]) for v in s.values())  # nothing to score
    s = matching_scores(match_labels(one, empty, [0.5]))  # no predictions
    assert s["accuracy"][0] == s["recall"][0] == s["f1"][0] == s["pq"][0] == 0.0
    assert math.isnan(s["precision"][0]) and math.isnan(s["miou"][0])
    s = matching_scores(match_labels(empty, one, [0.5]))  # no ground truth
    assert s["accuracy"][0] == s["precision"][0] == s["f1"][0] == 0.0
    assert math.isnan(s["recall"][0])
    ev = MatchingEvaluator()
    out = ev.evaluate()  # no image at all
    assert math.isnan(out["acc50"]) and out["tp50"] == 0


def test_ignored_pixels_take_no_part():
    # gt: object 1 and an ignored region (-1); pred 2 lies inside the ignored region, pred 1
    # reaches into it: outside it, pred 1 equals gt 1
    gt = np.array([[1, 1, -1, -1, -1]])
    pred = np.array([[1, 1, 1, 0, 2]])
    ev = MatchingEvaluator(thresholds=[0.9], detail=[0.9])
    ev.process([InstancePrediction(torch.from_numpy(pred), [1.0, 1.0])], [InstanceTarget(gt)])
    out = ev.evaluate()
    assert (out["tp90"], out["fp90"], out["fn90"]) == (1, 0, 0) and out["miou90"] == 1.0
    ev = MatchingEvaluator(thresholds=[0.9], detail=[0.9], ignore_label=None)
    with pytest.raises(ValueError, match=r"targets\[0\].labels must be >= 0, got -1"):
        ev.process([InstancePrediction(pred, [1.0, 1.0])], [InstanceTarget(gt)])


def test_relabelling_and_transposing_change_nothing():
    gt, pred = _hand_case()
    a = match_labels(gt, pred)
    b = match_labels(gt.T * 7, np.where(pred > 0, 40 - pred, 0).T)
    assert a.tp.tolist() == b.tp.tolist()
    np.testing.assert_allclose(a.iou_sum, b.iou_sum)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: label_iou(np.zeros((2, 2), int), np.zeros((2, 3), int)), ValueError, "shape"),
        (lambda: label_iou(np.zeros((2, 2)), np.zeros((2, 2), int)), TypeError, "integer"),
        (
            lambda: label_iou(np.zeros((2, 2), int), -np.ones((2, 2), int)),
            ValueError,
            r"pred labels must be >= 0",
        ),
        (
            lambda: label_iou(np.zeros((2, 2), int), np.zeros((2, 2), int), np.zeros(3, bool)),
            ValueError,
            "ignore must have",
        ),
        (lambda: match_iou(np.zeros((2, 2)), [0.0]), ValueError, r"IoUs in \(0, 1\]"),
        (lambda: match_iou(np.zeros(2), [0.5]), ValueError, r"shape \(G, P\)"),
        (lambda: MatchingEvaluator(detail=[0.52]), ValueError, "detail thresholds"),
        (lambda: MatchingEvaluator(ignore_label=3), ValueError, "ignore_label must be <= 0"),
        (
            lambda: (
                match_labels(np.ones((1, 1), int), np.ones((1, 1), int), [0.5])
                + match_labels(np.ones((1, 1), int), np.ones((1, 1), int), [0.6])
            ),
            ValueError,
            "cannot add counts",
        ),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_records_are_checked():
    ev = MatchingEvaluator()
    labels = np.ones((2, 2), np.int64)
    with pytest.raises(ValueError, match=r"must lie in 0\.\.K = 0\.\.0"):
        ev.process([InstancePrediction(labels, [])], [InstanceTarget(labels)])
    with pytest.raises(TypeError, match="InstancePrediction"):
        ev.process([labels], [InstanceTarget(labels)])
