"""The shared input checks: one message per problem, the project's error types."""

import numpy as np
import pytest
import torch

from pixelgroup._checks import check_count, check_shape, check_size
from pixelgroup.errors import InputError


def test_check_shape_binds_letters_and_fixed_sizes():
    assert check_shape(torch.zeros(2, 8, 5, 7), ["B", "D", "H", "W"], "x") == {
        "B": 2,
        "D": 8,
        "H": 5,
        "W": 7,
    }
    assert check_shape(np.zeros((4, 4)), ["N", "N"], "gram") == {"N": 4}
    assert check_shape(torch.zeros(1, 3, 2, 2), ["B", 3, "H", "W"], "image")["B"] == 1


@pytest.mark.parametrize(
    ("x", "layout", "message"),
    [
        (
            torch.zeros(3, 5, 7),
            ["B", 3, "H", "W"],
            r"image must have shape \(B, 3, H, W\), got shape \(3, 5, 7\)",
        ),
        (torch.zeros(1, 4, 5, 7), ["B", 3, "H", "W"], r"got shape \(1, 4, 5, 7\)"),
        (np.zeros((4, 5)), ["N", "N"], r"image must have shape \(N, N\), got shape \(4, 5\)"),
    ],
)
def test_check_shape_errors(x, layout, message):
    with pytest.raises(InputError, match=message):
        check_shape(x, layout, "image")


def test_check_count():
    assert check_count(np.int64(3), "k") == 3 and check_count(0, "k", minimum=0) == 0
    for bad in (0, 2.0, True, "3", None):
        with pytest.raises(InputError, match=r"k must be an int >= 1, got "):
            check_count(bad, "k")


def test_check_size():
    assert check_size((np.int64(4), 5)) == (4, 5) and check_size(torch.Size([2, 3])) == (2, 3)
    for bad in ((4,), (4, 0), (4, 2.0), (True, 2), 4, "ab"):
        with pytest.raises(InputError, match=r"image_size must be \(H, W\) with positive ints"):
            check_size(bad)


def test_metrics_and_postprocess_raise_the_projects_errors():
    from pixelgroup.errors import InputTypeError, PixelgroupError
    from pixelgroup.metrics import InstanceEvaluator, InstancePrediction, InstanceTarget
    from pixelgroup.postprocess.boundary_nms import boundary_nms

    with pytest.raises(InputTypeError, match="must be a numpy array or torch.Tensor"):
        InstanceEvaluator().process([InstancePrediction([[1]], [0.5])], [InstanceTarget([[1]])])
    with pytest.raises(PixelgroupError, match="radius must be an int >= 1, got 0"):
        boundary_nms(np.zeros((4, 4)), radius=0)
