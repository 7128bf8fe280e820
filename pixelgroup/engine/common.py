"""What every task builds the same way from an :class:`~pixelgroup.experiment.ExperimentConfig`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pixelgroup.data import InstanceSample, collate_instances
from pixelgroup.experiment import ExperimentConfig, LossConfig
from pixelgroup.losses import RecurrentGroupingLoss
from pixelgroup.models import build_model
from pixelgroup.ops.sphere import normalize_to_sphere

__all__ = [
    "call_with_options",
    "build_config_model",
    "build_grouping_loss",
    "InstanceSampleTask",
]


def call_with_options(kind: str, name: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """``fn(*args, **kw)``, turning a bad keyword from the config into a ValueError naming it."""
    try:
        return fn(*args, **kw)
    except TypeError as e:
        if "argument" not in str(e):
            raise
        raise ValueError(f"{kind} {name!r}: bad option in the config ({e})") from None


def build_config_model(cfg: ExperimentConfig) -> nn.Module:
    """The registry model ``cfg.model.name`` built with ``cfg.model.options``."""
    name = cfg.model.name
    return call_with_options("model", name, build_model, name, **cfg.model.options)


def build_grouping_loss(
    c: LossConfig, ignore_index: int | None
) -> Callable[[torch.Tensor, torch.Tensor, torch.Generator | None], dict[str, torch.Tensor]]:
    """The recurrent pair loss of the ``loss`` section, after ``loss.stride`` pooling.

    Returns ``fn(embedding (B, D, H, W), labels (B, H', W'), generator) -> terms``: with
    ``stride`` s > 1 the embedding is s x s average-pooled and re-normalised first, so the GBMS
    loops of the loss run on s² times fewer points (they are quadratic in N).
    """
    if c.stride < 1:
        raise ValueError(f"loss.stride must be >= 1, got {c.stride}")
    criterion = RecurrentGroupingLoss(
        margin=c.margin,
        bandwidth=c.bandwidth,
        num_iters=c.num_iters,
        iter_weights=c.iter_weights,
        sample_ratio=c.sample_ratio,
        max_samples=c.max_samples,
        pos_weight=c.pos_weight,
        neg_weight=c.neg_weight,
        kind=c.kind,
        ignore_index=ignore_index,
    )

    def apply(
        embedding: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None
    ) -> dict[str, torch.Tensor]:
        if c.stride > 1:
            embedding = normalize_to_sphere(F.avg_pool2d(embedding, c.stride), dim=1)
        return criterion(embedding, labels.to(embedding.device), generator=generator)

    return apply


class InstanceSampleTask:
    """Task defaults for batches of :class:`~pixelgroup.data.InstanceSample` and registry models."""

    def collate(self, samples: list[InstanceSample]) -> InstanceSample:
        return collate_instances(samples)

    def batch_image(self, batch: InstanceSample) -> torch.Tensor:
        return batch.image

    def build_model(self, cfg: ExperimentConfig) -> nn.Module:
        return build_config_model(cfg)
