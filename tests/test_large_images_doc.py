"""docs/large_images.md's tested commands run as written on a tiny slide (a TIFF and an
OME-Zarr), the tiled labels they write agree with the whole image's, and the labels of the
images read by window equal those of the image read whole and tiled."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import zarr
from PIL import Image

from pixelgroup.cli import main
from pixelgroup.data.synthetic_cells import draw_cells
from pixelgroup.metrics.partition import partition_agreement
from tests.test_own_data_doc import doc_commands

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "large_images.md"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_commands_run_and_tiles_agree_with_the_whole_image(tmp_path, monkeypatch):
    commands = doc_commands(DOC.read_text())
    assert len(commands) == 4 and all(c[:2] == ["pixelgroup", "predict"] for c in commands)
    cells = draw_cells(np.random.default_rng(3), (160, 192), count=28)
    tifffile.imwrite(tmp_path / "slide.tif", cells.image)
    group = zarr.open_group(tmp_path / "slide.ome.zarr", mode="w")
    image = cells.image
    group.create_array("0", shape=image.shape, chunks=(64, 64), dtype=image.dtype)[:] = image
    axes = [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    group.attrs["multiscales"] = [{"axes": axes, "datasets": [{"path": "0"}]}]
    (tmp_path / "runs" / "my_cells").mkdir(parents=True)
    shutil.copy(
        ROOT / "tests" / "fixtures" / "cells_small.pt", tmp_path / "runs/my_cells/checkpoint.pt"
    )
    monkeypatch.chdir(tmp_path)
    for command in commands:
        assert main([*command[1:], "--quiet"]) == 0, command
    tiled, whole = (
        torch.from_numpy(np.array(Image.open(tmp_path / d / "slide_labels.png")).astype(np.int64))
        for d in ("tiled", "whole")
    )
    assert partition_agreement(tiled, whole) >= 0.99
    for name in ("slide_labels.tif", "slide.ome_labels.tif"):
        assert np.array_equal(tifffile.imread(tmp_path / "big" / name), tiled.numpy()), name
    records = json.loads((tmp_path / "big" / "slide.json").read_text())
    expected = json.loads((tmp_path / "tiled" / "slide.json").read_text())
    assert sorted(records, key=json.dumps) == sorted(expected, key=json.dumps)
    for d in ("big", "tiled"):
        assert np.array_equal(
            np.array(Image.open(tmp_path / "big" / "slide_overlay.png")),
            np.array(Image.open(tmp_path / d / "slide_overlay.png")),
        )
