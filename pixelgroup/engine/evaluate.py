"""The evaluation loop: run a model over a split and feed the task's evaluator.

Images larger than :data:`~pixelgroup.engine.inference.AUTO_TILE_ABOVE` px on a side go
through the model in tiles, as :func:`~pixelgroup.engine.predict.predict_files` sends them
(:func:`~pixelgroup.engine.inference.tile_side`). An image of several grouping blocks
(:func:`~pixelgroup.postprocess.tiles.plan_blocks`) reaches an evaluator that groups block by
block (:class:`~pixelgroup.tasks.base.TiledEvaluator`, e.g. the instance task's) one block's
output at a time, never the image's whole embedding; any other evaluator gets the whole
output (stitched from the tiles' cores).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from pixelgroup.config import ExperimentConfig
from pixelgroup.engine.inference import (
    DEFAULT_TILE,
    InferenceRunner,
    default_halo,
    model_input_size,
    tile_side,
)
from pixelgroup.postprocess.tiles import TILE_MULTIPLE, check_tile_sizes, plan_blocks
from pixelgroup.tasks import get_task
from pixelgroup.tasks.base import TiledEvaluator

__all__ = ["evaluate", "eval_input_size"]


def evaluate(
    model: nn.Module,
    cfg: ExperimentConfig,
    split: str | None = None,
    *,
    progress: bool = True,
    tile: int | None = None,
    halo: int | None = None,
) -> dict[str, float]:
    """Metrics of ``model`` on ``split`` (default ``cfg.data.eval_split``).

    The model runs through :class:`~pixelgroup.engine.inference.InferenceRunner` (eval mode,
    BatchNorm as ``cfg.model.test_bn`` says, autocast as ``cfg.train.amp``); the task's
    evaluator sees its outputs and the batches. A batch of images ``(B, C, H, W)`` longer
    than ``tile`` px on a side is seen in tiles of ``tile`` px with ``halo`` px of context
    (default: the model's, :func:`~pixelgroup.engine.inference.default_halo`; multiples of
    16, ``halo`` >= 16), each image on its own: ``tile=None`` (default) tiles
    of :data:`~pixelgroup.engine.inference.DEFAULT_TILE` above
    :data:`~pixelgroup.engine.inference.AUTO_TILE_ABOVE` px and the tiles' window
    (:func:`~pixelgroup.engine.inference.tile_side`), 0 never (as ``predict_files``).
    """
    if tile is not None and (isinstance(tile, bool) or tile < 0):
        raise ValueError(f"tile must be >= 0 (0: no tiles, None: automatic), got {tile!r}")
    halo = default_halo(model) if halo is None else halo
    check_tile_sizes(tile or DEFAULT_TILE, halo, min_halo=TILE_MULTIPLE)
    task = get_task(cfg.task)
    run = InferenceRunner.from_config(model, cfg)
    split = split or cfg.data.eval_split
    loader = DataLoader(
        task.build_dataset(cfg, split),
        batch_size=cfg.data.batch_size,
        collate_fn=task.collate,
        num_workers=cfg.data.num_workers,
    )
    evaluator = task.build_evaluator(cfg)
    evaluator.reset()
    scale = task.inference_scale(cfg)  # once: the config does not change between batches
    for batch in tqdm(loader, desc=f"eval {split}", disable=not progress):
        images = task.batch_image(batch)
        size = eval_input_size(images, scale)
        side = tile_side(size, tile, halo) if task.tiles_images else 0
        labelled = (int(images.shape[-2]), int(images.shape[-1]))
        blocks = plan_blocks(size, image_size=labelled) if task.tiles_images else []
        if len(blocks) > 1 and isinstance(evaluator, TiledEvaluator):
            windows = [
                run.blocks(image[None], blocks, input_size=size, tile=side, halo=halo)
                for image in images
            ]
            evaluator.process_tiles(windows, batch, size)
        else:
            evaluator.process(run(images, input_size=size, tile=side, halo=halo), batch)
    return evaluator.evaluate()


def eval_input_size(images: torch.Tensor, scale: float | None) -> tuple[int, int]:
    """``(h, w)`` at which the model sees ``images (B, C, H, W)`` to be scored: ``(H, W)``
    times ``scale``, the scale it was trained at (``Task.inference_scale``, None: 1; as
    ``predict`` shows them with no ``--max-size``), the labels scored at ``(H, W)``."""
    size = (int(images.shape[-2]), int(images.shape[-1]))
    return model_input_size(size, 0, 1.0 if scale is None else scale)
