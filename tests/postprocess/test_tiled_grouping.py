"""Grouping tile by tile, joined across tiles in embedding space
(postprocess/tiled_grouping.py), on embeddings built with known objects."""

from __future__ import annotations

import pytest
import torch

from pixelgroup.metrics.partition import partition_agreement
from pixelgroup.postprocess import extract_instances
from pixelgroup.postprocess.tiled_grouping import TileGroups, join_tiles, tile_groups
from pixelgroup.postprocess.tiles import plan_tiles

BANDWIDTH = 0.2


def _embedding(ids: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """``(D, H, W)``: every pixel of object k (``ids (H, W)``) is ``directions[k]``."""
    return directions[ids].permute(2, 0, 1).contiguous()


def _directions(count: int, dim: int = 8) -> torch.Tensor:
    """``(count, dim)`` unit vectors pairwise at cosine <= 0.5 (well apart at δ = 0.2)."""
    generator = torch.Generator().manual_seed(0)
    while True:
        v = torch.nn.functional.normalize(torch.randn(count, dim, generator=generator), dim=1)
        if bool(((v @ v.T) - torch.eye(count) <= 0.5).all()):
            return v


def _tiled(embedding, tile, halo, foreground=None):
    size = (int(embedding.shape[1]), int(embedding.shape[2]))

    def groups():
        for t in plan_tiles(size, tile, halo):
            rows, cols = t.region.slices()
            fg = None if foreground is None else foreground[rows, cols]
            labels, _ = extract_instances(
                embedding[:, rows, cols], bandwidth=BANDWIDTH, min_area=1, foreground=fg
            )
            yield tile_groups(t.core, t.region, embedding[:, rows, cols], labels)

    return join_tiles(groups(), size, bandwidth=BANDWIDTH, background_is_group=foreground is None)


def _scene() -> torch.Tensor:
    """64 x 64 ids: 0 background, 1 a square across the corner of four 32-px tiles, 2 a bar
    across the vertical seam, 3 a bar across the horizontal seam, 4 a blob inside one tile."""
    ids = torch.zeros(64, 64, dtype=torch.int64)
    ids[22:42, 20:44] = 1
    ids[2:12, 10:54] = 2
    ids[10:56, 52:60] = 3
    ids[48:58, 4:14] = 4
    return ids


@pytest.mark.parametrize(("tile", "halo"), [(32, 16), (16, 16), (16, 32), (48, 32)])
def test_objects_across_seams_and_corners_come_out_whole(tile, halo):
    ids = _scene()
    embedding = _embedding(ids, _directions(5))
    labels, scores = _tiled(embedding, tile, halo)
    whole, _ = extract_instances(embedding, bandwidth=BANDWIDTH, min_area=1)
    assert partition_agreement(labels, whole) == 1.0
    assert partition_agreement(labels, ids) == 1.0
    assert sorted(labels.unique().tolist()) == [0, 1, 2, 3, 4]
    assert bool((labels[ids == 0] == 0).all())  # the largest group is the background
    assert scores.shape == (4,) and bool((scores > 0.99).all())


def test_look_alikes_that_never_meet_stay_apart():
    ids = torch.zeros(32, 128, dtype=torch.int64)
    ids[8:20, 4:14], ids[8:20, 110:120] = 1, 2  # one look, four tiles apart
    directions = _directions(2)
    embedding = _embedding(ids.clamp(max=1), directions)  # object 2 looks like object 1
    labels, _ = _tiled(embedding, 32, 16)
    assert labels[10, 6] != labels[10, 112]
    assert labels[10, 6] > 0 and labels[10, 112] > 0
    assert partition_agreement(labels, ids) == 1.0


def test_regions_without_overlap_join_nothing():
    ids = torch.zeros(32, 64, dtype=torch.int64)
    ids[4:28, 20:44] = 1
    groups = []
    for t in plan_tiles((32, 64), 32, 0):
        rows, cols = t.region.slices()
        embedding = _embedding(ids, _directions(2))[:, rows, cols]
        labels, _ = extract_instances(embedding, bandwidth=BANDWIDTH, min_area=1)
        groups.append(tile_groups(t.core, t.region, embedding, labels))
    labels, _ = join_tiles(groups, (32, 64), bandwidth=BANDWIDTH, background_is_group=True)
    assert labels[10, 25] != labels[10, 40]  # a halo of 0: the seam splits the object


def test_touching_objects_across_a_seam_stay_apart():
    ids = torch.zeros(32, 64, dtype=torch.int64)
    ids[4:28, 10:32], ids[4:28, 32:54] = 1, 2  # they touch on the seam at column 32
    labels, _ = _tiled(_embedding(ids, _directions(3)), 32, 16)
    assert partition_agreement(labels, ids) == 1.0


def test_semantic_background_stays_zero():
    ids = _scene()
    foreground = ids > 0
    # the background's embedding is noise: only the foreground mask says what it is
    noise = torch.nn.functional.normalize(torch.randn(8, 64, 64), dim=0)
    embedding = torch.where(foreground, _embedding(ids, _directions(5)), noise)
    labels, _ = _tiled(embedding, 32, 16, foreground=foreground.float())
    assert bool((labels[~foreground] == 0).all())
    assert partition_agreement(labels, ids) == 1.0


def test_tile_groups_checks_the_region_and_gives_unit_centres():
    t = plan_tiles((40, 40), 16, 16)[4]  # the middle tile: region 32 x 32 of 8..40
    assert t.region.size == (32, 32)
    embedding = _embedding(_scene()[:40, :40], _directions(5))
    rows, cols = t.region.slices()
    labels = _scene()[rows, cols]
    groups = tile_groups(t.core, t.region, embedding[:, rows, cols], labels)
    assert isinstance(groups, TileGroups)
    norms = groups.centers.norm(dim=1)
    present = torch.bincount(labels.flatten(), minlength=len(norms)) > 0
    torch.testing.assert_close(norms[present], torch.ones(int(present.sum())))
    with pytest.raises(ValueError, match=r"labels must cover the tile's region \(32, 32\)"):
        tile_groups(t.core, t.region, embedding[:, rows, cols], labels[:-1])


def test_a_stride_4_embedding_gives_the_labels_centres():
    t = plan_tiles((64, 64), 32, 0)[0]
    ids = _scene()[:32, :32]
    embedding = _embedding(ids, _directions(5))[:, 2::4, 2::4]  # cell centres: (D, 8, 8)
    groups = tile_groups(t.core, t.window, embedding, ids)
    torch.testing.assert_close(groups.centers[1], _directions(5)[1])
