"""Labels written tile by tile (tasks/predictions.py::write_tiled_labels): the same map as the
in-memory join (postprocess/tiled_grouping.py::join_tiles), a tiled BigTIFF of 16- or 32-bit
ids, atomic, never replacing a file without ``overwrite``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch
from skimage import draw

from pixelgroup.errors import DataError
from pixelgroup.postprocess.tiled_grouping import TileGroups, join_tiles, tile_groups
from pixelgroup.postprocess.tiles import plan_tiles
from pixelgroup.tasks.predictions import LABEL_TILE, write_tiled_labels
from tests.postprocess.test_tiled_grouping import BANDWIDTH, _directions, _embedding


@pytest.fixture(scope="module")
def scene_groups():
    """The groups of each tile of an embedding of 40 random rectangles (some across seams,
    some touching), each region's labels its rectangles numbered 0.. (a perfect grouping)."""
    size, generator = (300, 280), np.random.default_rng(0)
    ids = torch.zeros(size, dtype=torch.int64)
    for k in range(1, 41):
        top, left = generator.integers(0, size[0] - 30), generator.integers(0, size[1] - 30)
        ids[top : top + generator.integers(6, 30), left : left + generator.integers(6, 30)] = k
    embedding = _embedding(ids, _directions(41, dim=128))
    groups = []
    for t in plan_tiles(size, 64, 32):
        rows, cols = t.region.slices()
        labels = torch.unique(ids[rows, cols], return_inverse=True)[1]
        groups.append(tile_groups(t.core, t.region, embedding[:, rows, cols], labels))
    return groups


def test_the_written_labels_are_the_in_memory_join(tmp_path, scene_groups):
    groups = scene_groups
    expected, expected_scores = join_tiles(
        groups, (300, 280), bandwidth=BANDWIDTH, background_is_group=True
    )
    paths, scores = write_tiled_labels(
        groups, (300, 280), tmp_path, "slide", bandwidth=BANDWIDTH, background_is_group=True
    )
    path = paths[0]
    assert paths == [tmp_path / "slide_labels.tif", tmp_path / "slide.geojson"]
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        assert tif.is_bigtiff and page.is_tiled
        assert (page.tilelength, page.tilewidth) == (LABEL_TILE, LABEL_TILE)
        labels = page.asarray()
    assert labels.dtype == np.uint16 and labels.shape == (300, 280)
    assert np.array_equal(labels, expected.numpy())
    torch.testing.assert_close(scores, expected_scores)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slide.geojson", "slide_labels.tif"]
    # QuPath's detections: one polygon per instance, whose filled outline is its mask
    collection = json.loads(paths[1].read_text())
    features = collection["features"]
    assert collection["type"] == "FeatureCollection" and len(features) == int(labels.max())
    for feature in features:
        k = feature["properties"]["id"]
        assert feature["properties"]["objectType"] == "detection"
        assert feature["properties"]["score"] == pytest.approx(float(scores[k - 1]))
        ring = np.array(feature["geometry"]["coordinates"][0])
        assert (ring[0] == ring[-1]).all()
        filled = draw.polygon2mask(labels.shape, ring[:, ::-1] - 0.5)  # (row, col) of centres
        mask = labels == k
        assert (filled & mask).sum() >= 0.9 * mask.sum() and (filled & ~mask).sum() == 0, k


def test_past_65535_instances_the_ids_are_32_bit(tmp_path):
    size = (256, 272)  # 69,632 one-pixel instances, no halo: nothing joins
    direction = torch.tensor([[1.0, 0.0]])
    groups = []
    for t in plan_tiles(size, 64, 0):
        h, w = t.core.size
        labels = torch.arange(1, h * w + 1).reshape(h, w)
        centers = direction.expand(h * w + 1, 2)
        groups.append(TileGroups(t.core, t.region, labels, centers, torch.ones(h * w + 1)))
    paths, scores = write_tiled_labels(
        groups,
        size,
        tmp_path,
        "many",
        bandwidth=BANDWIDTH,
        background_is_group=False,
        geojson=False,
    )
    labels = tifffile.imread(paths[0])
    assert labels.dtype == np.uint32 and len(scores) == 69_632
    assert len(np.unique(labels)) == 69_632 and labels.min() == 1


def test_an_existing_file_is_kept_without_overwrite_and_on_failure(tmp_path, scene_groups):
    groups = scene_groups
    path = tmp_path / "slide_labels.tif"
    path.write_bytes(b"mine")
    with pytest.raises(DataError, match="slide_labels.tif exists; pass --overwrite"):
        write_tiled_labels(
            groups, (300, 280), tmp_path, "slide", bandwidth=BANDWIDTH, background_is_group=True
        )

    def failing():
        yield from groups[:3]
        raise RuntimeError("the model ran out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        write_tiled_labels(
            failing(),
            (300, 280),
            tmp_path,
            "slide",
            bandwidth=BANDWIDTH,
            background_is_group=True,
            overwrite=True,
        )
    assert path.read_bytes() == b"mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slide_labels.tif"]
    write_tiled_labels(
        groups,
        (300, 280),
        tmp_path,
        "slide",
        bandwidth=BANDWIDTH,
        background_is_group=True,
        overwrite=True,
    )
    assert tifffile.imread(path).shape == (300, 280)
