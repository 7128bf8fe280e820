import math

import numpy as np
import pytest
import torch

from pixelgroup.metrics.semantic import (
    SemanticEvaluator,
    SemanticPrediction,
    SemanticTarget,
    boundary_match_counts,
    confusion_matrix,
    label_boundaries,
    scores_from_confusion,
)


def test_hand_computed_confusion_and_scores():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 1]])
    conf = confusion_matrix(pred, target, 3)
    expected = torch.tensor([[1, 1, 0], [0, 3, 0], [1, 0, 1]])
    assert torch.equal(conf, expected)
    scores = scores_from_confusion(conf)
    # IoU: class0 1/(2+2-1)=1/3, class1 3/(3+4-3)=3/4, class2 1/(2+1-1)=1/2
    assert scores["iou"] == pytest.approx([1 / 3, 3 / 4, 1 / 2])
    assert scores["mIoU"] == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)
    assert scores["pixel_acc"] == pytest.approx(5 / 7)
    assert scores["mean_acc"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)


def test_ignore_index_is_honoured_and_absent_classes_skipped():
    target = torch.tensor([0, 0, 255, 255])
    pred = torch.tensor([0, 0, 3, 1])
    scores = scores_from_confusion(confusion_matrix(pred, target, 4))
    assert scores["mIoU"] == 1.0 and scores["pixel_acc"] == 1.0
    assert math.isnan(scores["iou"][2])


def _process(ev, preds, targets):
    """One record per image of ``(B, H, W)`` maps."""
    ev.process([SemanticPrediction(p) for p in preds], [SemanticTarget(t) for t in targets])


def test_evaluator_accumulates():
    ev = SemanticEvaluator(num_classes=2)
    _process(ev, torch.tensor([[[0, 1]]]), torch.tensor([[[0, 1]]]))
    _process(ev, np.array([[[1, 1]]]), np.array([[[0, 1]]]))  # numpy works too
    scores = ev.evaluate()
    assert scores == {"mIoU": pytest.approx(7 / 12), "pixel_acc": 3 / 4, "mean_acc": 3 / 4}
    assert ev.class_iou() == pytest.approx([1 / 2, 2 / 3])
    ev.reset()
    assert int(ev.confusion.sum()) == 0


@pytest.mark.parametrize(
    ("pred", "target", "match"),
    [
        (torch.zeros(2, 2), torch.zeros(3), "shape"),
        (torch.tensor([5]), torch.tensor([0]), r"pred has class ids outside \[0, 3\)"),
        (torch.tensor([0]), torch.tensor([-1]), "target has class ids"),
    ],
)
def test_bad_input(pred, target, match):
    with pytest.raises(ValueError, match=match):
        confusion_matrix(pred.long(), target.long(), 3)


def test_label_boundaries_one_sided_and_void_filled():
    labels = np.array([[1, 1, 2], [1, 1, 2], [3, 3, 3]])
    expected = np.array([[0, 1, 0], [1, 1, 1], [0, 0, 0]], dtype=bool)
    assert np.array_equal(label_boundaries(labels), expected)
    # a void column between classes 1 and 2 gets one contour (nearest label fills it)
    void = np.array([[1, 255, 255, 2]] * 2)
    assert label_boundaries(void).sum() == 2
    assert not label_boundaries(np.full((3, 3), 255)).any()


def test_boundary_counts_within_tolerance():
    gt = np.zeros((40, 40), dtype=np.int64)
    gt[:, 20:] = 1
    # diagonal 56.6 px: max_dist 0.02 -> 1.13 px, 0.01 -> 0.57 px
    assert boundary_match_counts(gt, gt, 0.01).tolist() == [40, 40, 40, 40]
    shifted = np.zeros_like(gt)
    shifted[:, 21:] = 1  # contour one pixel to the right
    assert boundary_match_counts(shifted, gt, 0.02).tolist() == [40, 40, 40, 40]
    assert boundary_match_counts(shifted, gt, 0.01).tolist() == [0, 40, 0, 40]
    ev = SemanticEvaluator(2, boundary_max_dist=0.01)
    _process(ev, torch.from_numpy(np.stack([gt, shifted])), torch.from_numpy(np.stack([gt, gt])))
    scores = ev.evaluate()
    assert scores["boundary_P"] == scores["boundary_R"] == pytest.approx(0.5)
    assert scores["boundary_F"] == pytest.approx(0.5)


def test_boundary_scores_of_flat_maps():
    ev = SemanticEvaluator(2, boundary_max_dist=0.01)
    _process(ev, torch.zeros(1, 8, 8, dtype=torch.long), torch.zeros(1, 8, 8, dtype=torch.long))
    assert ev.evaluate()["boundary_F"] == 1.0
    ev.reset()
    _process(ev, torch.zeros(1, 8, 8, dtype=torch.long), torch.eye(8, dtype=torch.long)[None])
    assert ev.evaluate()["boundary_F"] == 0.0


def test_evaluator_ignore_index_skips_void_pixels():
    ev = SemanticEvaluator(3, ignore_index=255, boundary_max_dist=0.05)
    target = torch.tensor([[0, 0, 255, 1], [0, 0, 255, 1]])
    pred = torch.tensor([[0, 0, 2, 1], [0, 0, 2, 1]])
    ev.process([SemanticPrediction(pred)], [SemanticTarget(target)])
    scores = ev.evaluate()
    assert scores["mIoU"] == 1.0 and scores["pixel_acc"] == 1.0
    assert set(scores) == {
        "mIoU",
        "pixel_acc",
        "mean_acc",
        "boundary_P",
        "boundary_R",
        "boundary_F",
    }
    assert int(ev.confusion.sum()) == 6


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: label_boundaries(np.zeros(4)), r"labels must be an \(H, W\) map"),
        (
            lambda: boundary_match_counts(np.zeros((2, 2)), np.zeros((2, 3))),
            r"pred and target must be \(H, W\) maps of one shape",
        ),
        (lambda: SemanticEvaluator(2, boundary_max_dist=0.0), "boundary_max_dist must be > 0"),
        (
            lambda: SemanticEvaluator(2).process(
                [SemanticPrediction(torch.zeros(4, dtype=torch.long))],
                [SemanticTarget(torch.zeros(4, dtype=torch.long))],
            ),
            r"predictions\[0\].labels must be an \(H, W\) class map, got shape \(4,\)",
        ),
        (
            lambda: SemanticEvaluator(2).process(
                [SemanticPrediction(torch.zeros(2, 2, dtype=torch.long))],
                [SemanticTarget(torch.full((2, 2), 5))],
            ),
            r"target has class ids outside \[0, 2\)",
        ),
        (
            lambda: SemanticEvaluator(2).process(
                [SemanticPrediction(torch.zeros(2, 2, dtype=torch.long))], []
            ),
            "got 1 predictions and 0 targets",
        ),
    ],
)
def test_boundary_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_float_maps_are_a_type_error():
    with pytest.raises(TypeError, match=r"targets\[0\].labels must hold integer class ids"):
        SemanticEvaluator(2).process(
            [SemanticPrediction(torch.zeros(2, 2, dtype=torch.long))],
            [SemanticTarget(torch.zeros(2, 2))],
        )
