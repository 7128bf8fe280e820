"""Benchmark curves: PR curves of the boundary benchmark and AR curves, with references."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pixelgroup.metrics.boundary import BoundaryEvaluator, BoundaryPrediction, BoundaryTarget
from pixelgroup.viz import plot_average_recall, plot_pr_curves


def _is_png(path):
    with Image.open(path) as im:
        return im.format == "PNG" and min(im.size) > 50


def _boundary_scores():
    gt = np.zeros((30, 40), bool)
    gt[10, 5:35] = True
    pred = np.random.default_rng(0).random((30, 40)) * 0.5 + gt * 0.5
    ev = BoundaryEvaluator(num_thresholds=5, num_workers=1)
    ev.process([BoundaryPrediction(pred)], [BoundaryTarget(gt)])
    return ev.scores()


def test_pr_curves_with_and_without_references(tmp_path):
    s = _boundary_scores()
    plain = plot_pr_curves({"ours": s}, tmp_path / "plain.png")
    refs = {f"ref {i}": 0.5 + 0.05 * i for i in range(9)}  # more references than colours
    with_refs = plot_pr_curves({"ours": s, "again": s}, tmp_path / "refs.png", references=refs)
    assert _is_png(plain) and _is_png(with_refs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.png", "refs.png"]  # no temp


def test_average_recall_with_and_without_references(tmp_path):
    curves = {"ours": {1: 0.2, 10: 0.5, 100: 0.6}}
    out = plot_average_recall(curves, tmp_path / "ar.png")
    assert _is_png(out) and out == tmp_path / "ar.png"
    refs = {"paper": [(11, 0.56), (60, 0.61)], "other": [(10, 0.08)], "none": []}
    assert _is_png(plot_average_recall(curves, tmp_path / "ar2.png", references=refs, title="t"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ar.png", "ar2.png"]


def test_curves_need_a_png_path(tmp_path):
    with pytest.raises(ValueError, match="figure path must end in .png, got .*ar.jpg"):
        plot_average_recall({}, tmp_path / "ar.jpg")
    with pytest.raises(ValueError, match="figure path must end in .png"):
        plot_pr_curves({}, tmp_path / "pr.pdf")
    assert not list(tmp_path.iterdir())
