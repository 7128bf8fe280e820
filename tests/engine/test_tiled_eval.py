"""``pixelgroup eval`` on images seen in tiles (engine/evaluate.py, tile= / halo=): the same
tiled path as predict (windows grouped and joined across tiles by the instance evaluator's
``process_tiles``, never the whole embedding), scored with the same metrics as whole images."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from pixelgroup.cli import main
from pixelgroup.data.synthetic_cells import write_cells_folder
from pixelgroup.engine import InferenceRunner, evaluate, load_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CELLS = Path(__file__).resolve().parents[1] / "fixtures" / "cells_small.pt"
"""A small ``--config cells`` model (tests/engine/test_tiled_inference.py says how it was
trained)."""


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    """The small cells model and its config on a folder of two 128 x 160 synthetic nuclei
    images (about 40 each), grouped by exact mean shift (``grouping.max_points`` unset: a
    sample of points would make the whole image's grouping an approximation of its own)."""
    root = write_cells_folder(
        tmp_path_factory.mktemp("cells"), splits={"train": 1, "test": 2}, size=(128, 160)
    )
    model, cfg, _ = load_model(CELLS)
    return model, dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, root=str(root)),
        grouping=dataclasses.replace(cfg.grouping, max_points=None),
    )


@pytest.fixture(scope="module")
def whole(cells):
    return evaluate(*cells, progress=False, tile=0)


@pytest.mark.parametrize(("tile", "halo"), [(64, 32), (48, 32), (96, 32)])
def test_eval_in_tiles_scores_as_the_whole_image(cells, whole, tile, halo):
    tiled = evaluate(*cells, progress=False, tile=tile, halo=halo)
    assert whole["instances"] == tiled["instances"] > 60
    for key in ("predictions", "tp50", "fp50", "fn50", "tp75", "fp75", "fn75"):
        assert tiled[key] == whole[key], key
    assert tiled["AP50"] == pytest.approx(whole["AP50"], abs=1e-3)
    # an instance across tiles is scored from each tile's view of it: at IoU 0.7 the order
    # of a few near-ties can change (docs/large_images.md)
    assert tiled["AP70"] == pytest.approx(whole["AP70"], abs=2e-2)
    assert tiled["covering"] == pytest.approx(whole["covering"], abs=5e-3)


def test_eval_tiles_large_images_by_default_without_the_whole_output(cells, monkeypatch):
    """Past AUTO_TILE_ABOVE the evaluator gets the windows (process_tiles), never a stitched
    output (process), exactly as with an explicit tile of DEFAULT_TILE."""
    monkeypatch.setattr("pixelgroup.engine.inference.AUTO_TILE_ABOVE", 100)
    monkeypatch.setattr("pixelgroup.engine.inference.DEFAULT_TILE", 64)

    def stitched(self, output, batch):
        raise AssertionError("the whole output reached the evaluator")

    monkeypatch.setattr("pixelgroup.tasks.instance.InstanceTaskEvaluator.process", stitched)
    default = evaluate(*cells, progress=False, halo=32)
    explicit = evaluate(*cells, progress=False, tile=64, halo=32)
    assert default.keys() == explicit.keys()
    for key, value in default.items():
        assert value == explicit[key] or (math.isnan(value) and math.isnan(explicit[key])), key


@pytest.mark.parametrize(
    ("option", "match"),
    [
        (["--tile", "40"], "--tile / --halo: tile must be a multiple of 16"),
        (["--halo", "20"], "--tile / --halo: halo must be"),
    ],
)
def test_eval_rejects_bad_tiles_in_one_line(option, match, capsys):
    assert main(["eval", "--checkpoint", str(CELLS), *option]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err


def test_a_model_is_tiled_with_its_own_default_halo(cells, monkeypatch):
    """halo=None: the model's models.tile_halo (never under DEFAULT_HALO), for eval and predict."""
    from pixelgroup.engine.inference import DEFAULT_HALO, default_halo
    from pixelgroup.models import DenseEmbeddingNet, ToyEmbeddingNet

    assert default_halo(ToyEmbeddingNet(width=4, num_blocks=1)) == DEFAULT_HALO == 64
    dense = DenseEmbeddingNet(backbone="efficientnet_lite0", embedding_dim=4)
    assert default_halo(dense) == 256
    model, cfg = cells
    halos = []
    original = InferenceRunner.tiles

    def tiles(self, images, input_size=None, *, tile, halo):
        halos.append(halo)
        return original(self, images, input_size, tile=tile, halo=halo)

    monkeypatch.setattr(InferenceRunner, "tiles", tiles)
    monkeypatch.setattr("pixelgroup.engine.inference.tile_halo", lambda m: 96)
    evaluate(model, cfg, progress=False, tile=64)
    assert set(halos) == {96}
    monkeypatch.setattr("pixelgroup.engine.inference.tile_halo", lambda m: 16)
    evaluate(model, cfg, progress=False, tile=64)
    assert set(halos) == {96, 64}
