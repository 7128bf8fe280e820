"""Prediction of images read window by window, labels written tile by tile
(engine/predict.py::predict_files(lazy=...), ``pixelgroup predict --lazy``): the same labels
as the image read whole and tiled; chosen by size; broken inputs exit 2 in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

from pixelgroup.cli import main
from pixelgroup.data.synthetic_cells import draw_cells
from pixelgroup.engine import load_model, predict_files
from pixelgroup.engine import predict as predict_module
from tests._tiny import group_in_blocks

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CELLS = Path(__file__).resolve().parents[1] / "fixtures" / "cells_small.pt"
TILES = ["--tile", "64", "--halo", "32", "--quiet"]


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    """A 160 x 192 16-bit image of synthetic nuclei as a tiled TIFF and as an OME-Zarr."""
    root = tmp_path_factory.mktemp("slide")
    image = draw_cells(np.random.default_rng(3), (160, 192), count=28).image
    tifffile.imwrite(root / "slide.tif", image, tile=(32, 32))
    group = zarr.open_group(root / "slide.ome.zarr", mode="w")
    group.create_array("0", shape=image.shape, chunks=(48, 48), dtype=image.dtype)[:] = image
    group.attrs["multiscales"] = [
        {"axes": [{"name": "y"}, {"name": "x"}], "datasets": [{"path": "0"}]}
    ]
    return root


@pytest.mark.parametrize("blocks", [False, True])
@pytest.mark.parametrize("max_size", [None, 144])
def test_labels_by_window_equal_the_whole_read_tiled_image(
    slide, tmp_path, blocks, max_size, monkeypatch
):
    """Also for an image the model sees resized (``--max-size 144``: 192 x 160 -> 144 x 120,
    read and resized window by window, data/resized_windows.py), grouped at the image's
    resolution block by block as the whole read is."""
    if blocks:  # grouped in 3 x 3 blocks of 64 px (margins of 16), not at once
        group_in_blocks(monkeypatch, whole_above=100, block=64, margin=16)
    options = [*TILES, *([] if max_size is None else ["--max-size", str(max_size)])]
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(CELLS),
                str(slide / "slide.tif"),
                "-o",
                str(tmp_path / "whole"),
                *options,
            ]
        )
        == 0
    )
    expected = np.array(Image.open(tmp_path / "whole" / "slide_labels.png"))
    for name in ("slide.tif", "slide.ome.zarr"):
        out = tmp_path / name
        assert (
            main(
                [
                    "predict",
                    "--checkpoint",
                    str(CELLS),
                    str(slide / name),
                    "-o",
                    str(out),
                    "--lazy",
                    *options,
                ]
            )
            == 0
        )
        labels = tifffile.imread(out / labels_name(name))
        assert labels.dtype == np.uint16 and expected.max() > 10
        assert np.array_equal(labels, expected), name
        stem = Path(name).stem
        assert sorted(p.name for p in out.iterdir()) == [
            f"{stem}.geojson",
            f"{stem}.json",
            f"{stem}_labels.tif",
            f"{stem}_overlay.png",
        ]
        # the COCO results and the overlay (not downscaled at this size) of the whole read
        records = json.loads((out / f"{stem}.json").read_text())
        whole = json.loads((tmp_path / "whole" / "slide.json").read_text())
        for r in whole:
            r["image_id"] = stem
        for r in (*records, *whole):  # a resized window is equal to float rounding
            r["score"] = round(r["score"], 5)
        assert sorted(records, key=json.dumps) == sorted(whole, key=json.dumps), name
        overlay = np.array(Image.open(out / f"{stem}_overlay.png"))
        assert np.array_equal(overlay, np.array(Image.open(tmp_path / "whole/slide_overlay.png")))
        features = json.loads((out / f"{stem}.geojson").read_text())["features"]
        assert sorted(f["properties"]["id"] for f in features) == list(range(1, labels.max() + 1))


def test_an_image_seen_much_smaller_is_grouped_in_bounded_blocks(slide, tmp_path, monkeypatch):
    """Seen 4.8x smaller (``--max-size 40``) with GROUP_IMAGE_SIDE at 128 px, the image is
    grouped in blocks of 16 px with margins of 16 instead of at once, read whole or by
    window, with the same labels."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("pixelgroup.postprocess.tiles.GROUP_IMAGE_SIDE", 128)
    planned = []
    real = predict_module.plan_blocks
    monkeypatch.setattr(
        predict_module, "plan_blocks", lambda *a, **k: planned.append(real(*a, **k)) or planned[-1]
    )
    for lazy in ("--no-lazy", "--lazy"):
        args = ["predict", "--checkpoint", str(CELLS), str(slide / "slide.tif"), "-o", lazy[2:]]
        assert main([*args, lazy, "--max-size", "40", *TILES]) == 0
    outputs = [
        np.array(Image.open("no-lazy/slide_labels.png")),
        tifffile.imread("lazy/slide_labels.tif"),
    ]
    assert [len(p) for p in planned] == [9, 9]  # 40 x 33 in blocks of 16
    assert outputs[0].shape == (160, 192) and outputs[0].max() > 0
    assert np.array_equal(outputs[0], outputs[1])


def labels_name(name: str) -> str:
    return f"{Path(name).stem}_labels.tif"


def test_large_tiffs_are_read_by_window_by_default(slide, tmp_path, monkeypatch):
    model, cfg, _ = load_model(CELLS)
    monkeypatch.setattr(predict_module, "LAZY_ABOVE", 150 * 150)
    png = tmp_path / "small.png"
    Image.fromarray((tifffile.imread(slide / "slide.tif") >> 8).astype(np.uint8)).save(png)
    done = predict_files(
        model, cfg, [slide / "slide.tif", png], tmp_path / "out", progress=False, tile=64, halo=32
    )
    assert done.lazy == [slide / "slide.tif"] and done.tiled == [png]
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [
        "results.json",
        "slide.geojson",
        "slide.json",
        "slide_labels.tif",
        "slide_overlay.png",
        "small.json",
        "small_labels.png",
        "small_overlay.png",
    ]
    done = predict_files(
        model,
        cfg,
        [slide / "slide.tif"],
        tmp_path / "no",
        progress=False,
        tile=64,
        halo=32,
        lazy=False,
    )
    assert done.lazy == [] and (tmp_path / "no" / "slide_labels.png").exists()


def test_broken_inputs_exit_2_in_one_line(slide, tmp_path, capsys):
    data = (slide / "slide.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 3])
    zarr.open_group(tmp_path / "empty.zarr", mode="w")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "slide_labels.tif").write_bytes(b"mine")
    cases = [
        (tmp_path / "cut.tif", "cut.tif"),
        (tmp_path / "empty.zarr", "empty.zarr: a zarr group without arrays"),
        (slide / "slide.tif", "slide_labels.tif exists; pass --overwrite"),
    ]
    for path, message in cases:
        code = main(
            [
                "predict",
                "--checkpoint",
                str(CELLS),
                str(path),
                "-o",
                str(tmp_path / "out"),
                "--lazy",
                *TILES,
            ]
        )
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert (tmp_path / "out" / "slide_labels.tif").read_bytes() == b"mine"
