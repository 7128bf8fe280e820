"""The ``proposals`` task: VOC-style instance data, the dense model, AR@k of mask proposals.

Plugs into :data:`pixelgroup.engine.tasks.TASKS` (see that module for the contract).

* Data: ``cfg.data.name`` is ``"voc"`` and ``cfg.data.root`` a VOC 2012 root, an SBD
  ``dataset`` folder or a folder of sample ``.mat`` files
  (:func:`pixelgroup.data.voc.open_instance_dataset`). ``cfg.data.options``: ``size: [H, W]``
  resizes every sample (needed for batches > 1), ``ignore_index`` (255).
* Loss: :class:`~pixelgroup.losses.RecurrentGroupingLoss` on the embedding with VOC's void
  pixels ignored, plus, when the model has a semantic head, pixel cross-entropy on it (weight 1,
  void ignored).
* Evaluation: :func:`pixelgroup.postprocess.propose` on each embedding at bandwidths
  ``(δ, 2δ, 3δ)`` with δ = ``cfg.grouping.bandwidth`` (and its ``num_iters``, ``threshold``,
  ``min_area``), masks upsampled to the label map's size, then
  :class:`~pixelgroup.metrics.proposals.ProposalEvaluator` (AR@k, recall@0.5@k). AR is measured
  at the resolution of the samples as loaded (after ``size``, if given).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from pixelgroup.data.sample import InstanceSample
from pixelgroup.data.voc import IGNORE_INDEX, ResizeSample, instance_masks, open_instance_dataset
from pixelgroup.engine.common import InstanceSampleTask, build_grouping_loss
from pixelgroup.experiment import ExperimentConfig
from pixelgroup.metrics.proposals import ProposalEvaluator
from pixelgroup.postprocess.proposals import Proposals, propose

__all__ = ["ProposalTask", "ProposalTaskEvaluator", "proposals_from_embedding"]

_DATA_OPTIONS = ("size", "ignore_index")


def _data_options(cfg: ExperimentConfig) -> tuple[tuple[int, int] | None, int]:
    unknown = sorted(set(cfg.data.options) - set(_DATA_OPTIONS))
    if unknown:
        raise ValueError(
            f"unknown data.options key {unknown[0]!r} for the proposals task; valid: "
            f"{', '.join(_DATA_OPTIONS)}"
        )
    size = cfg.data.options.get("size")
    return (None if size is None else tuple(size)), cfg.data.options.get(
        "ignore_index", IGNORE_INDEX
    )


def proposals_from_embedding(
    embedding: torch.Tensor, image_size: tuple[int, int], cfg: ExperimentConfig
) -> Proposals:
    """Proposals from one ``(D, H', W')`` embedding with ``cfg.grouping`` (see module doc)."""
    g = cfg.grouping
    return propose(
        embedding,
        image_size=image_size,
        bandwidths=(g.bandwidth, 2 * g.bandwidth, 3 * g.bandwidth),
        num_iters=(g.num_iters,),
        threshold=g.threshold,
        min_area=g.min_area,
        max_points=g.max_points,
    )


class ProposalTask(InstanceSampleTask):
    """Class-agnostic instance embedding on VOC/SBD, evaluated as ranked mask proposals."""

    def build_dataset(self, cfg: ExperimentConfig, split: str) -> Dataset:
        if cfg.data.name != "voc":
            raise ValueError(
                f"the proposals task reads data.name 'voc' (VOC 2012, SBD or .mat samples, "
                f"told apart by data.root's layout), got {cfg.data.name!r}"
            )
        if cfg.data.root is None:
            raise ValueError("data.root must name a VOC 2012 root, an SBD folder or .mat samples")
        size, ignore_index = _data_options(cfg)
        transform = None if size is None else ResizeSample(size)
        return open_instance_dataset(
            cfg.data.root, split, ignore_index=ignore_index, transform=transform
        )

    def build_loss(self, cfg: ExperimentConfig) -> Callable[..., dict[str, torch.Tensor]]:
        c = cfg.loss
        _, ignore_index = _data_options(cfg)
        grouping_loss = build_grouping_loss(c, ignore_index)

        def loss(output: Any, batch: InstanceSample, generator: torch.Generator):
            terms = grouping_loss(output.embedding, batch.instance, generator)
            semantic = getattr(output, "semantic", None)
            if semantic is not None:
                target = batch.semantic.to(semantic.device)
                logits = F.interpolate(
                    semantic, size=target.shape[-2:], mode="bilinear", align_corners=False
                )
                terms["semantic"] = F.cross_entropy(logits, target, ignore_index=ignore_index)
                terms["loss"] = terms["loss"] + terms["semantic"]
            return terms

        return loss

    def build_evaluator(self, cfg: ExperimentConfig) -> ProposalTaskEvaluator:
        return ProposalTaskEvaluator(cfg)


class ProposalTaskEvaluator:
    """Proposals from each embedding of a batch, scored against its instance masks."""

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.cfg = cfg
        self.ignore_index = _data_options(cfg)[1]
        self.metrics = ProposalEvaluator()
        self._count = 0

    def reset(self) -> None:
        self.metrics.reset()
        self._count = 0

    def process(self, output: Any, batch: InstanceSample) -> None:
        for embedding, instance in zip(output.embedding, batch.instance, strict=True):
            props = proposals_from_embedding(embedding, tuple(instance.shape), self.cfg)
            self.metrics.process(
                str(self._count),
                instance_masks(instance, self.ignore_index),
                props.masks.cpu(),
                props.scores.cpu(),
                void=(instance == self.ignore_index).cpu(),
            )
            self._count += 1

    def evaluate(self) -> dict[str, float]:
        return self.metrics.evaluate()
