"""The task registry: how a config becomes datasets, a model, a loss and an evaluator.

``TASKS`` maps ``ExperimentConfig.task`` to a task object. The train / evaluate loops in
:mod:`pixelgroup.engine` only talk to this contract, so boundary detection or VOC proposals plug
in by adding an entry. A task provides:

* ``build_dataset(cfg, split) -> Dataset`` whose items batch with ``task.collate``;
* ``collate(samples) -> batch`` and ``batch_image(batch) -> (B, C, H, W)``;
* ``build_model(cfg) -> nn.Module`` (default: the model registry, ``cfg.model``);
* ``build_loss(cfg) -> callable(output, batch, generator) -> dict`` of named scalar terms with
  ``"loss"`` the one to backpropagate;
* ``build_evaluator(cfg)`` with ``reset() / process(output, batch) / evaluate() -> dict``;
* optionally ``write_prediction(model, cfg, image (C, H, W), out_dir, stem) -> list[Path]``,
  which ``pixelgroup predict`` calls per image (a task without it cannot ``predict``).

Tasks are stateless; everything they need comes from the config. ``DATASETS`` maps
``cfg.data.name`` to ``builder(root, split, **cfg.data.options)`` for the instance task.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from pixelgroup.data import ImageMaskFolder, InstanceSample, ToyDigits
from pixelgroup.engine.boundary_task import BoundaryTask
from pixelgroup.engine.common import (
    InstanceSampleTask,
    build_grouping_loss,
    call_with_options,
)
from pixelgroup.engine.proposals import ProposalTask
from pixelgroup.engine.semantic_task import SemanticTask
from pixelgroup.engine.voc_instance_task import VOCInstanceTask
from pixelgroup.experiment import ExperimentConfig
from pixelgroup.metrics.instance import InstanceEvaluator
from pixelgroup.models import EmbeddingOutput
from pixelgroup.ops.sphere import normalize_to_sphere
from pixelgroup.postprocess import group_pixels

__all__ = ["Task", "TASKS", "DATASETS", "InstanceTask", "get_task", "extract_instances"]


class Task(Protocol):
    def build_dataset(self, cfg: ExperimentConfig, split: str) -> Dataset: ...

    def collate(self, samples: list[Any]) -> Any: ...

    def batch_image(self, batch: Any) -> torch.Tensor: ...

    def build_model(self, cfg: ExperimentConfig) -> nn.Module: ...

    def build_loss(self, cfg: ExperimentConfig) -> Callable[..., dict[str, torch.Tensor]]: ...

    def build_evaluator(self, cfg: ExperimentConfig) -> Any: ...


def _toy(
    root: str | None, split: str, *, length: int = 4000, eval_length: int = 200, **options: Any
) -> Dataset:
    return ToyDigits(split, length if split == "train" else eval_length, **options)


def _folder(root: str | None, split: str, **options: Any) -> Dataset:
    if root is None:
        raise ValueError("data.root must name a folder for the 'folder' dataset")
    return ImageMaskFolder(root, split, **options)


DATASETS: dict[str, Callable[..., Dataset]] = {"toy": _toy, "folder": _folder}


def extract_instances(
    embedding: torch.Tensor, cfg: ExperimentConfig, *, num_iters: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One ``(D, H, W)`` unit embedding -> ``labels (H, W)`` int64 and ``scores (K,)``.

    Groups come from :func:`group_pixels` with ``cfg.grouping``. With ``grouping.stride`` s > 1
    the grouping runs on the s x s average-pooled (re-normalised) embedding, s² times fewer
    points for the quadratic mean shift, and every full-resolution pixel then takes the group
    whose centre is nearest in cosine (groups left with fewer than ``min_area`` pixels hand
    theirs to the next-nearest group). The largest group is the background (label 0: the
    toy's background, like most instance data's, is one group bigger than any instance);
    labels 1..K are the instances and ``scores[k - 1]`` is instance k's compactness score.
    ``num_iters`` overrides ``grouping.num_iters`` (0: group the embedding as it is).
    """
    g = cfg.grouping
    if g.stride < 1:
        raise ValueError(f"grouping.stride must be >= 1, got {g.stride}")
    small = embedding
    if g.stride > 1:
        pooled = F.avg_pool2d(embedding[None], g.stride, ceil_mode=True)
        small = normalize_to_sphere(pooled, dim=1)[0]
    grouping = group_pixels(
        small,
        bandwidth=g.bandwidth,
        num_iters=g.num_iters if num_iters is None else num_iters,
        threshold=g.threshold,
        min_area=max(1, round(g.min_area / g.stride**2)),
        max_points=g.max_points,
    )
    labels, scores = grouping.labels, grouping.scores
    if g.stride > 1:
        centers = grouping.centers.to(embedding.dtype)
        cosine = torch.einsum("kd,dhw->khw", centers, embedding)
        labels = cosine.argmax(0)
        # groups of blended pooled pixels (at instance borders) may win only a few pixels:
        # those join their next-nearest group
        small = torch.bincount(labels.flatten(), minlength=len(centers)) < g.min_area
        if bool(small.any()) and not bool(small.all()):
            labels = cosine.masked_fill(small[:, None, None], -2.0).argmax(0)
        present = torch.unique(labels)
        remap = torch.zeros(len(scores), dtype=torch.int64, device=labels.device)
        remap[present] = torch.arange(len(present), device=labels.device)
        labels, scores = remap[labels], scores[present.to(scores.device)]
    return labels, scores[1:]


class InstanceTask(InstanceSampleTask):
    """Class-agnostic instance segmentation with the recurrent grouping loss (the toy task)."""

    def build_dataset(self, cfg: ExperimentConfig, split: str) -> Dataset:
        name = cfg.data.name
        if name not in DATASETS:
            raise KeyError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")
        builder = DATASETS[name]
        return call_with_options("dataset", name, builder, cfg.data.root, split, **cfg.data.options)

    def build_loss(self, cfg: ExperimentConfig) -> Callable[..., dict[str, torch.Tensor]]:
        c = cfg.loss
        grouping_loss = build_grouping_loss(c, ignore_index=None)

        def loss(
            output: EmbeddingOutput, batch: InstanceSample, generator: torch.Generator
        ) -> dict[str, torch.Tensor]:
            return grouping_loss(output.embedding, batch.instance, generator)

        return loss

    def build_evaluator(self, cfg: ExperimentConfig) -> InstanceTaskEvaluator:
        return InstanceTaskEvaluator(cfg)

    def write_prediction(
        self, model: nn.Module, cfg: ExperimentConfig, image: torch.Tensor, out_dir: Path, stem: str
    ) -> list[Path]:
        from pixelgroup.engine.predict import predict_image, write_prediction

        labels, scores = predict_image(model, cfg, image)
        return write_prediction(out_dir, stem, image, labels, scores)


class InstanceTaskEvaluator:
    """Groups each embedding (:func:`extract_instances`) and feeds an InstanceEvaluator."""

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.cfg = cfg
        self.metrics = InstanceEvaluator()

    def reset(self) -> None:
        self.metrics.reset()

    def process(self, output: EmbeddingOutput, batch: InstanceSample) -> None:
        for embedding, gt in zip(output.embedding, batch.instance, strict=True):
            labels, scores = extract_instances(embedding, self.cfg)
            self.metrics.process(labels.cpu(), scores.cpu(), gt.cpu())

    def evaluate(self) -> dict[str, float]:
        return self.metrics.evaluate()


TASKS: dict[str, Task] = {
    "instance": InstanceTask(),
    "proposals": ProposalTask(),
    "boundary": BoundaryTask(),
    "semantic": SemanticTask(),
    "voc_instance": VOCInstanceTask(),
}


def get_task(name: str) -> Task:
    """The registered task ``name``; unknown names list the valid ones."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; valid tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]
