"""The ``semantic`` task: semantic segmentation with the grouping loss as an auxiliary term.

It measures the paper's claim that the pixel-pair loss helps a classification task
(docs/semantic.md).

* Data: any entry of :data:`pixelgroup.data.DATASETS` (``"voc"``: VOC 2012 / SBD / the ``.mat``
  samples, options ``size``, ``ignore_index``; ``"toy"``: semantic = digit class + 1, 0
  background, 11 classes). ``data.options.boundary_max_dist`` (0.0075, a fraction of the image
  diagonal, :class:`SemanticOptions`) is this task's own: the matching
  radius of the boundary F score; the rest goes to the dataset.
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
* Predict: ``STEM_classes.png`` (uint8 class ids) and ``STEM_overlay.png`` per image.
* Evaluation: argmax of the resized logits ->
  :class:`~pixelgroup.metrics.semantic.SemanticEvaluator`: ``mIoU``, ``pixel_acc``,
  ``mean_acc``, ``boundary_P``, ``boundary_R``, ``boundary_F``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from pixelgroup._config_io import option
from pixelgroup.config import ExperimentConfig, option_names, split_options
from pixelgroup.data import InstanceSample, build_dataset
from pixelgroup.data.io import write_png
from pixelgroup.data.registry import dataset_options
from pixelgroup.data.voc import VOCOptions
from pixelgroup.errors import ConfigError
from pixelgroup.metrics import SemanticEvaluator, SemanticPrediction, SemanticTarget
from pixelgroup.tasks.base import (
    InstanceSampleTask,
    LossFn,
    build_grouping_loss,
    task_loss_options,
)
from pixelgroup.tasks.rehearsal import RehearsalPlan
from pixelgroup.viz.colors import overlay

__all__ = [
    "SemanticTask",
    "SemanticTaskEvaluator",
    "SemanticOptions",
    "SemanticLossOptions",
    "AUX_LABELS",
]

AUX_LABELS = ("semantic", "instance")
_NO_IGNORE = 255  # datasets without void pixels (the toy) never use this label


@dataclass(frozen=True)
class SemanticLossOptions:
    """The semantic task's ``loss`` keys: ``aux_weight`` of the grouping loss beside the
    cross-entropy (0: not computed), on the ``aux_labels`` map (``"semantic"`` classes or
    ``"instance"`` ids)."""

    aux_weight: float = option(1.0, min=0)
    aux_labels: str = option("semantic", choices=AUX_LABELS)


@dataclass(frozen=True)
class SemanticOptions:
    """The semantic task's own ``data.options`` key (the rest go to the dataset):
    ``boundary_max_dist``, the boundary-F matching radius as a fraction of the diagonal."""

    boundary_max_dist: float = option(0.0075, above=0)


def _options(cfg: ExperimentConfig) -> tuple[SemanticOptions, dict[str, Any], int]:
    """This task's own options, the dataset's options, and the ignore label."""
    own, rest = split_options(SemanticOptions, cfg.data.options)
    if not own.boundary_max_dist > 0:
        raise ConfigError(
            f"data.options.boundary_max_dist must be > 0, got {own.boundary_max_dist}"
        )
    data = dataset_options(cfg.data.name, rest, also=option_names(SemanticOptions))
    ignore_index = data.ignore_index if isinstance(data, VOCOptions) else _NO_IGNORE
    return own, rest, ignore_index


def _num_classes(cfg: ExperimentConfig) -> int:
    n = cfg.model.options.get("num_classes")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ConfigError(
            f"the semantic task needs model.options.num_classes >= 2 (11 for the toy digits, "
            f"21 for VOC), got {n!r}"
        )
    return n


def _resize(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, C, h, w)`` logits bilinearly resized to ``size = (H, W)``."""
    if tuple(logits.shape[-2:]) == size:
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def _logits(output: Any) -> torch.Tensor:
    if output.semantic is None:
        raise ConfigError(
            "the model output has no semantic logits: build it with model.options.num_classes"
        )
    return output.semantic


class SemanticTask(InstanceSampleTask):
    """Semantic segmentation + auxiliary grouping loss (see the module docstring)."""

    loss_options: type = SemanticLossOptions

    def build_dataset(self, cfg: ExperimentConfig, split: str) -> Dataset:
        _, rest, _ = _options(cfg)
        return build_dataset(cfg.data.name, cfg.data.root, split, rest)

    def build_model(self, cfg: ExperimentConfig) -> nn.Module:
        _num_classes(cfg)
        return super().build_model(cfg)

    def build_loss(self, cfg: ExperimentConfig) -> LossFn:
        c = task_loss_options(self, cfg)
        ignore_index = _options(cfg)[2]
        grouping_loss = build_grouping_loss(cfg.loss, ignore_index)

        def loss(
            output: Any, batch: InstanceSample, generator: torch.Generator
        ) -> dict[str, torch.Tensor]:
            logits = _logits(output)
            target = batch.semantic.to(logits.device)
            size = (int(target.shape[-2]), int(target.shape[-1]))
            ce = F.cross_entropy(_resize(logits, size), target, ignore_index=ignore_index)
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

    def rehearsal(self, cfg: ExperimentConfig, size: str) -> RehearsalPlan | None:
        """A synthetic VOC 2012 release (VOC data only); at the tiny size a
        ``data.options.size`` resize becomes 32 x 32, smaller than the tiny images."""
        if cfg.data.name != "voc":
            return None
        tiny = size == "tiny" and "size" in cfg.data.options
        return RehearsalPlan("voc", ("data.options.size=[32, 32]",) if tiny else ())

    def postprocess(
        self, cfg: ExperimentConfig, output: Any, image_size: tuple[int, int]
    ) -> np.ndarray:
        """The model's output for one image -> ``(H, W)`` uint8 class ids at ``image_size``."""
        classes = _resize(_logits(output), image_size)[0].argmax(0).cpu().numpy()
        return classes.astype(np.uint8)

    def write(
        self,
        cfg: ExperimentConfig,
        prediction: np.ndarray,
        image: torch.Tensor,
        out_dir: Path,
        stem: str,
    ) -> list[Path]:
        """Class map of ``image (C, H, W)`` -> ``STEM_classes.png`` (uint8 ids) and
        ``STEM_overlay.png`` in ``out_dir``."""
        paths = self.kept_outputs(out_dir, stem)
        write_png(prediction, paths[0])
        blended = overlay(image.permute(1, 2, 0).numpy(), prediction)
        write_png((blended * 255).round().astype(np.uint8), paths[1])
        return paths

    def kept_outputs(self, out_dir: Path, stem: str) -> list[Path]:
        """``STEM_classes.png`` and ``STEM_overlay.png``: replaced only with ``--overwrite``."""
        return [Path(out_dir) / f"{stem}_classes.png", Path(out_dir) / f"{stem}_overlay.png"]


class SemanticTaskEvaluator:
    """Argmax class maps at the label resolution -> :class:`SemanticEvaluator` (+ boundary F)."""

    def __init__(self, cfg: ExperimentConfig) -> None:
        own, _, ignore_index = _options(cfg)
        self.metrics = SemanticEvaluator(_num_classes(cfg), ignore_index, own.boundary_max_dist)

    def reset(self) -> None:
        self.metrics.reset()

    def process(self, output: Any, batch: InstanceSample) -> None:
        """``output.semantic (B, C, h, w)`` logits vs ``batch.semantic (B, H, W)`` labels."""
        target = batch.semantic
        pred = _resize(_logits(output), (target.shape[-2], target.shape[-1])).argmax(1).cpu()
        self.metrics.process(
            [SemanticPrediction(p) for p in pred], [SemanticTarget(t) for t in target.cpu()]
        )

    def evaluate(self) -> dict[str, float]:
        """``mIoU``, ``pixel_acc``, ``mean_acc``, ``boundary_P``, ``boundary_R``, ``boundary_F``."""
        scores = self.metrics.evaluate()
        return {k: v for k, v in scores.items() if isinstance(v, float)}
