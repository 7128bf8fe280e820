"""The ``voc_instance`` task: VOC/SBD semantic instance segmentation, evaluated by mAP^r.

Plugs into :data:`pixelgroup.engine.tasks.TASKS`. It is the ``proposals`` task
(:class:`~pixelgroup.engine.proposals.ProposalTask`: same readers, same loss — the pair loss on
the embedding plus pixel cross-entropy on the semantic head) with two changes:

* Data: the training split goes through :class:`~pixelgroup.data.voc_augment.VOCAugment`
  (the recipe's augmentation, seeded per ``(cfg.seed, epoch, index)``); the evaluation split
  only has its sides rounded to multiples of 8. ``cfg.data.options``: ``augment`` (default
  true), ``max_size`` (longest side, default 800, both splits: a small value makes a quick
  check cheap; mAP is then measured at that size), ``ignore_index`` (255); ``size`` is not
  used (VOC batches are one image).
* Evaluation: :func:`~pixelgroup.postprocess.semantic_instances.semantic_instances` with
  ``cfg.grouping`` on each image (the model needs a semantic head,
  ``model.options.num_classes: 21``), masks at the label map's size, then
  :class:`~pixelgroup.metrics.instance_map.InstanceMAPEvaluator` (mAP^r at IoU 0.5 and 0.7).
* Model: ``cfg.model.options.frozen_stages`` n (default 0) is taken out before building the
  model and stops the gradient into the backbone's first n stages (stem, res2, res3 for n = 3:
  the recipe's "everything below res4 frozen"). A :class:`~pixelgroup.models.dense.
  DenseEmbeddingNet` is required then.
* Predict: :meth:`VOCInstanceTask.write_prediction` writes an instance label PNG, an overlay
  captioned with VOC class names and a COCO JSON per image
  (:func:`~pixelgroup.engine.predict.write_semantic_prediction`).

A corrupt image or annotation stops the run with an error naming the file (the readers raise
``ValueError``); nothing is skipped silently.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from pixelgroup.data.sample import InstanceSample
from pixelgroup.data.voc_augment import AugmentedDataset, VOCAugment
from pixelgroup.engine.proposals import ProposalTask
from pixelgroup.experiment import ExperimentConfig
from pixelgroup.metrics.instance_map import InstanceMAPEvaluator, instances_from_maps
from pixelgroup.postprocess.semantic_instances import SemanticInstances, semantic_instances

__all__ = ["VOCInstanceTask", "VOCInstanceEvaluator", "instances_from_output"]


def _split_options(cfg: ExperimentConfig) -> tuple[ExperimentConfig, bool, int]:
    """``cfg`` without this task's own data options (for ProposalTask), ``augment``,
    ``max_size``."""
    options = dict(cfg.data.options)
    augment = options.pop("augment", True)
    max_size = options.pop("max_size", 800)
    if not isinstance(augment, bool):
        raise ValueError(f"data.options.augment must be true or false, got {augment!r}")
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 8:
        raise ValueError(f"data.options.max_size must be an int >= 8, got {max_size!r}")
    if "size" in options:
        raise ValueError(
            "data.options.size is not used by voc_instance (batch 1, any size); "
            "use data.options.max_size"
        )
    return replace(cfg, data=replace(cfg.data, options=options)), augment, max_size


def _semantic_logits(output: Any) -> torch.Tensor:
    semantic = getattr(output, "semantic", None)
    if semantic is None:
        raise ValueError(
            "the voc_instance task needs a model with a semantic head "
            "(model.options.num_classes: 21); this model returns no semantic logits"
        )
    return semantic


def instances_from_output(
    embedding: Any, logits: Any, image_size: tuple[int, int], cfg: ExperimentConfig
) -> SemanticInstances:
    """Class-labelled instances of one image: ``embedding (D, H', W')``, ``logits (C, H', W')``
    -> masks ``(K, *image_size)``, classes, scores, with ``cfg.grouping``."""
    g = cfg.grouping
    return semantic_instances(
        embedding,
        logits,
        image_size=image_size,
        bandwidth=g.bandwidth,
        num_iters=g.num_iters,
        threshold=g.threshold,
        min_area=g.min_area,
        max_points=g.max_points,
    )


class VOCInstanceTask(ProposalTask):
    """Semantic instance segmentation on VOC/SBD (see the module docstring)."""

    def build_dataset(self, cfg: ExperimentConfig, split: str) -> Dataset:
        base_cfg, augment, max_size = _split_options(cfg)
        dataset = super().build_dataset(base_cfg, split)
        train = augment and split == cfg.data.train_split
        return AugmentedDataset(dataset, VOCAugment(train, max_size=max_size), seed=cfg.seed)

    def build_model(self, cfg: ExperimentConfig) -> nn.Module:
        options = dict(cfg.model.options)
        frozen = options.pop("frozen_stages", 0)
        model = super().build_model(replace(cfg, model=replace(cfg.model, options=options)))
        if isinstance(frozen, bool) or not isinstance(frozen, int) or not 0 <= frozen <= 5:
            raise ValueError(f"model.options.frozen_stages must be an int in 0..5, got {frozen!r}")
        if frozen:
            backbone = getattr(model, "backbone", None)
            if backbone is None or not hasattr(backbone, "layers"):
                raise ValueError(
                    f"model.options.frozen_stages needs a ResNet backbone with stages, got "
                    f"model {cfg.model.name!r}"
                )
            stages = [backbone.stem, *backbone.layers]
            for stage in stages[:frozen]:
                stage.requires_grad_(False)
        return model

    def build_loss(self, cfg: ExperimentConfig):
        return super().build_loss(_split_options(cfg)[0])

    def build_evaluator(self, cfg: ExperimentConfig) -> VOCInstanceEvaluator:  # type: ignore[override]
        return VOCInstanceEvaluator(cfg)

    @torch.no_grad()
    def write_prediction(
        self, model: nn.Module, cfg: ExperimentConfig, image: torch.Tensor, out_dir: Path, stem: str
    ) -> list[Path]:
        """Semantic instances of ``image (3, H, W)`` in [0, 1] -> ``STEM_labels.png``,
        ``STEM_overlay.png``, ``STEM.json`` in ``out_dir`` (see ``write_semantic_prediction``)."""
        from pixelgroup.engine.predict import write_semantic_prediction

        device = next(model.parameters()).device
        model.eval()
        output = model(image[None].to(device))
        logits = _semantic_logits(output)
        size = (int(image.shape[1]), int(image.shape[2]))
        instances = instances_from_output(output.embedding[0], logits[0], size, cfg)
        return write_semantic_prediction(out_dir, stem, image, instances)


class VOCInstanceEvaluator:
    """Semantic instances from each image of a batch, scored by VOC mAP^r."""

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.cfg = cfg
        self.ignore_index = cfg.data.options.get("ignore_index", 255)
        self.metrics = InstanceMAPEvaluator()

    def reset(self) -> None:
        self.metrics.reset()

    def process(self, output: Any, batch: InstanceSample) -> None:
        semantic = _semantic_logits(output)
        for embedding, logits, instance, classes in zip(
            output.embedding, semantic, batch.instance, batch.semantic, strict=True
        ):
            pred = instances_from_output(embedding, logits, tuple(instance.shape), self.cfg)
            gt_masks, gt_classes = instances_from_maps(instance, classes, self.ignore_index)
            self.metrics.process(
                pred.masks.cpu(),
                pred.classes.cpu(),
                pred.scores.cpu(),
                gt_masks,
                gt_classes,
                void=(instance == self.ignore_index).cpu(),
            )

    def evaluate(self) -> dict[str, float]:
        return self.metrics.evaluate()
