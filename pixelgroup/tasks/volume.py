"""The ``volume`` task: 3-D instance segmentation of stacks (nuclei, cells) with a spatial
embedding.

* Data: ``data.name: toy3d`` (synthetic stacks drawn on the fly) or ``volume_folder`` (TIFF
  stacks); samples are :class:`~pixelgroup.data.InstanceSample` with ``image (C, Z, Y, X)``
  and ``instance (Z, Y, X)``.
* Model: ``model.name: volume`` (:class:`~pixelgroup.models.volume.VolumeEmbeddingNet`):
  centre votes in physical units (``model.options.voxel_size``), their Fourier features on
  the sphere, and a foreground head.
* Loss: :class:`~pixelgroup.losses.RecurrentGroupingLoss` on the embedding of the foreground
  voxels (background ignored: it has no centre), the centre-vote loss
  (:func:`~pixelgroup.losses.center_vote_loss`, weight ``loss.center_weight``) and the
  foreground cross-entropy (key ``"semantic"``).
* Evaluation: each volume grouped (:func:`instances_from_volume`, ``cfg.grouping``:
  ``min_area`` in voxels, ``stride`` pools YX) and matched to its ground truth at IoU
  0.5..0.95 (:class:`~pixelgroup.metrics.MatchingEvaluator` on voxels: ``acc50`` =
  TP / (TP + FP + FN), ``f1_50``, ``precision50``, ``recall50``, ...).
* Predict: ``STEM_labels.tif`` (a 16-bit label stack, 32-bit above 65535 labels, with the
  voxel size) and ``STEM_slices.png`` (three orthogonal slices with the instances over them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from pixelgroup.config import ExperimentConfig, option_names, split_options
from pixelgroup.data import IGNORE_LABEL, AugmentedDataset, InstanceSample, build_dataset
from pixelgroup.data.transforms import AugmentOptions
from pixelgroup.data.volume_folder import VolumeAugment
from pixelgroup.data.volumes import read_volume, voxel_size_of, write_label_volume
from pixelgroup.errors import ConfigError, DataError
from pixelgroup.losses import center_vote_loss
from pixelgroup.metrics import InstancePrediction, InstanceTarget, MatchingEvaluator
from pixelgroup.models import EmbeddingOutput
from pixelgroup.postprocess.volumes import extract_volume_instances
from pixelgroup.tasks.base import (
    CenterLossOptions,
    InstanceSampleTask,
    LossFn,
    build_grouping_loss,
    foreground_ids,
    foreground_probability,
    semantic_ce,
    semantic_target,
    task_loss_options,
)
from pixelgroup.viz import loss_curves
from pixelgroup.viz.volumes import orthogonal_slices

__all__ = [
    "VolumeTask",
    "VolumeTaskEvaluator",
    "instances_from_volume",
    "voxel_size",
    "label_stack_path",
]

_log = logging.getLogger(__name__)


def label_stack_path(out_dir: str | Path, stem: str) -> Path:
    """Where predict writes the label stack of the volume file ``STEM.tif``."""
    return Path(out_dir) / f"{stem}_labels.tif"


def voxel_size(cfg: ExperimentConfig) -> tuple[float, float, float]:
    """``model.options.voxel_size`` ``(z, y, x)`` (default isotropic 1)."""
    size = cfg.model.options.get("voxel_size", (1.0, 1.0, 1.0))
    if not isinstance(size, (list, tuple)) or len(size) != 3:
        raise ConfigError(f"model.options.voxel_size must be [z, y, x], got {size!r}")
    return (float(size[0]), float(size[1]), float(size[2]))


def instances_from_volume(
    output: EmbeddingOutput, index: int, cfg: ExperimentConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Volume ``index`` of a batch's output -> ``labels (Z, Y, X)`` (0 background) and
    ``scores (K,)``, grouped with ``cfg.grouping`` (the foreground head decides the background
    when ``grouping.background`` is ``semantic``)."""
    g = cfg.grouping
    foreground = None
    if g.background == "semantic":
        foreground = foreground_probability(
            None if output.semantic is None else output.semantic[index]
        )
    return extract_volume_instances(
        output.embedding[index],
        bandwidth=g.bandwidth,
        num_iters=g.num_iters,
        threshold=g.threshold,
        min_area=g.min_area_pixels(),
        stride=g.stride,
        max_points=g.max_points,
        foreground=foreground,
        split_components=g.split_components,
    )


def _check_volumes(batch: torch.Tensor, what: str) -> None:
    if batch.dim() != 5:
        raise DataError(
            f"the volume task takes {what} (C, Z, Y, X); got a sample of shape "
            f"{tuple(batch.shape[1:])} (a 2-D image: use the instance task)"
        )


class VolumeTask(InstanceSampleTask):
    """3-D instance segmentation with the recurrent grouping loss and centre votes."""

    loss_options: type = CenterLossOptions
    tiles_images = False
    """A stack is seen whole, at its own size (no 3-D tiles yet)."""

    def in_channels(self, cfg: ExperimentConfig) -> int:
        channels = cfg.model.options.get("in_channels", 1)
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ConfigError(f"model.options.in_channels must be an int >= 1, got {channels!r}")
        return channels

    def read_image(self, cfg: ExperimentConfig, path: Path) -> torch.Tensor:
        """``(C, Z, Y, X)`` float32 in [0, 1] (:func:`~pixelgroup.data.volumes.read_volume`
        with ``data.options.normalize`` and ``channels``)."""
        normalize = str(cfg.data.options.get("normalize", "auto"))
        select = cfg.data.options.get("channels")
        volume = read_volume(path, self.in_channels(cfg), normalize, select)
        stored, model = voxel_size_of(path), voxel_size(cfg)
        if stored is not None and abs(stored[0] / stored[1] - model[0] / model[1]) > 0.05 * (
            model[0] / model[1]
        ):
            _log.warning(
                "%s: voxel size %s (z/y %.2f), the model was trained at %s (z/y %.2f): objects "
                "look stretched to it",
                path,
                stored,
                stored[0] / stored[1],
                list(model),
                model[0] / model[1],
            )
        return volume

    def build_dataset(self, cfg: ExperimentConfig, split: str) -> Dataset:
        """The split's volumes; the training split of ``data.options.augment: true`` through
        :class:`~pixelgroup.data.volume_folder.VolumeAugment` (``crop: [Z, Y, X]``,
        ``gamma``), seeded by (seed, epoch, item), ``data.batch_size`` x
        ``train.iters_per_epoch`` crops an epoch; ``data.options.scale`` (a 2-D zoom) is a
        ConfigError for the training split."""
        aug, options = split_options(AugmentOptions, cfg.data.options)
        if "scale" in cfg.data.options and split == cfg.data.train_split:
            raise ConfigError(
                "data.options.scale: volumes are not zoomed (their augmentation is crops, "
                "flips, turns and intensity, at model.options.voxel_size); remove it"
            )
        if cfg.data.name == "volume_folder":
            options = {"in_channels": self.in_channels(cfg), **options}
        dataset = build_dataset(
            cfg.data.name, cfg.data.root, split, options, also=option_names(AugmentOptions)
        )
        if not (aug.augment and split == cfg.data.train_split):
            return dataset
        if aug.crop is None or len(aug.crop) != 3:
            raise ConfigError(
                "data.options.augment of volumes needs data.options.crop: [Z, Y, X], got "
                f"{None if aug.crop is None else list(aug.crop)}"
            )
        length = max(len(dataset), cfg.data.batch_size * (cfg.train.iters_per_epoch or 1))  # type: ignore[arg-type]
        augment = VolumeAugment(aug.crop, gamma=aug.gamma)
        return AugmentedDataset(dataset, augment, seed=cfg.seed, length=length)

    def collate(self, samples: list[InstanceSample]) -> InstanceSample:
        shapes = {tuple(s.image.shape[1:]) for s in samples}
        if len(shapes) > 1:
            raise DataError(
                f"cannot batch volumes of different shapes ({sorted(shapes)[:2]}, Z x Y x X): "
                "set data.options.crop: [Z, Y, X] or data.batch_size: 1"
            )
        batch = super().collate(samples)
        _check_volumes(batch.image, "volumes")
        return batch

    def build_loss(self, cfg: ExperimentConfig) -> LossFn:
        center_weight = task_loss_options(self, cfg).center_weight
        grouping_loss = build_grouping_loss(cfg.loss, ignore_index=IGNORE_LABEL)
        scale = float(cfg.model.options.get("spatial_scale", 4.0))
        spacing = voxel_size(cfg)

        def loss(
            output: EmbeddingOutput, batch: InstanceSample, generator: torch.Generator
        ) -> dict[str, torch.Tensor]:
            instance = batch.instance.to(output.embedding.device)
            terms = grouping_loss(output.embedding, foreground_ids(instance), generator)
            if output.votes is not None:
                terms["center"] = center_vote_loss(
                    output.votes, instance, scale, IGNORE_LABEL, spacing=spacing
                )
                terms["loss"] = terms["loss"] + center_weight * terms["center"]
            if output.semantic is not None:
                target = semantic_target(instance, 2)
                terms["semantic"] = semantic_ce(output.semantic, target, IGNORE_LABEL)
                terms["loss"] = terms["loss"] + terms["semantic"]
            return terms

        return loss

    def build_evaluator(self, cfg: ExperimentConfig) -> VolumeTaskEvaluator:
        return VolumeTaskEvaluator(cfg)

    def postprocess(
        self, cfg: ExperimentConfig, output: EmbeddingOutput, image_size: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's output for one volume -> ``labels (Z, Y, X)`` and ``scores (K,)`` on the
        CPU (the model's output is at the volume's resolution)."""
        labels, scores = instances_from_volume(output, 0, cfg)
        return labels.cpu(), scores.cpu()

    @torch.no_grad()
    def figures(
        self,
        run: Callable[[torch.Tensor], Any],
        cfg: ExperimentConfig,
        out_dir: Path,
        *,
        history: Sequence[dict[str, float]] | None = None,
    ) -> list[Path]:
        """``slices_N.png`` for the first 2 volumes of ``cfg.data.eval_split`` (ground truth
        and prediction in three orthogonal slices) and ``loss_curves.png`` (with a
        ``history``). ``run``: the model at inference (an
        :class:`~pixelgroup.engine.inference.InferenceRunner`)."""
        out_dir = Path(out_dir)
        dataset = self.build_dataset(cfg, cfg.data.eval_split)
        paths = []
        for i in range(min(2, len(dataset))):  # type: ignore[arg-type]
            sample = dataset[i]
            labels, _ = instances_from_volume(run(sample.image[None]), 0, cfg)
            paths.append(
                orthogonal_slices(
                    sample.image[0].numpy(),
                    [sample.instance.numpy(), labels.cpu().numpy()],
                    out_dir / f"slices_{i}.png",
                    voxel_size=voxel_size(cfg),
                    titles=("ground truth", "predicted"),
                    title=f"{cfg.data.eval_split} volume {i}",
                )
            )
        if history:
            paths.append(loss_curves(history, out_dir / "loss_curves.png"))
        return paths

    def kept_outputs(self, out_dir: Path, stem: str) -> list[Path]:
        """The label stack and its slices are replaced only with ``--overwrite``."""
        return [label_stack_path(out_dir, stem), Path(out_dir) / f"{stem}_slices.png"]

    def write(
        self,
        cfg: ExperimentConfig,
        prediction: tuple[torch.Tensor, torch.Tensor],
        image: torch.Tensor,
        out_dir: Path,
        stem: str,
    ) -> list[Path]:
        """``STEM_labels.tif`` (label stack) and ``STEM_slices.png`` (orthogonal slices)."""
        labels, _ = prediction
        out_dir = Path(out_dir)
        return [
            write_label_volume(labels, label_stack_path(out_dir, stem), voxel_size(cfg)),
            orthogonal_slices(
                image[0].numpy(),
                labels.numpy(),
                self.kept_outputs(out_dir, stem)[1],
                voxel_size=voxel_size(cfg),
                title=stem,
            ),
        ]


class VolumeTaskEvaluator:
    """Groups each volume of a batch and scores it against its label stack
    (:class:`~pixelgroup.metrics.MatchingEvaluator`: object matching on voxels)."""

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.cfg = cfg
        self.matching = MatchingEvaluator(ignore_label=None)

    def reset(self) -> None:
        self.matching.reset()

    def process(self, output: EmbeddingOutput, batch: InstanceSample) -> None:
        predictions, targets = [], []
        for i, truth in enumerate(batch.instance):
            labels, scores = instances_from_volume(output, i, self.cfg)
            z, y, x = truth.shape
            # matching counts voxels: a (Z, Y, X) stack as a (Z·Y, X) map has the same IoUs
            predictions.append(InstancePrediction(labels.reshape(z * y, x).cpu().numpy(), scores))
            targets.append(InstanceTarget(truth.reshape(z * y, x).cpu().numpy()))
        self.matching.process(predictions, targets)

    def evaluate(self) -> dict[str, float]:
        return self.matching.evaluate()
