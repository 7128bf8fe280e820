"""The ``semantic`` task: semantic segmentation with the grouping loss as an auxiliary term.

Plugs into :data:`pixelgroup.engine.tasks.TASKS` (see that module for the contract). It measures
the paper's claim that the pixel-pair loss helps a classification task (METHOD.md §7, §11).

* Data: ``cfg.data.name`` ``"voc"`` reads VOC 2012 / SBD / the ``.mat`` samples as the
  ``proposals`` task does (options ``size``, ``ignore_index``); any other name goes to the
  instance task's dataset registry (``"toy"``: semantic = digit class + 1, 0 background, 11
  classes). ``data.options.boundary_max_dist`` (0.0075, a fraction of the image diagonal) is
  this task's own: the matching radius of the boundary F score; the rest goes to the dataset.
* Model: any registered model built with ``model.options.num_classes`` (``toy`` or ``dense``)
  whose output carries ``semantic`` logits ``(B, num_classes, h, w)`` next to the embedding.
* Loss: ``ce + loss.aux_weight * pair``. ``ce`` is pixel cross-entropy of the logits
  (bilinearly resized to the label map) with ``ignore_index`` skipped; ``pair`` is
  :class:`~pixelgroup.losses.RecurrentGroupingLoss` (``cfg.loss``: margin, GBMS loops, sampling,
  ``stride``) on the unit embedding, grouping pixels by ``loss.aux_labels``:

  - ``"semantic"`` (default): pairs of one class attract, pairs of two classes repel. This is
    the auxiliary loss the classification claim is about: as in the boundary demo, the pair
    loss is put on the task's own labels, so the shared trunk learns features on which
    same-class pixels agree, which is what a cleaner class map needs.
  - ``"instance"``: instance ids (the paper's VOC embedding), a multi-task variant whose pair
    loss also pushes apart two digits of one class.

  With ``aux_weight`` 0 the pair loss is not computed (a plain cross-entropy baseline).
  Returns ``{"loss", "ce", "pair", "loss_iter0".."loss_iterT"}``.
* Evaluation: argmax of the resized logits ->
  :class:`~pixelgroup.metrics.semantic.SemanticEvaluator`: ``mIoU``, ``pixel_acc``,
  ``mean_acc``, ``boundary_P``, ``boundary_R``, ``boundary_F``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from pixelgroup.data.sample import InstanceSample
from pixelgroup.data.voc import IGNORE_INDEX
from pixelgroup.engine.common import InstanceSampleTask, build_grouping_loss
from pixelgroup.engine.proposals import ProposalTask
from pixelgroup.experiment import ExperimentConfig
from pixelgroup.metrics.semantic import SemanticEvaluator

__all__ = ["SemanticTask", "SemanticTaskEvaluator", "AUX_LABELS"]

AUX_LABELS = ("semantic", "instance")
BOUNDARY_MAX_DIST = 0.0075  # the BSDS matching radius, a fraction of the image diagonal


def _split_options(cfg: ExperimentConfig) -> tuple[ExperimentConfig, float]:
    """``cfg`` with this task's own data option removed, and that option's value."""
    options = dict(cfg.data.options)
    max_dist = float(options.pop("boundary_max_dist", BOUNDARY_MAX_DIST))
    if not max_dist > 0:
        raise ValueError(f"data.options.boundary_max_dist must be > 0, got {max_dist}")
    return replace(cfg, data=replace(cfg.data, options=options)), max_dist


def _ignore_index(cfg: ExperimentConfig) -> int:
    return int(cfg.data.options.get("ignore_index", IGNORE_INDEX))


def _num_classes(cfg: ExperimentConfig) -> int:
    n = cfg.model.options.get("num_classes")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(
            f"the semantic task needs model.options.num_classes >= 2 (11 for the toy digits, "
            f"21 for VOC), got {n!r}"
        )
    return n


def _resize(logits: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(B, C, h, w)`` logits bilinearly resized to the ``(H, W)`` of the label map ``like``."""
    size = (int(like.shape[-2]), int(like.shape[-1]))
    if tuple(logits.shape[-2:]) == size:
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def _logits(output: Any) -> torch.Tensor:
    logits = getattr(output, "semantic", None)
    if logits is None:
        raise ValueError(
            "the model output has no semantic logits: build it with model.options.num_classes"
        )
    return logits


class SemanticTask(InstanceSampleTask):
    """Semantic segmentation + auxiliary grouping loss (see the module docstring)."""

    def build_dataset(self, cfg: ExperimentConfig, split: str) -> Dataset:
        data_cfg, _ = _split_options(cfg)
        if cfg.data.name == "voc":
            return ProposalTask().build_dataset(data_cfg, split)
        from pixelgroup.engine.tasks import InstanceTask  # tasks.py imports this module

        return InstanceTask().build_dataset(data_cfg, split)

    def build_model(self, cfg: ExperimentConfig) -> nn.Module:
        _num_classes(cfg)
        return super().build_model(cfg)

    def build_loss(self, cfg: ExperimentConfig) -> Callable[..., dict[str, torch.Tensor]]:
        c = cfg.loss
        if c.aux_labels not in AUX_LABELS:
            raise ValueError(f"loss.aux_labels must be one of {AUX_LABELS}, got {c.aux_labels!r}")
        if not c.aux_weight >= 0:
            raise ValueError(f"loss.aux_weight must be >= 0, got {c.aux_weight}")
        ignore_index = _ignore_index(cfg)
        grouping_loss = build_grouping_loss(c, ignore_index)

        def loss(
            output: Any, batch: InstanceSample, generator: torch.Generator
        ) -> dict[str, torch.Tensor]:
            logits = _logits(output)
            target = batch.semantic.to(logits.device)
            ce = F.cross_entropy(_resize(logits, target), target, ignore_index=ignore_index)
            if c.aux_weight == 0:
                return {"loss": ce, "ce": ce.detach()}
            labels = batch.semantic if c.aux_labels == "semantic" else batch.instance
            pair = grouping_loss(output.embedding, labels, generator)
            terms = {k: v.detach() for k, v in pair.items() if k.startswith("loss_iter")}
            terms.update(ce=ce.detach(), pair=pair["loss"].detach())
            terms["loss"] = ce + c.aux_weight * pair["loss"]
            return terms

        return loss

    def build_evaluator(self, cfg: ExperimentConfig) -> SemanticTaskEvaluator:
        return SemanticTaskEvaluator(cfg)


class SemanticTaskEvaluator:
    """Argmax class maps at the label resolution -> :class:`SemanticEvaluator` (+ boundary F)."""

    def __init__(self, cfg: ExperimentConfig) -> None:
        _, max_dist = _split_options(cfg)
        self.metrics = SemanticEvaluator(_num_classes(cfg), _ignore_index(cfg), max_dist)

    def reset(self) -> None:
        self.metrics.reset()

    def process(self, output: Any, batch: InstanceSample) -> None:
        """``output.semantic (B, C, h, w)`` logits vs ``batch.semantic (B, H, W)`` labels."""
        target = batch.semantic
        pred = _resize(_logits(output), target).argmax(1)
        self.metrics.process(pred.cpu(), target.cpu())

    def evaluate(self) -> dict[str, float]:
        """``mIoU``, ``pixel_acc``, ``mean_acc``, ``boundary_P``, ``boundary_R``, ``boundary_F``."""
        scores = self.metrics.evaluate()
        return {k: v for k, v in scores.items() if isinstance(v, float)}
