"""The BSDS boundary benchmark: matching, counts, scores and the evaluator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.io as sio
import torch
from scipy.optimize import linear_sum_assignment

from pixelgroup.metrics.boundary import (
    BoundaryCounts,
    BoundaryEvaluator,
    BoundaryPrediction,
    BoundaryTarget,
    boundary_counts,
    boundary_scores,
    boundary_thresholds,
    correspond_pixels,
)


def _scores(samples, num_thresholds, **kwargs):
    """``BoundaryScores`` of ``(name, pred (H, W), gts (A, H, W))`` samples."""
    ev = BoundaryEvaluator(num_thresholds, **kwargs)
    ev.process(
        [BoundaryPrediction(p) for _, p, _ in samples],
        [BoundaryTarget(g, n) for n, _, g in samples],
    )
    return ev.scores()


def _dense_matching_size(pred, gt, max_dist):
    """Oracle: maximum matching size within the radius by a dense assignment."""
    radius = max_dist * math.hypot(*pred.shape)
    p, g = np.argwhere(pred), np.argwhere(gt)
    if len(p) == 0 or len(g) == 0:
        return 0
    d = np.linalg.norm(p[:, None] - g[None], axis=-1)
    cost = np.where(d <= radius, 0.0, 1.0)
    r, c = linear_sum_assignment(cost)
    return int((cost[r, c] == 0).sum())


def _sobel_sample(shared_data, name, crop=None):
    from skimage import color, filters

    m = sio.loadmat(shared_data / "bsds" / f"{name}.mat", squeeze_me=True)
    gt = m["GT"] > 0
    pb = filters.sobel(color.rgb2gray(m["im"]))
    pb = np.round(pb / pb.max() * 255) / 255
    if crop is not None:
        pb, gt = pb[:crop, :crop], gt[:crop, :crop]
    return pb, gt


def test_thresholds_are_bsds_grid():
    ts = boundary_thresholds(99)
    assert ts.shape == (99,)
    np.testing.assert_allclose(ts[[0, 49, 98]], [0.01, 0.5, 0.99])
    with pytest.raises(ValueError, match="num_thresholds must be an int >= 1"):
        boundary_thresholds(0)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_correspond_pixels_is_a_maximum_matching(seed):
    rng = np.random.default_rng(seed)
    pred = rng.random((24, 30)) < 0.15
    gt = rng.random((24, 30)) < 0.15
    max_dist = 0.05  # 1.9 px radius
    mp, mg = correspond_pixels(pred, gt, max_dist)
    assert mp.sum() == mg.sum() == _dense_matching_size(pred, gt, max_dist)
    assert not (mp & ~pred).any() and not (mg & ~gt).any()


def test_correspond_pixels_respects_the_radius():
    pred = np.zeros((60, 80), bool)
    gt = np.zeros((60, 80), bool)
    pred[10, 5:70] = True
    gt[12, 5:70] = True  # 2 px away; radius is 0.0075 * 100 = 0.75 px
    mp, mg = correspond_pixels(pred, gt, 0.0075)
    assert mp.sum() == 0 and mg.sum() == 0
    mp, mg = correspond_pixels(pred, gt, 0.025)  # 2.5 px
    assert mp.sum() == mg.sum() == 65


def test_correspond_pixels_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        correspond_pixels(np.zeros((4, 5), bool), np.zeros((5, 4), bool))


def test_correspond_pixels_agrees_with_pyedgeeval():
    ref = pytest.importorskip("pyEdgeEval._lib", reason="pyEdgeEval (extra bsds-reference)")
    rng = np.random.default_rng(7)
    for _ in range(3):
        pred = rng.random((50, 70)) < 0.1
        gt = rng.random((50, 70)) < 0.1
        m1, m2, _, _ = ref.correspond_pixels(pred, gt, max_dist=0.03)
        mp, mg = correspond_pixels(pred, gt, 0.03)
        assert abs(int(mp.sum()) - int((m1 > 0).sum())) <= 1
        assert abs(int(mg.sum()) - int((m2 > 0).sum())) <= 1


def test_ground_truth_as_prediction_scores_one(shared_data):
    _, gt = _sobel_sample(shared_data, "104010", crop=160)
    ev = BoundaryEvaluator(5, apply_thinning=False, num_workers=1)
    ev.process([BoundaryPrediction(gt.astype(float))], [BoundaryTarget(gt[None], "a")])
    s = ev.scores()
    assert s.ods == pytest.approx(1.0) and s.ois == pytest.approx(1.0)
    assert s.r50 == pytest.approx(1.0)
    assert ev.evaluate() == {"ODS": s.ods, "OIS": s.ois, "AP": s.ap, "R50": s.r50}


def test_matches_pyedgeeval_on_samples(shared_data):
    ref = pytest.importorskip(
        "pyEdgeEval.common.binary_label.evaluate_boundaries", reason="pyEdgeEval not installed"
    )
    from pyEdgeEval.common.binary_label.calculate_metrics import calculate_metrics

    ts = boundary_thresholds(7)
    samples = []
    for name in ("104010", "130066"):
        pb, gt = _sobel_sample(shared_data, name, crop=200)
        samples.append((name, pb, gt[None]))
    ours = _scores(samples, 7, num_workers=2)

    def one(s):
        return ref.evaluate_boundaries_threshold_multiple_gts(ts, s["pred"], s["gts"])

    ref_samples = [dict(name=n, pred=p, gts=list(g)) for n, p, g in samples]
    _, _, theirs = calculate_metrics(one, 7, ref_samples, nproc=1)
    assert ours.ods == pytest.approx(theirs["ODS_f1"], abs=2e-3)
    assert ours.ois == pytest.approx(theirs["OIS_f1"], abs=2e-3)
    assert ours.ap == pytest.approx(theirs["AUC"], abs=2e-3)
    assert ours.ods <= ours.ois + 1e-9
    assert 0.0 <= ours.ap <= 1.0


def test_parallel_equals_serial_and_multiple_annotators():
    rng = np.random.default_rng(3)
    pred = rng.random((40, 50))
    gts = rng.random((3, 40, 50)) < 0.08
    samples = [("x", pred, gts), ("y", pred[::-1].copy(), gts[:, ::-1])]
    a = _scores(samples, 6, num_workers=1)
    b = _scores(samples, 6, num_workers=2)
    np.testing.assert_array_equal(a.recall, b.recall)
    np.testing.assert_array_equal(a.precision, b.precision)
    c = boundary_counts(pred, gts, 6)
    assert (c.sum_r == gts.sum()).all()  # recall accumulates over annotators
    assert (c.count_p <= c.sum_p).all() and (c.count_r <= c.sum_r).all()


def _counts(rec, prec):
    ts = boundary_thresholds(len(rec))
    n = 1000
    rec, prec = np.asarray(rec), np.asarray(prec)
    return BoundaryCounts(ts, rec * n, np.full(len(ts), n), prec * n, np.full(len(ts), n))


def test_scores_on_a_hand_made_curve():
    s = boundary_scores([_counts([1.0, 0.8, 0.6, 0.2], [0.3, 0.5, 0.7, 0.9])])
    assert s.r50 == pytest.approx(0.8)
    # best F lies between the 2nd and 3rd thresholds on the interpolated curve
    assert s.ods >= max(s.f1) - 1e-12
    assert s.ods_threshold > s.thresholds[1] and s.ods_threshold < s.thresholds[2]
    grid = np.linspace(0, 1, 101)
    grid = grid[(grid >= 0.2) & (grid <= 1.0)]
    expected = np.interp(grid, [0.2, 0.6, 0.8, 1.0], [0.9, 0.7, 0.5, 0.3]).sum() / 100
    assert s.ap == pytest.approx(expected)
    assert math.isnan(boundary_scores([_counts([0.5, 0.4], [0.2, 0.3])]).r50)


def test_ois_uses_each_images_best_threshold():
    a = _counts([0.9, 0.1], [0.9, 0.1])  # best at the first threshold
    b = _counts([0.1, 0.9], [0.1, 0.9])  # best at the second
    s = boundary_scores([a, b], ["a", "b"])
    assert s.ois == pytest.approx(0.9)
    assert s.ods == pytest.approx(0.5)
    assert [r["name"] for r in s.per_image_best] == ["a", "b"]


def test_bad_inputs_raise_clear_errors():
    pred = np.full((10, 12), 0.5)
    gt = np.zeros((10, 12), bool)
    gt[3, :] = True
    with pytest.raises(ValueError, match=r"matching pred \(H, W\) = \(10, 12\)"):
        boundary_counts(pred, np.zeros((12, 10), bool))
    with pytest.raises(ValueError, match="ground truth is empty"):
        boundary_counts(pred, np.zeros((10, 12), bool))
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        boundary_counts(pred * 255, gt)
    with pytest.raises(ValueError, match="non-finite"):
        boundary_counts(np.where(gt, np.nan, 0.2), gt)
    with pytest.raises(ValueError, match=r"must be an \(H, W\) map"):
        boundary_counts(pred[None], gt)
    with pytest.raises(ValueError, match="no images to score"):
        boundary_scores([])
    with pytest.raises(ValueError, match="same thresholds"):
        boundary_scores([_counts([0.5, 0.4], [0.2, 0.3]), _counts([0.5, 0.4, 0.3], [0.2] * 3)])


def test_evaluator_reset_process_evaluate():
    rng = np.random.default_rng(0)
    gt = np.zeros((30, 40), bool)
    gt[10, 5:35] = True
    gt[5:25, 20] = True
    ev = BoundaryEvaluator(num_thresholds=5, num_workers=1)
    ev.process([BoundaryPrediction(rng.random((30, 40)))], [BoundaryTarget(gt, "noise")])
    ev.process([BoundaryPrediction(torch.from_numpy(gt).double())], [BoundaryTarget(gt)])
    out = ev.evaluate()
    s = ev.scores()
    assert out == {"ODS": s.ods, "OIS": s.ois, "AP": s.ap}  # R50: precision stays below 0.5
    assert all(isinstance(v, float) for v in out.values()) and math.isnan(s.r50)
    assert [r["name"] for r in s.per_image_best] == ["noise", "1"]  # default name: the index
    assert s.per_image_best[1]["f1"] == pytest.approx(1.0)
    assert s.ods <= s.ois + 1e-9 and 0.0 <= s.ap <= 1.0
    d = s.to_dict()
    assert len(d["curve"]) == 5 and set(d) >= {"ODS", "OIS", "AP", "R50"}
    ev.reset()
    with pytest.raises(ValueError, match="no images to score"):
        ev.evaluate()
    with pytest.raises(ValueError, match="ground truth is empty"):
        ev.process([BoundaryPrediction(rng.random((30, 40)))], [BoundaryTarget(np.zeros((30, 40)))])


def test_evaluator_leaves_out_r50_below_half_precision():
    gt = np.zeros((20, 20), bool)
    gt[10, :] = True
    ev = BoundaryEvaluator(num_thresholds=3, apply_thinning=False, num_workers=1)
    ev.process([BoundaryPrediction(np.full((20, 20), 0.9))], [BoundaryTarget(gt)])  # P = 0.05
    assert math.isnan(ev.scores().r50) and set(ev.evaluate()) == {"ODS", "OIS", "AP"}


def test_evaluator_argument_errors():
    with pytest.raises(
        ValueError, match=r"num_workers must be an int >= 1 \(1 = in this process\)"
    ):
        BoundaryEvaluator(num_workers=0)
    with pytest.raises(ValueError, match="max_dist must be a finite number >= 0"):
        BoundaryEvaluator(max_dist=-1)
    with pytest.raises(ValueError, match="max_dist must be a finite number >= 0"):
        correspond_pixels(np.zeros((4, 4), bool), np.zeros((4, 4), bool), max_dist=-0.1)
    with pytest.raises(ValueError, match="num_thresholds must be an int >= 1"):
        BoundaryEvaluator(num_thresholds=0)
    ev = BoundaryEvaluator(num_workers=1)
    gt = np.ones((4, 4), bool)
    with pytest.raises(ValueError, match="got 1 predictions and 2 targets"):
        ev.process([BoundaryPrediction(gt)], [BoundaryTarget(gt), BoundaryTarget(gt)])
    with pytest.raises(
        TypeError, match="predictions\\[0\\] must be a BoundaryPrediction, got tuple"
    ):
        ev.process([(gt,)], [BoundaryTarget(gt)])
    with pytest.raises(TypeError, match="predictions must be a sequence"):
        ev.process(BoundaryPrediction(gt), [BoundaryTarget(gt)])
