"""Tiled inference (engine/inference.py: InferenceRunner(tile=, halo=), .tiles(), .blocks())
and prediction of the instance task in grouping blocks (engine/predict.py::predict_image): the
labels of any tiling are the whole image's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pixelgroup.data.synthetic_cells import draw_cells
from pixelgroup.data.toy import ToyDigits
from pixelgroup.engine import load_model, predict_image
from pixelgroup.engine.inference import InferenceRunner
from pixelgroup.errors import ConfigError
from pixelgroup.metrics.partition import partition_agreement
from pixelgroup.models import ToyEmbeddingNet, UNetEmbeddingNet
from pixelgroup.postprocess.tiles import Box, plan_blocks
from pixelgroup.tasks import get_task
from tests._tiny import group_in_blocks

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TOY = FIXTURES / "toy_demo.pt"
"""``pixelgroup demo --config toy`` (configs/toy.yaml, 1,800 iterations), model weights only."""
CELLS = FIXTURES / "cells_small.pt"
"""``pixelgroup train --config cells --set model.options.width=8 --set model.options.depth=3
--set train.epochs=3`` on ``write_cells_folder(root, splits={"train": 2, "test": 1})``, model
weights only."""


def _unet() -> UNetEmbeddingNet:
    torch.manual_seed(0)
    net = UNetEmbeddingNet(width=4, depth=4, embedding="spatial", embedding_dim=8, num_classes=2)
    torch.nn.init.normal_(net.head.conv.weight, std=0.3)  # votes that depend on the image
    return net


@pytest.mark.parametrize(
    ("net", "halo"), [(lambda: ToyEmbeddingNet(width=4, num_blocks=4), 32), (_unet, 64)]
)
def test_tiled_outputs_equal_the_whole_image_beyond_the_receptive_field(net, halo):
    torch.manual_seed(1)
    run, images = InferenceRunner(net()), torch.rand(2, 3, 80, 112)
    whole, tiled = run(images), run(images, tile=32, halo=halo)
    for name in ("embedding", "raw", "semantic", "votes"):
        a, b = getattr(whole, name), getattr(tiled, name)
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(b, a, atol=2e-5, rtol=0, msg=name)
    # without a halo the tiles' borders differ: the halo is what makes them equal
    assert (run(images, tile=32, halo=0).embedding - whole.embedding).abs().max() > 1e-3


def test_the_model_is_told_where_each_window_lies():
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, images, crop=None):
            seen.append(crop)
            return images

    InferenceRunner(Recorder())(torch.rand(1, 1, 40, 20), tile=16, halo=16)
    assert seen == [(0, 0, 40, 20)] * 4 + [(16, 0, 40, 20)] * 2  # 3 x 2 tiles, row-major
    # a model without a crop argument is position-independent: called with the window only
    tiled = InferenceRunner(torch.nn.Identity())(torch.arange(800.0).view(1, 1, 40, 20), tile=16)
    assert torch.equal(tiled, torch.arange(800.0).view(1, 1, 40, 20))


def test_tiles_downscale_first_when_asked():
    run, images = InferenceRunner(ToyEmbeddingNet(width=4, num_blocks=1)), torch.rand(1, 3, 80, 64)
    whole = run(images, input_size=(40, 32)).embedding
    torch.testing.assert_close(run(images, input_size=(40, 32), tile=16, halo=16).embedding, whole)


def test_test_time_batch_statistics_cannot_tile():
    run = InferenceRunner(ToyEmbeddingNet(width=4, num_blocks=1), test_bn="batch")
    with pytest.raises(ConfigError, match="model.test_bn: batch normalises each tile"):
        run(torch.rand(1, 3, 64, 64), tile=32)


@pytest.mark.parametrize("tile", [0, 16, 48])
def test_block_outputs_are_the_whole_images_outputs(tile):
    torch.manual_seed(1)
    run, images = InferenceRunner(_unet()), torch.rand(1, 3, 80, 112)
    whole = run(images)
    blocks = plan_blocks((80, 112), block=32, margin=16, whole_above=48)
    assert [b.window for b in blocks][:2] == [Box(0, 0, 48, 48), Box(0, 16, 48, 80)]
    got = list(run.blocks(images, blocks, tile=tile, halo=64))
    assert [b for b, _ in got] == blocks
    for block, output in got:
        rows, cols = block.window.slices()
        torch.testing.assert_close(
            output.embedding, whole.embedding[..., rows, cols], atol=2e-5, rtol=0
        )
        torch.testing.assert_close(
            output.semantic, whole.semantic[..., rows, cols], atol=2e-5, rtol=0
        )


def test_an_image_read_by_window_is_never_seen_whole():
    class Source:
        size = (64, 64)

        def read(self, box):
            return torch.rand(3, *box.size)

    run = InferenceRunner(ToyEmbeddingNet(width=4, num_blocks=1))
    with pytest.raises(ValueError, match="tile must be > 0"):
        run.blocks(Source(), plan_blocks((64, 64)), tile=0)


def _predictions(checkpoint: Path, image: torch.Tensor, tiles: list[tuple[int, int]]):
    """``(labels, scores)`` of ``image (1, C, H, W)`` seen whole and in each ``(tile, halo)``
    of ``tiles``, as predict makes them (engine/predict.py::predict_image)."""
    model, cfg, _ = load_model(checkpoint)
    task, run = get_task(cfg.task), InferenceRunner.from_config(model, cfg)
    return [predict_image(task, cfg, run, image[0], tile=t, halo=h) for t, h in [(0, 64), *tiles]]


def _assert_same(predictions) -> None:
    (whole, whole_scores), *tiled = predictions
    assert whole.max() > 1
    for labels, scores in tiled:
        assert torch.equal(labels, whole)
        torch.testing.assert_close(scores, whole_scores, atol=1e-6, rtol=0)


def test_toy_tiled_labels_are_the_whole_images(monkeypatch):
    group_in_blocks(monkeypatch, whole_above=48, block=32, margin=16)
    # 64 x 64 canvases grouped in 4 blocks of 32 px: the labels of every tiling are those of
    # the canvas seen whole, and the blocks' labels those of the canvas grouped at once
    canvases = ToyDigits("val", 2)
    for i in range(2):
        image = canvases[i].image[None]
        got = _predictions(TOY, image, [(16, 32), (32, 32), (48, 32)])
        _assert_same(got)
        model, cfg, _ = load_model(TOY)
        once, _ = get_task(cfg.task).postprocess(cfg, InferenceRunner(model)(image), (64, 64))
        assert partition_agreement(got[0][0], once) >= 0.97


@pytest.mark.parametrize("blocks", [False, True])
def test_unet_tiled_labels_are_the_whole_images(blocks, tmp_path, monkeypatch):
    import tifffile

    if blocks:  # the 128 x 160 image in blocks of 64 px with margins of 16
        group_in_blocks(monkeypatch, whole_above=100, block=64, margin=16)
    cells = draw_cells(np.random.default_rng(1), (128, 160), count=18)
    tifffile.imwrite(tmp_path / "cells.tif", cells.image)
    _, cfg, _ = load_model(CELLS)
    image = get_task(cfg.task).read_image(cfg, tmp_path / "cells.tif")[None]
    _assert_same(_predictions(CELLS, image, [(48, 64), (64, 64), (96, 64)]))
