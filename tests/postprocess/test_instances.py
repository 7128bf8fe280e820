"""extract_instances: label maps at the image's size from a strided embedding, the semantic
foreground instead of "largest group = background", and the blockwise bilinear resize."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from pixelgroup.postprocess import extract_instances
from pixelgroup.postprocess import instances as module

E0, E1, E2 = torch.eye(3)


def _blocks(h: int = 8, w: int = 8) -> torch.Tensor:
    """Background E0 with a 4 x 4 block E1 at (0, 0) and a 2 x 4 block E2 at (6, 4)."""
    emb = E0[:, None, None].repeat(1, h, w)
    emb[:, :4, :4] = E1[:, None, None]
    emb[:, 6:8, 4:8] = E2[:, None, None]
    return emb


@pytest.mark.parametrize("upsample", ["centers", "nearest"])
def test_labels_at_the_image_size(upsample):
    labels, scores = extract_instances(
        _blocks(), num_iters=0, min_area=4, image_size=(32, 32), upsample=upsample
    )
    assert labels.shape == (32, 32) and labels.dtype == torch.int64 and len(scores) == 2
    assert (labels[:15, :15] == labels[0, 0]).all() and labels[0, 0] > 0
    assert (labels[25:, 17:] == labels[31, 31]).all() and labels[31, 31] > 0
    background = int((labels == 0).sum()) - (32 * 32 - 16 * 16 - 8 * 16)
    assert background == 0 if upsample == "nearest" else 0 <= background <= 4  # round corners
    # min_area counts image pixels (144: 9 embedding pixels), the 128-pixel instance goes
    labels, scores = extract_instances(
        _blocks(), num_iters=0, min_area=144, image_size=(32, 32), upsample=upsample
    )
    assert len(labels.unique()) == 2 and len(scores) == 1


def test_centers_follow_the_embedding_between_its_pixels():
    """An edge between embedding pixels lands mid-way in the image with "centers", on the
    embedding pixel grid with "nearest"."""
    emb = E0[:, None, None].repeat(1, 4, 4)
    emb[:, :, 2:] = E1[:, None, None]
    emb[:, :, 1] = F.normalize(E0 + 0.2 * E1, dim=0)[:, None]  # mostly E0, a little E1
    kw = {"num_iters": 0, "min_area": 1, "image_size": (4, 16), "bandwidth": 0.3}
    centers = extract_instances(emb, **kw)[0]
    nearest = extract_instances(emb, upsample="nearest", **kw)[0]
    assert (nearest[0] == nearest[0, 0]).sum() == 8  # the pixel grid: columns 0..1 of 4
    assert (centers[0] == centers[0, 0]).sum() == 8  # the edge: bilinear midpoint


def test_semantic_foreground_replaces_the_largest_group():
    """A crowded image: the instance is larger than the background."""
    emb = E1[:, None, None].repeat(1, 8, 8)
    emb[:, :, 6:] = E0[:, None, None]  # background: 16 of 64 pixels
    fg = torch.ones(8, 8)
    fg[:, 6:] = 0.1
    largest, _ = extract_instances(emb, num_iters=0, min_area=1)
    assert (largest == 0).sum() == 48  # the instance taken for the background
    for upsample in ("centers", "nearest"):
        labels, scores = extract_instances(
            emb, num_iters=0, min_area=1, foreground=fg, image_size=(16, 16), upsample=upsample
        )
        assert (labels == 0).sum() == 64 and (labels == 1).sum() == 192 and len(scores) == 1
    everything, scores = extract_instances(emb, num_iters=0, min_area=1, foreground=fg > -1)
    assert everything.unique().tolist() == [1, 2] and len(scores) == 2
    nothing, scores = extract_instances(emb, num_iters=0, foreground=fg < -1, image_size=(9, 9))
    assert not nothing.any() and nothing.shape == (9, 9) and len(scores) == 0


def test_stride_and_image_size_together():
    labels, scores = extract_instances(
        _blocks(16, 16), num_iters=0, min_area=4, stride=2, image_size=(40, 40)
    )
    assert labels.shape == (40, 40) and len(scores) == 2


@pytest.mark.parametrize("step", [1, 3])  # a few rows per block
def test_blockwise_resize_matches_interpolate(step):
    for h, w, size in [(6, 5, (48, 40)), (7, 9, (13, 50)), (8, 8, (5, 3)), (3, 4, (3, 9))]:
        x = torch.randn(3, h, w, dtype=torch.float64)
        asked = []

        def rows_of(lo, hi, x=x, asked=asked):
            asked.append((lo, hi))
            return x[:, lo:hi]

        blocks = module._rows(rows_of, (h, w), size, step)
        got = torch.cat([block for _, _, block in blocks], dim=1)
        if size[0] > h:  # upsampled a few rows at a time: never all the maps' rows at once
            assert max(hi - lo for lo, hi in asked) < h
        want = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]
        torch.testing.assert_close(got, want)


@settings(max_examples=40, deadline=None)
@given(
    grid=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    size=st.tuples(st.integers(1, 60), st.integers(1, 60)),
    k=st.integers(1, 6),
    with_foreground=st.booleans(),
    chunk=st.sampled_from([1, 50, 1 << 22]),
    smooth=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_assignment_equals_argmax_of_the_resized_cosine_maps(
    grid, size, k, with_foreground, chunk, smooth, seed
):
    """The slow reference: the K cosine maps (and the foreground) resized whole by
    F.interpolate, the argmax over the allowed centres, -1 where the foreground is <= 0.5.
    ``smooth``: an embedding that varies slowly, so that neighbouring cells share their
    nearest centre (pixels between them are not scored) as in a real embedding's groups."""
    g = torch.Generator().manual_seed(seed)
    embedding = torch.randn(3, *((3, 3) if smooth else grid), generator=g, dtype=torch.float64)
    if smooth:
        embedding = F.interpolate(embedding[None], size=grid, mode="bilinear")[0]
    embedding = F.normalize(embedding, dim=0)
    centers = F.normalize(torch.randn(k, 3, generator=g, dtype=torch.float64), dim=1)
    allowed = torch.rand(k, generator=g) < 0.7
    foreground = torch.rand(grid, generator=g, dtype=torch.float64) if with_foreground else None
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "_CHUNK", chunk)
        patch.setattr(module, "_SCORES", chunk)
        got = module._assign_to_centers(centers, embedding, foreground, size, allowed)

    def resized(maps: torch.Tensor) -> torch.Tensor:
        return F.interpolate(maps[None], size=size, mode="bilinear", align_corners=False)[0]

    cosine = resized(torch.einsum("kd,dhw->khw", centers, embedding))
    want = cosine.masked_fill(~allowed[:, None, None], float("-inf")).argmax(0)
    if with_foreground:
        want[resized(foreground[None])[0] <= 0.5] = -1
    assert got.shape == size and got.dtype == torch.int64
    assert torch.equal(got, want)


def test_errors():
    emb = _blocks()
    with pytest.raises(ValueError, match=r"upsample must be one of \('centers', 'nearest'\)"):
        extract_instances(emb, upsample="bicubic")
    with pytest.raises(ValueError, match=r"image_size must be \(H, W\) with positive ints"):
        extract_instances(emb, image_size=(0, 4))
    with pytest.raises(ValueError, match=r"foreground must be \(H, W\) = \(8, 8\) like the emb"):
        extract_instances(emb, foreground=torch.ones(4, 4))
