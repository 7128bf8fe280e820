"""The Task protocol, and what every task builds the same way from an experiment config.

A task is where one problem's data, model, loss, evaluator and prediction files meet. The
engine (:mod:`pixelgroup.engine`) trains, evaluates and predicts with any task through this
protocol only, looked up by ``cfg.task`` in :data:`pixelgroup.tasks.TASKS`. Tasks are stateless:
everything comes from the config. They share code through the functions here and the defaults
of :class:`TaskBase`, never by inheriting from or constructing one another. A task never runs
its model: the engine does, and hands the task the outputs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from pixelgroup._config_io import option
from pixelgroup.config import ExperimentConfig, GroupingConfig, LossConfig, parse_options
from pixelgroup.data import IGNORE_LABEL, AugmentedDataset, InstanceSample, collate_instances
from pixelgroup.data.io import read_image
from pixelgroup.data.lazy_image import LazyImage
from pixelgroup.errors import ConfigError, DataError
from pixelgroup.losses import RecurrentGroupingLoss
from pixelgroup.models import MODELS, build_model
from pixelgroup.ops.sphere import pool_to_sphere
from pixelgroup.postprocess import extract_instances
from pixelgroup.postprocess.tiles import Tile, stitch_cores
from pixelgroup.tasks.rehearsal import RehearsalPlan
from pixelgroup.viz.tutorial import FIGURE_LOOPS, tutorial_figures

__all__ = [
    "Task",
    "TaskBase",
    "TaskEvaluator",
    "TiledEvaluator",
    "LossFn",
    "InstanceSampleTask",
    "build_grouping_loss",
    "build_embedding_loss",
    "semantic_ce",
    "semantic_target",
    "foreground_ids",
    "foreground_probability",
    "grouping_arguments",
    "NoLossOptions",
    "CenterLossOptions",
    "GROUPING_LOSS_KEYS",
    "task_loss_options",
    "BACKGROUND_MODES",
    "check_background",
    "instances_from_embedding",
]

LossFn = Callable[[Any, Any, torch.Generator], dict[str, torch.Tensor]]
"""``loss(model_output, batch, generator) -> {"loss": scalar to backpropagate, name: term}``."""


class TaskEvaluator(Protocol):
    """Model outputs of a split -> metrics: ``reset()``, ``process(output, batch)`` per batch,
    ``evaluate() -> {name: value}``. It wraps one of :mod:`pixelgroup.metrics`' evaluators,
    which see predictions and targets only, never the model."""

    def reset(self) -> None: ...

    def process(self, output: Any, batch: Any) -> None: ...

    def evaluate(self) -> dict[str, float]: ...


@runtime_checkable
class TiledEvaluator(Protocol):
    """A :class:`TaskEvaluator` that also scores images the model saw in tiles without their
    whole output: ``process_tiles(tiles, batch, input_size)`` with, per image of the batch,
    the ``(tile, output)`` of each window (:meth:`~pixelgroup.engine.inference.InferenceRunner.
    tiles`, read once, in order) of the images seen at ``input_size = (h, w)``. Other
    evaluators get the windows' cores stitched."""

    def process_tiles(
        self, tiles: Sequence[Iterable[tuple[Tile, Any]]], batch: Any, input_size: tuple[int, int]
    ) -> None: ...


class Task(Protocol):
    """What the engine needs of a task; :class:`TaskBase` gives the defaults.

    Training and evaluation:

    * ``fit_config(cfg) -> cfg``: the config with what training chooses from its data filled
      in (``auto`` values), before anything is built; training stores that config;
    * ``build_dataset(cfg, split)``: a map-style dataset whose items batch with ``collate``;
    * ``set_epoch(dataset, epoch)``: called at each training epoch's start (per-epoch
      augmentation seeds);
    * ``collate(samples) -> batch`` and ``batch_image(batch) -> (B, C, H, W)`` model input;
    * ``build_model(cfg) -> nn.Module`` (its output goes to the loss and the evaluator);
    * ``build_loss(cfg) -> LossFn``;
    * ``loss_options``: the frozen dataclass of the ``loss`` keys this task reads beyond the
      grouping loss's (:func:`task_loss_options` reads them; the engine checks them before
      training, so an unknown key is an error naming the valid ones for this task);
    * ``build_evaluator(cfg) -> TaskEvaluator`` (it sees model outputs, never the model).

    Prediction on image files (the engine runs the model, see ``engine/inference.py``):

    * ``in_channels(cfg)``: C of the model's input images;
    * ``read_image(cfg, path) -> (C, H, W)`` float32: an image file as the model takes it;
    * ``postprocess(cfg, output, image_size) -> prediction``: the model's output for a batch
      of one image -> the task's prediction at ``image_size = (H, W)``;
    * ``postprocess_tiles(cfg, tiles, input_size, image_size) -> prediction``: the same from
      the ``(block, output)`` of each grouping block of an image the model saw at
      ``input_size`` (:meth:`~pixelgroup.engine.inference.InferenceRunner.blocks`, ``output``
      of the block's window); by default the cores stitched into one output, then
      ``postprocess``;
    * ``write(cfg, prediction, image (C, H, W), out_dir, stem) -> list[Path]``: its files;
    * ``writes_tiles``: an image larger than memory can be predicted through
      ``open_image(cfg, path) -> LazyImage`` (read window by window as ``read_image`` reads
      it whole) and ``write_tiles(cfg, tiles, image, out_dir, stem, overwrite, seen_size)
      -> list[Path]`` (its files written block by block, at its size, from the blocks'
      outputs of ``image``, the ``LazyImage`` they were read from, as the model saw it:
      resized to ``seen_size`` when given);
    * ``finish_prediction(out_dir, stems) -> list[Path]``: once after every image;
    * ``kept_outputs(out_dir, stem) -> list[Path]``: files of an earlier prediction of image
      ``stem`` that predict replaces only when told to overwrite (checked before any work);
    * ``reserved_stems``: image file stems whose files would collide with a combined file;
    * ``predicts_at_image_size``: ``postprocess`` brings any output size to ``image_size``, so
      the engine may downscale a large image for the model only;
    * ``inference_scale(cfg) -> float | None``: the scale at which training showed the
      images, for a model trained on crops of them (1: their own scale); evaluation and
      prediction show images at that scale (None: the model saw images resized to a size,
      so prediction caps their long side instead);
    * ``tiles_images``: the model may see a large image in 2-D tiles (for prediction and
      evaluation; a volume's stack is seen whole).

    Rehearsal on synthetic data (``pixelgroup rehearse``):

    * ``rehearsal(cfg, size) -> RehearsalPlan | None``: the synthetic release its data can be
      and the evaluator command (:mod:`pixelgroup.tasks.rehearsal`); None: cannot rehearse.

    Figures (``pixelgroup demo``):

    * ``figures(run, cfg, out_dir, history=) -> list[Path]``: PNGs of the model at inference
      (``run``) on the evaluation split; by default the toy tutorial's 2-D figures.
    """

    reserved_stems: tuple[str, ...]
    predicts_at_image_size: bool
    writes_tiles: bool
    loss_options: type
    tiles_images: bool

    def inference_scale(self, cfg: ExperimentConfig) -> float | None: ...

    def fit_config(self, cfg: ExperimentConfig) -> ExperimentConfig: ...

    def build_dataset(self, cfg: ExperimentConfig, split: str) -> Dataset: ...

    def set_epoch(self, dataset: Dataset, epoch: int) -> None: ...

    def collate(self, samples: list[Any]) -> Any: ...

    def batch_image(self, batch: Any) -> torch.Tensor: ...

    def build_model(self, cfg: ExperimentConfig) -> nn.Module: ...

    def build_loss(self, cfg: ExperimentConfig) -> LossFn: ...

    def build_evaluator(self, cfg: ExperimentConfig) -> TaskEvaluator: ...

    def in_channels(self, cfg: ExperimentConfig) -> int: ...

    def read_image(self, cfg: ExperimentConfig, path: Path) -> torch.Tensor: ...

    def postprocess(
        self, cfg: ExperimentConfig, output: Any, image_size: tuple[int, int]
    ) -> Any: ...

    def postprocess_tiles(
        self,
        cfg: ExperimentConfig,
        tiles: Iterable[tuple[Tile, Any]],
        input_size: tuple[int, int],
        image_size: tuple[int, int],
    ) -> Any: ...

    def write(
        self, cfg: ExperimentConfig, prediction: Any, image: torch.Tensor, out_dir: Path, stem: str
    ) -> list[Path]: ...

    def open_image(self, cfg: ExperimentConfig, path: Path) -> LazyImage: ...

    def write_tiles(
        self,
        cfg: ExperimentConfig,
        tiles: Iterable[tuple[Tile, Any]],
        image: LazyImage,
        out_dir: Path,
        stem: str,
        overwrite: bool,
        seen_size: tuple[int, int] | None = None,
    ) -> list[Path]: ...

    def finish_prediction(self, out_dir: Path, stems: Sequence[str]) -> list[Path]: ...

    def kept_outputs(self, out_dir: Path, stem: str) -> list[Path]: ...

    def rehearsal(self, cfg: ExperimentConfig, size: str) -> RehearsalPlan | None: ...

    def figures(
        self,
        run: Callable[[torch.Tensor], Any],
        cfg: ExperimentConfig,
        out_dir: Path,
        *,
        history: Sequence[dict[str, float]] | None = None,
    ) -> list[Path]: ...


@dataclass(frozen=True)
class NoLossOptions:
    """The ``loss`` keys of a task that reads none beyond the grouping loss's."""


@dataclass(frozen=True)
class CenterLossOptions:
    """``center_weight`` weighs the centre-vote loss of a spatial embedding
    (``model.options.embedding: spatial``, :func:`pixelgroup.losses.center_vote_loss`); the
    pair loss then compares foreground pixels only (the semantic head finds the background).
    Read by the instance and volume tasks."""

    center_weight: float = option(1.0, min=0)


GROUPING_LOSS_KEYS = tuple(
    f.name for f in dataclasses.fields(LossConfig) if f.name != "task_options"
)
"""The ``loss`` keys every task shares (:class:`~pixelgroup.config.LossConfig`'s)."""


def task_loss_options(task: Task, cfg: ExperimentConfig) -> Any:
    """``cfg.loss``'s task keys (``LossConfig.task_options``) read into ``task.loss_options``;
    an unknown key or a bad value is a :class:`ConfigError` naming ``loss.KEY`` and the keys
    valid for this task."""
    return parse_options(task.loss_options, cfg.loss.task_options, "loss", also=GROUPING_LOSS_KEYS)


class TaskBase:
    """Defaults of the :class:`Task` protocol: no reserved stems, predictions at the model's
    output size, :class:`~pixelgroup.data.AugmentedDataset` epochs set, ``model.options.
    in_channels`` (default 3) image channels read by :func:`pixelgroup.data.io.read_image`,
    nothing written after the last image, no rehearsal, images that may be tiled, no native
    scale, no ``auto`` config values. A task overrides what differs."""

    reserved_stems: tuple[str, ...] = ()
    predicts_at_image_size: bool = False
    writes_tiles: bool = False
    loss_options: type = NoLossOptions
    tiles_images: bool = True

    def inference_scale(self, cfg: ExperimentConfig) -> float | None:
        return None

    def fit_config(self, cfg: ExperimentConfig) -> ExperimentConfig:
        if "auto" in (
            cfg.grouping.min_area,
            cfg.model.options.get("spatial_scale"),
            cfg.data.options.get("scale"),
        ):
            raise ConfigError(
                "grouping.min_area / model.options.spatial_scale / data.options.scale 'auto' "
                "are chosen from the training masks by the instance task only; task "
                f"{cfg.task!r} needs numbers"
            )
        return cfg

    def set_epoch(self, dataset: Dataset, epoch: int) -> None:
        if isinstance(dataset, AugmentedDataset):
            dataset.set_epoch(epoch)

    def in_channels(self, cfg: ExperimentConfig) -> int:
        channels = cfg.model.options.get("in_channels", 3)
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ConfigError(f"model.options.in_channels must be an int >= 1, got {channels!r}")
        return channels

    def read_image(self, cfg: ExperimentConfig, path: Path) -> torch.Tensor:
        """``(C, H, W)`` float32 in [0, 1], C = :meth:`in_channels`."""
        return read_image(path, self.in_channels(cfg))

    def open_image(self, cfg: ExperimentConfig, path: Path) -> LazyImage:
        """The image :meth:`read_image` reads, to be read window by window."""
        return LazyImage(path, self.in_channels(cfg))

    def write_tiles(
        self,
        cfg: ExperimentConfig,
        tiles: Iterable[tuple[Tile, Any]],
        image: LazyImage,
        out_dir: Path,
        stem: str,
        overwrite: bool,
        seen_size: tuple[int, int] | None = None,
    ) -> list[Path]:
        raise NotImplementedError(f"{type(self).__name__} does not write predictions by tile")

    def postprocess(self, cfg: ExperimentConfig, output: Any, image_size: tuple[int, int]) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not predict image files")

    def postprocess_tiles(
        self,
        cfg: ExperimentConfig,
        tiles: Iterable[tuple[Tile, Any]],
        input_size: tuple[int, int],
        image_size: tuple[int, int],
    ) -> Any:
        """The windows' cores stitched into the output of the whole image the model saw
        (``input_size``), then :meth:`postprocess`: outputs of every tile cropped to its
        core (boundary maps, class logits)."""
        return self.postprocess(cfg, stitch_cores(tiles, input_size), image_size)

    def finish_prediction(self, out_dir: Path, stems: Sequence[str]) -> list[Path]:
        return []

    def kept_outputs(self, out_dir: Path, stem: str) -> list[Path]:
        return []

    def rehearsal(self, cfg: ExperimentConfig, size: str) -> RehearsalPlan | None:
        return None

    @torch.no_grad()
    def figures(
        self,
        run: Callable[[torch.Tensor], Any],
        cfg: ExperimentConfig,
        out_dir: Path,
        *,
        history: Sequence[dict[str, float]] | None = None,
    ) -> list[Path]:
        """The toy tutorial's figures (:func:`~pixelgroup.viz.tutorial.tutorial_figures`) of
        the first 6 images of ``cfg.data.eval_split``, grouped by ``cfg.grouping`` and shown
        after the loops of :data:`~pixelgroup.viz.tutorial.FIGURE_LOOPS` up to
        ``grouping.num_iters``. ``run``: the model at inference (``images (B, C, H, W) ->``
        its output, an :class:`~pixelgroup.engine.inference.InferenceRunner`)."""
        task = cast("Task", self)
        dataset = task.build_dataset(cfg, cfg.data.eval_split)
        samples = [dataset[i] for i in range(min(6, len(dataset)))]  # type: ignore[arg-type]
        batch = task.collate(samples)
        if not isinstance(batch, InstanceSample):
            raise ConfigError(
                f"the {cfg.task} task draws no figures: they show instance samples' groupings"
            )
        last = cfg.grouping.num_iters
        image = task.batch_image(batch)

        def group(embedding: torch.Tensor, num_iters: int | None) -> torch.Tensor:
            return instances_from_embedding(embedding, cfg, num_iters=num_iters)[0]

        return tutorial_figures(
            image,
            batch.instance,
            run(image).embedding,
            group,
            bandwidth=cfg.grouping.bandwidth,
            loops=sorted({t for t in FIGURE_LOOPS if t < last} | {last}),
            out_dir=out_dir,
            history=history,
        )


def build_grouping_loss(
    c: LossConfig, ignore_index: int | None
) -> Callable[[torch.Tensor, torch.Tensor, torch.Generator | None], dict[str, torch.Tensor]]:
    """The recurrent pair loss of the ``loss`` section, after ``loss.stride`` pooling.

    Returns ``fn(embedding (B, D, H, W), labels (B, H', W'), generator) -> terms``: with
    ``stride`` s > 1 the embedding is s x s average-pooled and re-normalised first
    (:func:`~pixelgroup.ops.sphere.pool_to_sphere`, the grouping's pooling), so the GBMS loops
    of the loss run on s² times fewer points (they are quadratic in N).
    """
    if c.stride < 1:
        raise ConfigError(f"loss.stride must be >= 1, got {c.stride}")
    try:
        criterion = RecurrentGroupingLoss(
            margin=c.margin,
            bandwidth=c.bandwidth,
            num_iters=c.num_iters,
            iter_weights=c.iter_weights,
            sample_ratio=c.sample_ratio,
            loop_stride=c.loop_stride,
            max_samples=c.max_samples,
            pos_weight=c.pos_weight,
            neg_weight=c.neg_weight,
            kind=c.kind,
            ignore_index=ignore_index,
        )
    except (ValueError, TypeError) as e:  # the constructor checks each value it is given
        raise ConfigError(f"loss: {e}") from e

    def apply(
        embedding: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None
    ) -> dict[str, torch.Tensor]:
        if c.stride > 1:
            embedding = pool_to_sphere(embedding, c.stride)
        return criterion(embedding, labels.to(embedding.device), generator=generator)

    return apply


def foreground_probability(logits: torch.Tensor | None) -> torch.Tensor:
    """``(h, w)`` (a volume's ``(z, y, x)``) foreground probability 1 - p(class 0) from
    ``(C, h, w)`` (``(C, z, y, x)``) logits; ``None`` (no semantic head) is a
    :class:`ConfigError`."""
    if logits is None:
        raise ConfigError(
            "grouping.background: semantic needs a model with a semantic head "
            "(model.options.num_classes: 2); this model returns no semantic logits"
        )
    return 1.0 - torch.softmax(logits.float(), dim=0)[0]


def foreground_ids(instance: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` (or ``(B, Z, Y, X)``) ids with the background (0) ignored, so that a
    spatial embedding's pair loss compares objects only (a background spans the image: it has
    no centre to vote for); the ids as they are when the batch has no object at all (the loss
    needs some pixels)."""
    foreground = instance.masked_fill(instance == 0, IGNORE_LABEL)
    return foreground if bool((foreground != IGNORE_LABEL).any()) else instance


def semantic_target(semantic: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The cross-entropy target of a ``num_classes`` head from a ``(B, H, W)`` (a volume's
    ``(B, Z, Y, X)``) semantic map (0 background, 1.. classes,
    :data:`~pixelgroup.data.IGNORE_LABEL` ignored): foreground (> 0) vs background for 2
    classes, the class ids themselves for more."""
    if num_classes == 2:
        return torch.where(semantic == IGNORE_LABEL, IGNORE_LABEL, (semantic > 0).long())
    if num_classes < 2:
        raise ConfigError(
            f"model.options.num_classes must be 2 (foreground / background) or the number of "
            f"classes + 1 for the instance task, got {num_classes}"
        )
    top = int(semantic.max())
    if top >= num_classes:
        raise DataError(
            f"the data has class id {top} but the semantic head has model.options.num_classes "
            f"= {num_classes} (class ids 0..{num_classes - 1}); use 2 (foreground) or the "
            f"number of classes + 1"
        )
    return semantic


def semantic_ce(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Pixel cross-entropy of ``logits (B, C, h, w)`` bilinearly resized to the label map
    ``target (B, H, W)``, ``ignore_index`` skipped."""
    if tuple(logits.shape[-2:]) != tuple(target.shape[-2:]):
        logits = F.interpolate(
            logits, size=tuple(target.shape[-2:]), mode="bilinear", align_corners=False
        )
    return F.cross_entropy(logits, target.to(logits.device), ignore_index=ignore_index)


def build_embedding_loss(c: LossConfig, ignore_index: int) -> LossFn:
    """The VOC-style loss: the grouping loss on ``output.embedding`` against
    ``batch.instance``, plus :func:`semantic_ce` (weight 1, key ``"semantic"``) when the model
    has a semantic head (``output.semantic`` not ``None``)."""
    grouping_loss = build_grouping_loss(c, ignore_index)

    def loss(output: Any, batch: InstanceSample, generator: torch.Generator):
        terms = grouping_loss(output.embedding, batch.instance, generator)
        if output.semantic is not None:
            terms["semantic"] = semantic_ce(output.semantic, batch.semantic, ignore_index)
            terms["loss"] = terms["loss"] + terms["semantic"]
        return terms

    return loss


def grouping_arguments(
    g: GroupingConfig, label_size: tuple[int, int], embedding_size: tuple[int, int]
) -> dict[str, Any]:
    """``cfg.grouping`` as keyword arguments of the grouping functions, in one unit.

    ``grouping.min_area`` is in pixels of the label map (``label_size``, the image); the
    grouping runs on the embedding (``embedding_size``), so it becomes
    ``min_area · h·w / (H·W)`` embedding pixels (at least 1). Returns ``bandwidth``,
    ``num_iters``, ``threshold``, ``min_area`` and ``max_points``.
    """
    scale = (embedding_size[0] * embedding_size[1]) / (label_size[0] * label_size[1])
    return {
        "bandwidth": g.bandwidth,
        "num_iters": g.num_iters,
        "threshold": g.threshold,
        "min_area": max(1, round(g.min_area_pixels() * scale)),
        "max_points": g.max_points,
    }


class InstanceSampleTask(TaskBase):
    """Defaults for a task whose batches are :class:`~pixelgroup.data.InstanceSample` and
    whose model comes from :data:`pixelgroup.models.MODELS`."""

    def collate(self, samples: list[InstanceSample]) -> InstanceSample:
        return collate_instances(samples)

    def batch_image(self, batch: InstanceSample) -> torch.Tensor:
        return batch.image

    def build_model(self, cfg: ExperimentConfig) -> nn.Module:
        return build_model(cfg.model.name, MODELS, **cfg.model.options)


BACKGROUND_MODES = ("largest", "semantic")
"""Values of ``grouping.background``."""


def check_background(cfg: ExperimentConfig) -> str:
    """``grouping.background``, checked: one of :data:`BACKGROUND_MODES`, ``semantic`` only
    with a semantic head."""
    mode = cfg.grouping.background
    if mode not in BACKGROUND_MODES:
        raise ConfigError(
            f"grouping.background must be one of {', '.join(BACKGROUND_MODES)}, got {mode!r}"
        )
    if mode == "semantic" and cfg.model.options.get("num_classes") is None:
        raise ConfigError(
            "grouping.background: semantic needs a model with a semantic head "
            "(model.options.num_classes: 2, trained by the instance task); set it or use "
            "grouping.background: largest"
        )
    return mode


def instances_from_embedding(
    embedding: torch.Tensor,
    cfg: ExperimentConfig,
    *,
    num_iters: int | None = None,
    image_size: tuple[int, int] | None = None,
    logits: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`~pixelgroup.postprocess.extract_instances` of one ``(D, h, w)`` embedding with
    ``cfg.grouping`` -> ``labels (H, W)`` (0 background) at ``image_size`` (default ``(h, w)``)
    and ``scores (K,)``. ``logits (C, h, w)`` of the semantic head decide the background when
    ``grouping.background`` is ``semantic``. ``num_iters`` overrides ``grouping.num_iters``
    (0: group the embedding as it is)."""
    g = cfg.grouping
    semantic = check_background(cfg) == "semantic"
    return extract_instances(
        embedding,
        bandwidth=g.bandwidth,
        num_iters=g.num_iters if num_iters is None else num_iters,
        threshold=g.threshold,
        min_area=g.min_area_pixels(),
        stride=g.stride,
        max_points=g.max_points,
        image_size=image_size,
        foreground=foreground_probability(logits) if semantic else None,
        split_components=g.split_components,
    )
