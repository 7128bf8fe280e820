"""``pixelgroup eval`` on images seen in tiles (engine/evaluate.py, tile= / halo=): the same
path as predict (an image of several grouping blocks grouped block by block and joined by the
instance evaluator's ``process_tiles``, never the whole embedding); the same metrics as the
image seen whole, whatever the tiles."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from pixelgroup.cli import main
from pixelgroup.data.synthetic_cells import write_cells_folder
from pixelgroup.engine import InferenceRunner, evaluate, load_model
from tests._tiny import group_in_blocks

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


@pytest.fixture
def blocks(request, monkeypatch):
    """True: the 128 x 160 images grouped in blocks of 64 px with margins of 16 (the defaults,
    512 and 32 px above 1024 px, are too large for a test's images)."""
    if request.param:
        group_in_blocks(monkeypatch, whole_above=100, block=64, margin=16)
    return request.param


@pytest.mark.parametrize("blocks", [False, True], indirect=True)
def test_eval_in_tiles_scores_as_the_whole_image(cells, blocks):
    whole = evaluate(*cells, progress=False, tile=0)
    assert whole["instances"] > 60
    for tile in (48, 64, 96):
        tiled = evaluate(*cells, progress=False, tile=tile, halo=64)
        assert tiled.keys() == whole.keys()
        for key, value in whole.items():
            assert tiled[key] == pytest.approx(value, abs=1e-6, nan_ok=True), (tile, key)


@pytest.mark.parametrize("blocks", [True], indirect=True)
def test_eval_groups_large_images_by_block_without_the_whole_output(cells, blocks, monkeypatch):
    """An image of several grouping blocks reaches the evaluator block by block
    (process_tiles), never as a whole output (process), tiled by default past
    AUTO_TILE_ABOVE exactly as with an explicit tile of DEFAULT_TILE."""
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


@pytest.mark.parametrize("command", ["eval", "predict", "tune"])
def test_grouping_min_area_auto_is_training_s_to_choose(command, tmp_path, capsys):
    """``--set grouping.min_area=auto`` on a trained checkpoint: one line, before any work."""
    args = [command, "--checkpoint", str(CELLS), "--set", "grouping.min_area=auto"]
    args += [str(tmp_path / "x.png"), "-o", str(tmp_path / "out")] if command == "predict" else []
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "grouping.min_area 'auto' is chosen when training" in err
    assert "Traceback" not in err and "eval test" not in err and not (tmp_path / "out").exists()


def test_a_model_is_tiled_with_its_own_default_halo(cells, monkeypatch):
    """halo=None: the model's models.tile_halo (never under DEFAULT_HALO), for eval and predict."""
    from pixelgroup.engine.inference import DEFAULT_HALO, default_halo
    from pixelgroup.models import DenseEmbeddingNet, ToyEmbeddingNet

    assert default_halo(ToyEmbeddingNet(width=4, num_blocks=1)) == DEFAULT_HALO == 64
    dense = DenseEmbeddingNet(backbone="efficientnet_lite0", embedding_dim=4)
    assert default_halo(dense) == 448
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
