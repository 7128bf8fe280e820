"""The ``proposals`` task: VOC-style instance data, the dense model, AR@k of mask proposals.

* Data: ``cfg.data.name`` ``"voc"`` (:data:`pixelgroup.data.DATASETS`): ``cfg.data.root`` a VOC
  2012 root, an SBD ``dataset`` folder or a folder of sample ``.mat`` files; options
  :class:`~pixelgroup.data.voc.VOCOptions` (``size: [H, W]`` resizes every sample, needed for
  batches > 1; ``ignore_index`` 255).
* Loss: :class:`~pixelgroup.losses.RecurrentGroupingLoss` on the embedding with VOC's void
  pixels ignored, plus, when the model has a semantic head, pixel cross-entropy on it (weight 1,
  void ignored).
* Evaluation: :func:`pixelgroup.postprocess.propose` on each embedding at bandwidths
  ``(δ, 2δ, 3δ)`` with δ = ``cfg.grouping.bandwidth`` (and its ``num_iters``, ``threshold``,
  ``min_area`` in label-map pixels, ``max_points``), masks upsampled to the label map's size,
  then :class:`~pixelgroup.metrics.ProposalEvaluator` (AR@k, recall@0.5@k). AR is measured at
  the resolution of the samples as loaded (after ``size``, if given).
* Predict: ``STEM.json`` per image, the ranked proposals as COCO results (RLE masks, scores),
  which :data:`PROPOSAL_SCORING` (``pixelgroup eval-proposals``) scores offline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from pixelgroup._atomic import atomic_path
from pixelgroup.config import ExperimentConfig
from pixelgroup.data import InstanceSample, build_dataset
from pixelgroup.data.coco import masks_to_results
from pixelgroup.data.registry import dataset_options
from pixelgroup.data.voc import VOCOptions, instance_masks
from pixelgroup.errors import ConfigError
from pixelgroup.metrics import ProposalEvaluator, ProposalPrediction, ProposalTarget
from pixelgroup.postprocess.proposals import Proposals, propose
from pixelgroup.tasks.base import (
    InstanceSampleTask,
    LossFn,
    build_embedding_loss,
    grouping_arguments,
)
from pixelgroup.tasks.offline import MakeRecords, ResultsScoring
from pixelgroup.tasks.rehearsal import RehearsalPlan, results_evaluator

__all__ = [
    "ProposalTask",
    "ProposalTaskEvaluator",
    "proposals_from_embedding",
    "proposal_target",
    "PROPOSAL_SCORING",
]


def proposal_target(instance: torch.Tensor, ignore_index: int) -> ProposalTarget:
    """The ground truth of one ``(H, W)`` instance map: its instance masks, void pixels
    (``ignore_index``) left out of every proposal."""
    return ProposalTarget(
        instance_masks(instance, ignore_index), void=(instance == ignore_index).cpu()
    )


def _start_scoring(ignore_index: int) -> tuple[ProposalEvaluator, MakeRecords]:
    def records(
        sample: InstanceSample, masks: Any, scores: Any, _: Any
    ) -> tuple[ProposalPrediction, ProposalTarget]:
        return ProposalPrediction(masks, scores), proposal_target(sample.instance, ignore_index)

    return ProposalEvaluator(), records


#: Saved proposals (``pixelgroup predict``'s COCO results) scored by AR@k
#: (:func:`~pixelgroup.tasks.offline.score_results`, ``pixelgroup eval-proposals``); every
#: ground-truth image needs proposals.
PROPOSAL_SCORING = ResultsScoring("eval-proposals", "proposal", "error", _start_scoring)


def proposals_from_embedding(
    embedding: torch.Tensor, image_size: tuple[int, int], cfg: ExperimentConfig
) -> Proposals:
    """Proposals ``(K, *image_size)`` from one ``(D, H', W')`` embedding with ``cfg.grouping``."""
    g = grouping_arguments(cfg.grouping, image_size, (embedding.shape[1], embedding.shape[2]))
    return propose(
        embedding,
        image_size=image_size,
        bandwidths=(g["bandwidth"], 2 * g["bandwidth"], 3 * g["bandwidth"]),
        num_iters=(g["num_iters"],),
        threshold=g["threshold"],
        min_area=g["min_area"],
        max_points=g["max_points"],
    )


def _options(cfg: ExperimentConfig) -> VOCOptions:
    if cfg.data.name != "voc":
        raise ConfigError(
            f"the {cfg.task} task reads data.name 'voc' (VOC 2012, SBD or .mat samples, told "
            f"apart by data.root's layout), got {cfg.data.name!r}"
        )
    return dataset_options("voc", cfg.data.options)


class ProposalTask(InstanceSampleTask):
    """Class-agnostic instance embedding on VOC/SBD, evaluated as ranked mask proposals."""

    def build_dataset(self, cfg: ExperimentConfig, split: str) -> Dataset:
        _options(cfg)
        return build_dataset(cfg.data.name, cfg.data.root, split, cfg.data.options)

    def build_loss(self, cfg: ExperimentConfig) -> LossFn:
        return build_embedding_loss(cfg.loss, _options(cfg).ignore_index)

    def build_evaluator(self, cfg: ExperimentConfig) -> ProposalTaskEvaluator:
        return ProposalTaskEvaluator(cfg)

    def rehearsal(self, cfg: ExperimentConfig, size: str) -> RehearsalPlan:
        """A synthetic VOC 2012 release, scored by ``pixelgroup eval-proposals``."""
        _options(cfg)
        return RehearsalPlan("voc", evaluator=results_evaluator(PROPOSAL_SCORING))

    def postprocess(
        self, cfg: ExperimentConfig, output: Any, image_size: tuple[int, int]
    ) -> Proposals:
        """The model's output for one image -> its ranked proposals ``(K, *image_size)``."""
        return proposals_from_embedding(output.embedding[0], image_size, cfg)

    def write(
        self,
        cfg: ExperimentConfig,
        prediction: Proposals,
        image: torch.Tensor,
        out_dir: Path,
        stem: str,
    ) -> list[Path]:
        """Ranked proposals -> ``out_dir/STEM.json`` (COCO results)."""
        masks, scores = prediction.masks.cpu().numpy(), prediction.scores.cpu().numpy()
        records = masks_to_results(stem, masks, scores)
        path = self.kept_outputs(out_dir, stem)[0]
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(records, indent=1) + "\n")
        return [path]

    def kept_outputs(self, out_dir: Path, stem: str) -> list[Path]:
        """``STEM.json``: replaced only with ``--overwrite``."""
        return [Path(out_dir) / f"{stem}.json"]


class ProposalTaskEvaluator:
    """Proposals from each embedding of a batch, scored against its instance masks."""

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.cfg = cfg
        self.ignore_index = _options(cfg).ignore_index
        self.metrics = ProposalEvaluator()

    def reset(self) -> None:
        self.metrics.reset()

    def process(self, output: Any, batch: InstanceSample) -> None:
        predictions, targets = [], []
        for embedding, instance in zip(output.embedding, batch.instance, strict=True):
            props = proposals_from_embedding(embedding, tuple(instance.shape), self.cfg)
            predictions.append(ProposalPrediction(props.masks.cpu(), props.scores.cpu()))
            targets.append(proposal_target(instance, self.ignore_index))
        self.metrics.process(predictions, targets)

    def evaluate(self) -> dict[str, float]:
        return self.metrics.evaluate()
