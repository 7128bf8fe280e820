"""Windows of an image resized for the model, read without the whole image
(data/resized_windows.py): equal to torch's antialiased bilinear resize of the whole image,
reading only the source pixels under each window, a strip at a time."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from pixelgroup.data import resized_windows
from pixelgroup.data.resized_windows import ResizedWindows, resize_matrix, source_span
from pixelgroup.postprocess.tiles import Box


class Recorded:
    """An image in memory that records the boxes read from it."""

    def __init__(self, pixels: torch.Tensor) -> None:
        self.pixels, self.size, self.channels = pixels, tuple(pixels.shape[1:]), len(pixels)
        self.boxes: list[Box] = []

    def read(self, box: Box) -> torch.Tensor:
        self.boxes.append(box)
        rows, cols = box.slices()
        return self.pixels[:, rows, cols]


def _whole(pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The slow reference: the whole image resized at once, in float64."""
    return F.interpolate(
        pixels[None].double(), size=size, mode="bilinear", antialias=True, align_corners=False
    )[0].clamp(0, 1)


@settings(max_examples=60, deadline=None)
@given(
    source=st.tuples(st.integers(2, 90), st.integers(2, 90)),
    # from 2: torch's antialiased resize to one column while enlarging the rows gives every
    # row the same value ((2, 2) -> (3, 1): 0.5, 0.5, 0.5 of rows averaging 0.5 and 2.5), not
    # a reference there
    size=st.tuples(st.integers(2, 120), st.integers(2, 120)),
    corner=st.tuples(st.floats(0, 0.99), st.floats(0, 0.99)),
    extent=st.tuples(st.floats(0.01, 1), st.floats(0.01, 1)),
    strip=st.sampled_from([1, 7, 1 << 24]),
    seed=st.integers(0, 2**16),
)
def test_a_window_equals_the_whole_resize_and_reads_only_its_span(
    source, size, corner, extent, strip, seed
):
    pixels = torch.rand((2, *source), generator=torch.Generator().manual_seed(seed))
    top, left = int(corner[0] * size[0]), int(corner[1] * size[1])
    bottom = min(size[0], top + max(1, round(extent[0] * size[0])))
    right = min(size[1], left + max(1, round(extent[1] * size[1])))
    box = Box(top, left, bottom, right)
    image = Recorded(pixels)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(resized_windows, "STRIP_VALUES", strip)
        window = ResizedWindows(image, size).read(box)
    rows, cols = box.slices()
    assert window.shape == (2, bottom - top, right - left) and window.dtype == torch.float32
    whole = _whole(pixels, size)[:, rows, cols]
    torch.testing.assert_close(window.double(), whole, atol=1e-6, rtol=0)
    span_rows = source_span(source[0], size[0], top, bottom)
    span_cols = source_span(source[1], size[1], left, right)
    for b in image.boxes:  # only the pixels under the window, in strips that tile them
        assert span_rows.start <= b.top < b.bottom <= span_rows.stop
        assert (b.left, b.right) == (span_cols.start, span_cols.stop)
    assert sum(b.bottom - b.top for b in image.boxes) == len(span_rows)


def test_resize_matrix_rows_are_torch_weights():
    """Each row of the full matrix sums to 1 and reproduces torch's 1-D antialiased resize,
    shrinking and enlarging."""
    for n_in, n_out in ((10, 3), (7, 7), (5, 13), (100, 37)):
        m = resize_matrix(n_in, n_out, range(n_out), range(n_in))
        assert m.shape == (n_out, n_in) and bool((m >= 0).all())
        torch.testing.assert_close(m.sum(1), torch.ones(n_out, dtype=torch.float64))
        x = torch.rand(n_in, dtype=torch.float64)
        columns = x[None, None, :, None].expand(1, 1, n_in, 3)  # (torch treats width 1 apart)
        ref = F.interpolate(columns, size=(n_out, 3), mode="bilinear", antialias=True)[0, 0, :, 0]
        torch.testing.assert_close(m @ x, ref)


def test_a_strip_bounds_the_values_read_at_once(monkeypatch):
    """A 600 x 400 image shrunk to 60 x 40: each read holds at most STRIP_VALUES values."""
    monkeypatch.setattr(resized_windows, "STRIP_VALUES", 3 * 400 * 25)
    image = Recorded(torch.rand(3, 600, 400))
    out = ResizedWindows(image, (60, 40)).read(Box(0, 0, 60, 40))
    assert len(image.boxes) == 24 and all(b.size[0] == 25 for b in image.boxes)
    torch.testing.assert_close(out.double(), _whole(image.pixels, (60, 40)), atol=1e-6, rtol=0)


def test_a_bad_size_is_refused():
    with pytest.raises(ValueError, match="size must be"):
        ResizedWindows(Recorded(torch.rand(1, 4, 4)), (0, 3))


def test_one_output_column_averages_each_resized_row():
    """(2, 2) -> (3, 1): each output row the mean of the resized rows (0.5, 1.5, 2.5), where
    torch's antialiased resize gives 0.5 three times."""
    image = Recorded(torch.tensor([[[0.0, 1.0], [2.0, 3.0]]]) / 4)
    out = ResizedWindows(image, (3, 1)).read(Box(0, 0, 3, 1))
    torch.testing.assert_close(out[0, :, 0], torch.tensor([0.5, 1.5, 2.5]) / 4)
