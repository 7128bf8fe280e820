"""The shared mask IoU and greedy matcher: hand-made cases, pycocotools, the three rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from pixelgroup.metrics.matching import box_iou, greedy_match, mask_iou, masks_to_boxes


def test_mask_iou_hand_computed():
    a = np.zeros((4, 4), bool)
    a[:2] = True  # 8 px
    b = np.zeros((4, 4), bool)
    b[1:3] = True  # 8 px, 4 shared
    iou = mask_iou(np.stack([a, b]), np.stack([b, np.zeros((4, 4), bool)]))
    np.testing.assert_allclose(iou, [[4 / 12, 0.0], [1.0, 0.0]])
    assert mask_iou(np.zeros((0, 4, 4), bool), np.stack([a])).shape == (0, 1)
    assert mask_iou(torch.from_numpy(a)[None], torch.from_numpy(b)[None]).dtype == np.float64


@pytest.mark.parametrize("seed", [0, 1])
def test_mask_iou_equals_pycocotools(seed):
    rng = np.random.default_rng(seed)
    a = rng.random((7, 23, 31)) < 0.4
    b = rng.random((5, 23, 31)) < 0.3
    b[0] = False  # an empty mask
    enc = [
        mask_utils.encode(np.asfortranarray(m.transpose(1, 2, 0).astype(np.uint8))) for m in (a, b)
    ]
    expected = np.asarray(mask_utils.iou(enc[0], enc[1], [0] * len(b)))
    np.testing.assert_array_equal(mask_iou(a, b), expected)  # bit for bit


def test_boxes():
    m = np.zeros((2, 6, 8), bool)
    m[0, 1:3, 2:7] = True
    assert masks_to_boxes(m).tolist() == [[2, 1, 7, 3], [0, 0, 0, 0]]
    np.testing.assert_allclose(
        box_iou(np.array([[0, 0, 2, 2]]), np.array([[1, 0, 3, 2]])), [[1 / 3]]
    )
    assert box_iou(np.zeros((0, 4)), np.zeros((2, 4))).shape == (0, 2)


def test_rows_take_the_best_free_column():
    ious = np.array([[0.6, 0.9], [0.1, 0.8], [0.7, 0.2]])
    # row 0 takes column 1; row 1's other column is below 0.5; row 2 takes column 0
    assert greedy_match(ious, 0.5).tolist() == [1, -1, 0]
    assert greedy_match(ious[[1, 0, 2]], 0.5).tolist() == [1, 0, -1]  # the order matters


def test_rows_fall_back_to_a_free_column_unless_best_only():
    ious = np.array([[0.9, 0.0], [0.8, 0.6]])
    assert greedy_match(ious, 0.5).tolist() == [0, 1]  # COCO: the best free column
    assert greedy_match(ious, 0.5, best_only=True).tolist() == [0, -1]  # VOC: best or nothing


def test_ties():
    ious = np.array([[0.5, 0.5]])
    assert greedy_match(ious).tolist() == [1]  # the last, as pycocotools' loop
    assert greedy_match(ious, best_only=True).tolist() == [0]  # the first, as MATLAB's max
    assert greedy_match(ious, order="iou").tolist() == [0]  # row-major
    assert greedy_match(np.array([[0.5], [0.5]]), order="iou").tolist() == [0, -1]


def test_iou_order_takes_the_best_pair_first():
    ious = np.array([[0.6, 0.9], [0.7, 0.0]])
    assert greedy_match(ious, order="iou").tolist() == [1, 0]
    assert greedy_match(ious).tolist() == [1, 0]
    ious = np.array([[0.6, 0.5], [0.9, 0.0]])
    assert greedy_match(ious, order="iou").tolist() == [1, 0]  # row 1 first (0.9)
    assert greedy_match(ious).tolist() == [0, -1]  # rows in order: row 0 takes column 0


def test_no_overlap_is_never_a_match():
    assert greedy_match(np.zeros((2, 2))).tolist() == [-1, -1]
    assert greedy_match(np.zeros((2, 2)), order="iou").tolist() == [-1, -1]
    assert greedy_match(np.zeros((0, 3))).shape == (0,)
    assert greedy_match(np.zeros((3, 0)), order="iou").tolist() == [-1, -1, -1]


def test_threshold_is_inclusive():
    assert greedy_match(np.array([[0.7]]), 0.7).tolist() == [0]
    assert greedy_match(np.array([[0.7]]), 0.7 + 1e-12).tolist() == [-1]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ious": np.zeros(3)}, r"ious must have shape \(K, M\)"),
        ({"ious": np.zeros((2, 2)), "order": "score"}, "order must be 'rows' or 'iou'"),
        ({"ious": np.zeros((2, 2)), "order": "iou", "best_only": True}, "best_only applies"),
    ],
)
def test_matcher_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        greedy_match(**kwargs)


def test_mask_errors():
    with pytest.raises(ValueError, match="both mask sets must have one size"):
        mask_iou(np.zeros((1, 4, 4), bool), np.zeros((1, 4, 5), bool))
    with pytest.raises(ValueError, match=r"masks must have shape \(K, H, W\)"):
        mask_iou(np.zeros((4, 4), bool), np.zeros((1, 4, 4), bool))
    with pytest.raises(TypeError, match="others must be a numpy array or torch.Tensor"):
        mask_iou(np.zeros((1, 4, 4), bool), [[[0]]])
