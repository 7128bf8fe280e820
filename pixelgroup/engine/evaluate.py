"""The evaluation loop: run a model over a split and feed the task's evaluator."""

from __future__ import annotations

from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from pixelgroup.config import ExperimentConfig
from pixelgroup.engine.inference import InferenceRunner
from pixelgroup.tasks import get_task

__all__ = ["evaluate"]


def evaluate(
    model: nn.Module,
    cfg: ExperimentConfig,
    split: str | None = None,
    *,
    progress: bool = True,
) -> dict[str, float]:
    """Metrics of ``model`` on ``split`` (default ``cfg.data.eval_split``).

    The model runs through :class:`~pixelgroup.engine.inference.InferenceRunner` (eval mode,
    BatchNorm as ``cfg.model.test_bn`` says, autocast as ``cfg.train.amp``); the task's
    evaluator sees its outputs and the batches.
    """
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
    for batch in tqdm(loader, desc=f"eval {split}", disable=not progress):
        evaluator.process(run(task.batch_image(batch)), batch)
    return evaluator.evaluate()
