"""The evaluation loop: run a model over a split and feed the task's evaluator."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from pixelgroup.config import ExperimentConfig
from pixelgroup.models import apply_test_bn
from pixelgroup.tasks import get_task

__all__ = ["evaluate"]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    cfg: ExperimentConfig,
    split: str | None = None,
    *,
    progress: bool = True,
) -> dict[str, float]:
    """Metrics of ``model`` (in eval mode) on ``split`` (default ``cfg.data.eval_split``).

    BatchNorm normalises as ``cfg.model.test_bn`` says (:func:`pixelgroup.models.apply_test_bn`).
    """
    task = get_task(cfg.task)
    model = apply_test_bn(model, cfg.model.test_bn)
    split = split or cfg.data.eval_split
    loader = DataLoader(
        task.build_dataset(cfg, split),
        batch_size=cfg.data.batch_size,
        collate_fn=task.collate,
        num_workers=cfg.data.num_workers,
    )
    evaluator = task.build_evaluator(cfg)
    evaluator.reset()
    device = next(model.parameters()).device
    model.eval()
    for batch in tqdm(loader, desc=f"eval {split}", disable=not progress):
        evaluator.process(model(task.batch_image(batch).to(device)), batch)
    return evaluator.evaluate()
