"""Tiled inference (engine/inference.py: InferenceRunner(tile=, halo=), .tiles()) and tiled
prediction of the instance task (Task.postprocess_tiles): tiles equal the whole image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pixelgroup.data.synthetic_cells import draw_cells
from pixelgroup.data.toy import ToyDigits
from pixelgroup.engine import load_model
from pixelgroup.engine.inference import InferenceRunner
from pixelgroup.errors import ConfigError
from pixelgroup.metrics.partition import partition_agreement
from pixelgroup.models import ToyEmbeddingNet, UNetEmbeddingNet
from pixelgroup.tasks import get_task

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


def _agreement(checkpoint: Path, image: torch.Tensor, tile: int, halo: int) -> float:
    model, cfg, _ = load_model(checkpoint)
    task, run = get_task(cfg.task), InferenceRunner.from_config(model, cfg)
    size = (int(image.shape[-2]), int(image.shape[-1]))
    whole, _ = task.postprocess(cfg, run(image), size)
    tiled, _ = task.postprocess_tiles(cfg, run.tiles(image, tile=tile, halo=halo), size, size)
    return partition_agreement(tiled, whole)


@pytest.mark.parametrize("tile", [16, 32, 48])
def test_toy_tiled_labels_equal_the_whole_images(tile):
    # 64 x 64 canvases of digits: a sixth of the pixels lie on an object's border, where
    # a region's grouping may draw it a pixel apart from the whole image's
    canvases = ToyDigits("val", 2)
    got = [_agreement(TOY, canvases[i].image[None], tile, 32) for i in range(2)]
    assert min(got) >= 0.995, got


@pytest.mark.parametrize(("tile", "halo"), [(48, 32), (64, 64), (96, 32)])
def test_unet_tiled_labels_equal_the_whole_image(tile, halo, tmp_path):
    import tifffile

    cells = draw_cells(np.random.default_rng(1), (128, 160), count=18)
    tifffile.imwrite(tmp_path / "cells.tif", cells.image)
    _, cfg, _ = load_model(CELLS)
    image = get_task(cfg.task).read_image(cfg, tmp_path / "cells.tif")[None]
    assert _agreement(CELLS, image, tile, halo) >= 0.99
