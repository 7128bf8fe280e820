"""The tile plan (cores partition the image, windows are cores plus a clipped halo) and the
stitching of the windows' cores (postprocess/tiles.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pixelgroup.models import EmbeddingOutput
from pixelgroup.postprocess.tiles import (
    GROUP_IMAGE_SIDE,
    Box,
    check_tile_sizes,
    plan_blocks,
    plan_tiles,
    stitch_cores,
)


@pytest.mark.parametrize("size", [(100, 70), (16, 16), (64, 32), (5, 200)])
@pytest.mark.parametrize(("tile", "halo"), [(16, 0), (32, 16), (48, 64)])
def test_cores_partition_the_image_and_halos_are_clipped(size, tile, halo):
    h, w = size
    tiles = plan_tiles(size, tile, halo)
    covered = torch.zeros(size, dtype=torch.int64)
    for t in tiles:
        covered[t.core.slices()] += 1
        assert t.core.intersect(t.window) == t.core  # the core lies in its window
        assert t.window == Box(
            max(0, t.core.top - halo),
            max(0, t.core.left - halo),
            min(h, t.core.bottom + halo),
            min(w, t.core.right + halo),
        )
        assert t.core.top % tile == 0 and t.core.left % tile == 0
        assert max(t.core.size) <= tile
    assert bool((covered == 1).all())
    assert [(t.row, t.col) for t in tiles] == sorted((t.row, t.col) for t in tiles)


@pytest.mark.parametrize(
    ("tile", "halo", "match"),
    [
        (0, 0, "tile must be a multiple of 16 pixels >= 16, got 0"),
        (24, 0, "tile"),
        (32, 8, "halo must be a multiple of 16 pixels >= 0, got 8"),
        (32, -16, "halo"),
        (True, 0, "tile"),
        (32.0, 0, "tile"),
    ],
)
def test_bad_tile_sizes_are_errors(tile, halo, match):
    with pytest.raises(ValueError, match=match):
        check_tile_sizes(tile, halo)
    with pytest.raises(ValueError, match=match):
        plan_tiles((64, 64), tile, halo)


def _pooled(image: torch.Tensor, stride: int) -> EmbeddingOutput:
    """A position-independent "model": ``stride`` x ``stride`` average pooling (ceil mode)."""
    out = F.avg_pool2d(image, stride, ceil_mode=True) if stride > 1 else image
    return EmbeddingOutput(embedding=out, raw=out * 2)


@pytest.mark.parametrize("stride", [1, 4, 8])
def test_stitched_cores_equal_the_whole_output(stride):
    image = torch.rand(2, 3, 75, 90)
    tiles = plan_tiles((75, 90), 32, 16)
    windows = (
        (t, _pooled(image[..., t.window.slices()[0], t.window.slices()[1]], stride)) for t in tiles
    )
    stitched = stitch_cores(windows, (75, 90))
    whole = _pooled(image, stride)
    assert stitched.semantic is None
    # pooling cells lie inside a window (corners are multiples of 16), except the last
    # row's and column's ceil-mode cells, which windows clipped at the border see whole too
    torch.testing.assert_close(stitched.embedding, whole.embedding)
    torch.testing.assert_close(stitched.raw, whole.raw)


def test_stitches_a_plain_tensor_and_refuses_nothing():
    image = torch.rand(1, 1, 40, 40)
    tiles = plan_tiles((40, 40), 16, 0)
    got = stitch_cores(
        ((t, image[..., t.window.slices()[0], t.window.slices()[1]]) for t in tiles), (40, 40)
    )
    assert torch.equal(got, image)
    with pytest.raises(ValueError, match="no tiles"):
        stitch_cores([], (40, 40))


@pytest.mark.parametrize(("halo", "margin"), [(0, 0), (16, 8), (32, 16), (48, 24), (64, 32)])
def test_a_region_is_the_core_grown_by_half_the_halo_in_the_window(halo, margin):
    for t in plan_tiles((100, 130), 32, halo):
        assert t.region == t.core.grown(margin, t.window)
        assert t.core.intersect(t.region) == t.core
        assert t.region.intersect(t.window) == t.region


@pytest.mark.parametrize("image_size", [None, (1500, 2000), (4000, 4096), (8000, 8192), (500, 512)])
def test_blocks_of_an_image_seen_at_most_8x_smaller_are_unchanged(image_size):
    size = (1500, 2000) if image_size is None else (1000, 1024)
    assert plan_blocks(size, image_size=image_size) == plan_blocks(size)


@pytest.mark.parametrize("shrink", [12, 30, 100, 250, 600])
def test_blocks_of_an_image_seen_much_smaller_span_a_bounded_part_of_it(shrink):
    """A block is labelled at the image's resolution: its region spans at most about
    GROUP_IMAGE_SIDE image pixels (or 48 seen pixels: a core and two margins of 16) however
    small the image is seen."""
    size = (1024, 900)
    image_size = (1024 * shrink, 900 * shrink)
    blocks = plan_blocks(size, image_size=image_size)
    assert len(blocks) > 1
    covered = torch.zeros(size, dtype=torch.int64)  # the cores partition the image
    for b in blocks:
        assert max(b.window.size) * shrink <= max(GROUP_IMAGE_SIDE, 48 * shrink)
        assert b.core.intersect(b.window) == b.core
        covered[b.core.slices()] += 1
    assert bool((covered == 1).all())


def test_explicit_sides_are_kept_for_an_image_seen_at_its_size():
    assert len(plan_blocks((9000, 9000), whole_above=10000)) == 1
