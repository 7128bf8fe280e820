"""The ``voc_instance`` task: VOC/SBD semantic instance segmentation, evaluated by mAP^r.

* Data: ``cfg.data.name`` ``"voc"``: a VOC 2012 root, an SBD ``dataset`` folder or ``.mat``
  samples (:func:`~pixelgroup.data.voc.open_instance_dataset`, options
  :class:`~pixelgroup.data.voc.VOCOptions`: ``ignore_index``; not ``size``) and this task's own
  :class:`~pixelgroup.data.voc_augment.VOCAugmentOptions`: the training split goes through
  :class:`~pixelgroup.data.voc_augment.VOCAugment` (the recipe's augmentation, seeded per
  ``(cfg.seed, epoch, index)`` by :class:`~pixelgroup.data.AugmentedDataset`) when ``augment``;
  both splits have the longest side capped at ``max_size`` (800; a small value makes a quick
  check cheap, mAP is then measured at that size) and sides rounded to multiples of 8. VOC
  batches are one image.
* Model: a registry model with a semantic head (``model.options.num_classes: 21``);
  ``model.options.frozen_stages`` (a :class:`~pixelgroup.models.DenseEmbeddingNet` argument)
  freezes the backbone's first stages, BatchNorm statistics included.
* Loss: the pair loss on the embedding plus pixel cross-entropy on the semantic head
  (:func:`~pixelgroup.tasks.base.build_embedding_loss`).
* Evaluation: :func:`~pixelgroup.postprocess.semantic_instances.semantic_instances` with
  ``cfg.grouping`` (``min_area`` in label-map pixels) on each image, masks at the label map's
  size, then :class:`~pixelgroup.metrics.InstanceMAPEvaluator` (mAP^r at IoU 0.5 and 0.7).
* Predict: an instance label PNG, an overlay captioned with VOC class names and a COCO JSON per
  image (:func:`~pixelgroup.tasks.predictions.write_semantic_prediction`).

A corrupt image or annotation stops the run with an error naming the file; nothing is skipped
silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from pixelgroup.config import ExperimentConfig, option_names, split_options
from pixelgroup.data import AugmentedDataset, InstanceSample, build_dataset
from pixelgroup.data.registry import dataset_options
from pixelgroup.data.voc_augment import VOCAugment, VOCAugmentOptions
from pixelgroup.errors import ConfigError
from pixelgroup.metrics import (
    InstanceMAPEvaluator,
    InstanceMAPPrediction,
    InstanceMAPTarget,
    InstancePrediction,
    InstanceTarget,
    MatchingEvaluator,
)
from pixelgroup.metrics.instance_map import VOC_CLASSES, instances_from_maps
from pixelgroup.postprocess.semantic_instances import SemanticInstances, semantic_instances
from pixelgroup.tasks.base import (
    InstanceSampleTask,
    LossFn,
    build_embedding_loss,
    grouping_arguments,
)
from pixelgroup.tasks.offline import MakeRecords, ResultsScoring
from pixelgroup.tasks.predictions import (
    masks_to_labels,
    prediction_files,
    write_semantic_prediction,
)
from pixelgroup.tasks.rehearsal import RehearsalPlan, results_evaluator

__all__ = [
    "VOCInstanceTask",
    "VOCInstanceEvaluator",
    "instances_from_output",
    "instance_map_target",
    "INSTANCE_SCORING",
]


def instance_map_target(
    instance: torch.Tensor, semantic: torch.Tensor, ignore_index: int
) -> InstanceMAPTarget:
    """The ground truth of one image's ``(H, W)`` instance and class maps: each instance's
    mask and majority class, void pixels (``ignore_index``) left out of every prediction."""
    gt_masks, gt_classes = instances_from_maps(instance, semantic, ignore_index)
    return InstanceMAPTarget(gt_masks, gt_classes, void=(instance == ignore_index).cpu())


class _ResultsEvaluator:
    """mAP^r of the class-labelled masks and, classes aside, the object matching of the masks
    painted into one label map (the higher score on top); records are pairs (one of each)."""

    def __init__(self) -> None:
        self.map = InstanceMAPEvaluator()
        self.matching = MatchingEvaluator(ignore_label=-1)

    def reset(self) -> None:
        self.map.reset()
        self.matching.reset()

    def process(
        self, predictions: Sequence[tuple[Any, Any]], targets: Sequence[tuple[Any, Any]]
    ) -> None:
        self.map.process([p for p, _ in predictions], [t for t, _ in targets])
        self.matching.process([p for _, p in predictions], [t for _, t in targets])

    def evaluate(self) -> dict[str, float]:
        return self.map.evaluate() | self.matching.evaluate()


def _start_scoring(ignore_index: int) -> tuple[_ResultsEvaluator, MakeRecords]:
    def records(
        sample: InstanceSample, masks: np.ndarray, scores: np.ndarray, classes: np.ndarray
    ) -> tuple[
        tuple[InstanceMAPPrediction, InstancePrediction], tuple[InstanceMAPTarget, InstanceTarget]
    ]:
        order = np.argsort(-scores, kind="stable")
        labels = masks_to_labels(torch.from_numpy(masks[order])).astype(np.int64)
        gt = np.where((sample.instance == ignore_index).numpy(), -1, sample.instance.numpy())
        return (
            (
                InstanceMAPPrediction(masks, classes, scores),
                InstancePrediction(labels, scores[order]),
            ),
            (
                instance_map_target(sample.instance, sample.semantic, ignore_index),
                InstanceTarget(gt),
            ),
        )

    return _ResultsEvaluator(), records


#: Saved class-labelled masks (COCO results with a ``category_id`` in 1..20, VOC order) scored
#: by VOC mAP^r and, classes aside, the object matching of StarDist / Cellpose (``acc50``,
#: ``f1_50``, ...) (:func:`~pixelgroup.tasks.offline.score_results`, ``pixelgroup
#: eval-instances``); an image without results counts its instances as missed.
INSTANCE_SCORING = ResultsScoring(
    "eval-instances", "prediction", "empty", _start_scoring, num_classes=len(VOC_CLASSES)
)


def _options(cfg: ExperimentConfig) -> tuple[VOCAugmentOptions, dict[str, Any], int]:
    """This task's own ``data.options``, the ``voc`` dataset's, and its ignore label."""
    if cfg.data.name != "voc":
        raise ConfigError(
            f"the voc_instance task reads data.name 'voc' (VOC 2012, SBD or .mat samples), "
            f"got {cfg.data.name!r}"
        )
    o, rest = split_options(VOCAugmentOptions, cfg.data.options)
    if o.max_size < 8:
        raise ConfigError(f"data.options.max_size must be >= 8, got {o.max_size}")
    voc = dataset_options("voc", rest, also=option_names(VOCAugmentOptions))
    if voc.size is not None:
        raise ConfigError(
            "data.options.size does not apply to the voc_instance task: images keep their "
            "aspect ratio, the longest side capped by data.options.max_size"
        )
    return o, rest, voc.ignore_index


def _semantic_logits(output: Any) -> torch.Tensor:
    if output.semantic is None:
        raise ConfigError(
            "the voc_instance task needs a model with a semantic head "
            "(model.options.num_classes: 21); this model returns no semantic logits"
        )
    return output.semantic


def instances_from_output(
    embedding: torch.Tensor,
    logits: torch.Tensor,
    image_size: tuple[int, int],
    cfg: ExperimentConfig,
) -> SemanticInstances:
    """Class-labelled instances of one image: ``embedding (D, H', W')``, ``logits (C, H', W')``
    -> masks ``(K, *image_size)``, classes, scores, with ``cfg.grouping``."""
    size = (int(embedding.shape[1]), int(embedding.shape[2]))
    return semantic_instances(
        embedding,
        logits,
        image_size=image_size,
        **grouping_arguments(cfg.grouping, image_size, size),
    )


class VOCInstanceTask(InstanceSampleTask):
    """Semantic instance segmentation on VOC/SBD (see the module docstring)."""

    def build_dataset(self, cfg: ExperimentConfig, split: str) -> Dataset:
        o, rest, ignore_index = _options(cfg)
        dataset = build_dataset("voc", cfg.data.root, split, rest)
        train = o.augment and split == cfg.data.train_split
        augment = VOCAugment(train, max_size=o.max_size, ignore_index=ignore_index)
        return AugmentedDataset(dataset, augment, seed=cfg.seed)

    def build_loss(self, cfg: ExperimentConfig) -> LossFn:
        return build_embedding_loss(cfg.loss, _options(cfg)[2])

    def build_evaluator(self, cfg: ExperimentConfig) -> VOCInstanceEvaluator:
        return VOCInstanceEvaluator(cfg)

    def rehearsal(self, cfg: ExperimentConfig, size: str) -> RehearsalPlan:
        """A synthetic SBD release, scored by ``pixelgroup eval-instances``."""
        _options(cfg)
        return RehearsalPlan("sbd", evaluator=results_evaluator(INSTANCE_SCORING))

    def postprocess(
        self, cfg: ExperimentConfig, output: Any, image_size: tuple[int, int]
    ) -> SemanticInstances:
        """The model's output for one image -> its semantic instances at ``image_size``."""
        logits = _semantic_logits(output)
        return instances_from_output(output.embedding[0], logits[0], image_size, cfg)

    def write(
        self,
        cfg: ExperimentConfig,
        prediction: SemanticInstances,
        image: torch.Tensor,
        out_dir: Path,
        stem: str,
    ) -> list[Path]:
        """Semantic instances of ``image (3, H, W)`` in [0, 1] -> ``STEM_labels.png``,
        ``STEM_overlay.png``, ``STEM.json`` in ``out_dir``."""
        return write_semantic_prediction(out_dir, stem, image, prediction, VOC_CLASSES)

    def kept_outputs(self, out_dir: Path, stem: str) -> list[Path]:
        """Replaced only with ``--overwrite``: the files :meth:`write` writes."""
        return prediction_files(out_dir, stem)


class VOCInstanceEvaluator:
    """Semantic instances from each image of a batch, scored by VOC mAP^r."""

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.cfg = cfg
        self.ignore_index = _options(cfg)[2]
        self.metrics = InstanceMAPEvaluator()

    def reset(self) -> None:
        self.metrics.reset()

    def process(self, output: Any, batch: InstanceSample) -> None:
        semantic = _semantic_logits(output)
        predictions, targets = [], []
        for embedding, logits, instance, classes in zip(
            output.embedding, semantic, batch.instance, batch.semantic, strict=True
        ):
            pred = instances_from_output(embedding, logits, tuple(instance.shape), self.cfg)
            predictions.append(
                InstanceMAPPrediction(pred.masks.cpu(), pred.classes.cpu(), pred.scores.cpu())
            )
            targets.append(instance_map_target(instance, classes, self.ignore_index))
        self.metrics.process(predictions, targets)

    def evaluate(self) -> dict[str, float]:
        return self.metrics.evaluate()
