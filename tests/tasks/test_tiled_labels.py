"""Labels written tile by tile (tasks/predictions.py::write_tiled_labels): the same map as the
in-memory join (postprocess/tiled_grouping.py::join_tiles), a tiled BigTIFF of 16- or 32-bit
ids, atomic, never replacing a file without ``overwrite``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from skimage import draw

from pixelgroup.data.coco import masks_to_results
from pixelgroup.data.lazy_image import LazyImage
from pixelgroup.errors import DataError
from pixelgroup.postprocess.tiled_grouping import TileGroups, join_tiles, tile_groups
from pixelgroup.postprocess.tiles import plan_tiles
from pixelgroup.tasks.predictions import LABEL_TILE, write_tiled_labels
from pixelgroup.viz.colors import overlay
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
    assert paths == [tmp_path / f"slide{end}" for end in ("_labels.tif", ".geojson", ".json")]
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        assert tif.is_bigtiff and page.is_tiled
        assert (page.tilelength, page.tilewidth) == (LABEL_TILE, LABEL_TILE)
        labels = page.asarray()
    assert labels.dtype == np.uint16 and labels.shape == (300, 280)
    assert np.array_equal(labels, expected.numpy())
    torch.testing.assert_close(scores, expected_scores)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "slide.geojson",
        "slide.json",
        "slide_labels.tif",
    ]
    # COCO results: the records of the label map read whole, from bounding-box crops
    records = sorted(json.loads(paths[2].read_text()), key=lambda r: r["score"])
    ids = np.arange(1, int(labels.max()) + 1)
    whole = masks_to_results("slide", labels[None] == ids[:, None, None], scores.numpy())
    assert records == sorted(whole, key=lambda r: r["score"])
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
        coco=False,
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


def test_the_overlay_is_the_image_and_labels_at_a_stride(tmp_path, scene_groups, monkeypatch):
    """With the image read by window, STEM_overlay.png is the overlay of every s-th row and
    column of the image and the labels (s = 3 for a 300 px side at OVERLAY_SIDE 100)."""
    monkeypatch.setattr("pixelgroup.tasks.predictions.OVERLAY_SIDE", 100)
    pixels = np.random.default_rng(1).integers(0, 256, (300, 280, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "slide.tif", pixels, photometric="rgb")
    image = LazyImage(tmp_path / "slide.tif", 3)
    paths, _ = write_tiled_labels(
        scene_groups,
        (300, 280),
        tmp_path / "out",
        "slide",
        bandwidth=BANDWIDTH,
        background_is_group=True,
        geojson=False,
        coco=False,
        image=image,
    )
    assert [p.name for p in paths] == ["slide_labels.tif", "slide_overlay.png"]
    labels = tifffile.imread(paths[0])
    expected = overlay(pixels[::3, ::3] / 255.0, labels[::3, ::3])
    got = np.asarray(Image.open(paths[1]))
    assert got.shape == (100, 94, 3)
    assert np.abs(got.astype(int) - np.round(expected * 255)).max() <= 1
