"""The ``instance`` task: class-agnostic instance segmentation (the toy tutorial, your data).

* Data: any entry of :data:`pixelgroup.data.DATASETS` (``cfg.data.name``: ``toy``, ``folder``,
  ``coco``, ``voc``) with its typed ``data.options``. Pixels labelled
  :data:`~pixelgroup.data.IGNORE_LABEL` (COCO's ``iscrowd`` regions) take no part in the loss
  and count as crowd in the metrics.
* Model: any entry of :data:`pixelgroup.models.MODELS`, e.g. the toy network (embedding at the
  image's resolution) or the pretrained ``dense`` one (stride 4 or 8).
* Loss: :class:`~pixelgroup.losses.RecurrentGroupingLoss` on the embedding (``cfg.loss``), plus
  pixel cross-entropy (key ``"semantic"``) when the model has a semantic head
  (``model.options.num_classes``): with 2 classes foreground vs background, with more the
  dataset's class ids (``batch.semantic``: COCO's contiguous category index).
* Evaluation: each embedding grouped by :func:`instances_from_embedding` (``cfg.grouping``) into
  a label map at the ground truth's resolution, then
  :class:`~pixelgroup.metrics.InstanceEvaluator` (AP@0.5 / AP@0.7, mean best overlap, covering,
  adjusted Rand index), :class:`~pixelgroup.metrics.MatchingEvaluator` (one-to-one object
  matching at IoU 0.5..0.95: ``acc50`` = TP / (TP + FP + FN), ``f1_50``, ``pq50``, ...; the
  numbers of StarDist / Cellpose) and :class:`~pixelgroup.metrics.CocoEvaluator` (``coco_AP``,
  ``coco_AP50``, ``coco_AP75``, ``coco_AR100``, ...: COCOeval's mask numbers, crowd regions
  ignored; always reported, as they cost a few percent of the grouping).
* Background: ``grouping.background: largest`` (the largest group) or ``semantic`` (the
  semantic head's background class; needs ``model.options.num_classes``).
* Predict: ``STEM_labels.png``, ``STEM_overlay.png`` and ``STEM.json`` per image at the
  image's size (:func:`~pixelgroup.tasks.predictions.write_instance_prediction`), and all
  records in one ``results.json`` (:func:`~pixelgroup.tasks.predictions.write_results_json`).
  An image of several grouping blocks (:func:`~pixelgroup.postprocess.tiles.plan_blocks`:
  over 1024 px a side as the model sees it) is grouped block by block and joined across
  blocks in embedding space
  (:func:`instances_from_tiles`, on :func:`~pixelgroup.postprocess.tiled_grouping.
  join_tiles`); so is one of evaluation (``InstanceTaskEvaluator.process_tiles``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from pixelgroup.config import ExperimentConfig, option_names, split_options
from pixelgroup.data import IGNORE_LABEL, InstanceSample, augmented, build_dataset
from pixelgroup.data.io import read_image
from pixelgroup.data.lazy_image import LazyImage
from pixelgroup.data.object_sizes import (
    fitted_min_area,
    fitted_scale,
    fitted_spatial_scale,
    object_sizes,
    spatial_scale_advice,
)
from pixelgroup.data.transforms import AugmentOptions
from pixelgroup.errors import ConfigError, DataError
from pixelgroup.losses import center_vote_loss
from pixelgroup.metrics import (
    CocoEvaluator,
    CompositeEvaluator,
    InstanceEvaluator,
    InstancePrediction,
    InstanceTarget,
    MatchingEvaluator,
)
from pixelgroup.models import EmbeddingOutput
from pixelgroup.models.unet import SPATIAL_SCALE
from pixelgroup.postprocess.tiled_grouping import TileGroups, join_tiles, tile_groups
from pixelgroup.postprocess.tiles import Tile, output_stride
from pixelgroup.tasks.base import (
    BACKGROUND_MODES,
    CenterLossOptions,
    InstanceSampleTask,
    LossFn,
    build_grouping_loss,
    check_background,
    foreground_ids,
    instances_from_embedding,
    semantic_ce,
    semantic_target,
    task_loss_options,
)
from pixelgroup.tasks.predictions import (
    RESULTS_NAME,
    instance_outputs,
    write_instance_prediction,
    write_results_json,
    write_tiled_labels,
)

__all__ = [
    "InstanceTask",
    "InstanceTaskEvaluator",
    "instances_from_embedding",
    "instances_from_tiles",
    "BACKGROUND_MODES",
]

_log = logging.getLogger(__name__)


TRAINING_SAMPLES_MEASURED = 16
"""How many training samples :meth:`InstanceTask.fit_config` measures the objects of."""


def _unaugmented(cfg: ExperimentConfig, split: str) -> tuple[AugmentOptions, Dataset]:
    """The task's augmentation options (split off ``data.options``) and ``split`` of
    ``cfg.data`` as the dataset reads it, without augmentation."""
    aug, options = split_options(AugmentOptions, cfg.data.options)
    dataset = build_dataset(
        cfg.data.name, cfg.data.root, split, options, also=option_names(AugmentOptions)
    )
    return aug, dataset


class InstanceTask(InstanceSampleTask):
    """Class-agnostic instance segmentation with the recurrent grouping loss."""

    reserved_stems: tuple[str, ...] = (Path(RESULTS_NAME).stem,)
    loss_options: type = CenterLossOptions
    """Image file stems ``pixelgroup predict`` refuses: their JSON would be ``results.json``."""
    predicts_at_image_size = True
    """``postprocess`` gives labels at the image's size whatever the model's output size
    (``pixelgroup predict --max-size`` may downscale the model's input)."""
    writes_tiles = True
    """An image larger than memory is read window by window and its labels written tile by
    tile (:meth:`write_tiles`)."""

    def inference_scale(self, cfg: ExperimentConfig) -> float | None:
        """A model trained on crops (``data.options.crop``) of images not resized to a size
        (``data.options.size`` unset) saw them at a scale of their own: 1 (native), or the
        centre of ``data.options.scale`` when augmenting (:attr:`AugmentOptions.seen_scale`)."""
        options = cfg.data.options
        if options.get("crop") is None or options.get("size") is not None:
            return None
        return split_options(AugmentOptions, options)[0].seen_scale

    def read_image(self, cfg: ExperimentConfig, path: Path) -> torch.Tensor:
        """``(C, H, W)`` float32 in [0, 1], its values mapped as the training images' were
        (``data.options.normalize``, default ``auto``; the stored channels
        ``data.options.channels``), so prediction sees what training saw."""
        normalize = str(cfg.data.options.get("normalize", "auto"))
        select = cfg.data.options.get("channels")
        return read_image(path, self.in_channels(cfg), normalize, select)

    def fit_config(self, cfg: ExperimentConfig) -> ExperimentConfig:
        """``cfg`` with its ``auto`` values chosen from the objects of the first
        :data:`TRAINING_SAMPLES_MEASURED` training masks (:mod:`pixelgroup.data.object_sizes`):
        ``data.options.scale`` the crops' zoom range that shows the median object at 3/8 of
        the crop or at its own size if smaller, ``model.options.spatial_scale`` 3/8 of
        their median diameter as training shows them (times the geometric mean of
        ``data.options.scale`` when augmenting), ``grouping.min_area`` (image pixels) a
        quarter of the area of the 10th-percentile one. Logs the sizes for a spatial
        embedding and warns when a given ``spatial_scale`` misfits them."""
        options = dict(cfg.model.options)
        auto_scale = options.get("spatial_scale") == "auto"
        auto_area = cfg.grouping.min_area == "auto"
        auto_zoom = cfg.data.options.get("scale") == "auto"
        if not (auto_scale or auto_area or auto_zoom or options.get("embedding") == "spatial"):
            return cfg
        aug, dataset = _unaugmented(cfg, cfg.data.train_split)
        if auto_zoom and (not aug.augment or aug.crop is None or len(aug.crop) != 2):
            raise ConfigError(
                "data.options.scale 'auto' is the zoom of the training crops: it needs "
                "data.options.augment: true and data.options.crop: [H, W]"
            )
        count = min(len(dataset), TRAINING_SAMPLES_MEASURED)  # type: ignore[arg-type]
        sizes = object_sizes(dataset[i].instance for i in range(count))
        if sizes is None:
            if auto_scale or auto_area or auto_zoom:
                raise DataError(
                    f"the first {count} images of split {cfg.data.train_split!r} hold no "
                    "annotated object to choose data.options.scale / model.options."
                    "spatial_scale / grouping.min_area 'auto' from; give numbers, or check the "
                    "masks"
                )
            return cfg
        chosen = []
        data = cfg.data
        if auto_zoom and aug.crop is not None:  # (checked above)
            zoom = fitted_scale(sizes, aug.crop)
            data = dataclasses.replace(data, options={**data.options, "scale": list(zoom)})
            aug = dataclasses.replace(aug, scale=zoom)
            chosen.append(f"data.options.scale [{zoom[0]:g}, {zoom[1]:g}]")
        factor = aug.seen_scale  # the model sees the objects at this scale
        seen = sizes.scaled(factor)
        if auto_scale:
            options["spatial_scale"] = fitted_spatial_scale(seen)
            chosen.append(f"model.options.spatial_scale {options['spatial_scale']:g} px")
        grouping = cfg.grouping
        if auto_area:
            grouping = dataclasses.replace(grouping, min_area=fitted_min_area(sizes))
            chosen.append(f"grouping.min_area {grouping.min_area} px")
        _log.info(
            "training objects (%d images): %s%s%s",
            count,
            sizes,
            "" if factor == 1.0 else f"; seen by training at scale {factor:.3g}: {seen}",
            f"; chose {', '.join(chosen)}" if chosen else "",
        )
        scale = options.get("spatial_scale", SPATIAL_SCALE)
        numeric = isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale > 0
        if options.get("embedding") == "spatial" and numeric:  # else the model names the value
            advice = spatial_scale_advice(seen, float(scale))
            if advice is not None:
                _log.warning("%s (%s)", advice, seen)
        model = dataclasses.replace(cfg.model, options=options)
        return dataclasses.replace(cfg, data=data, model=model, grouping=grouping)

    def build_dataset(self, cfg: ExperimentConfig, split: str) -> Dataset:
        aug, dataset = _unaugmented(cfg, split)
        if aug.augment and split == cfg.data.train_split:
            length = cfg.data.batch_size * (cfg.train.iters_per_epoch or 1)
            return augmented(dataset, aug, seed=cfg.seed, length=length)
        sizes = set(getattr(dataset, "sizes", ()))  # known without reading the images
        if cfg.data.batch_size > 1 and len(sizes) > 1:
            raise ConfigError(
                f"split {split!r} of data.name {cfg.data.name!r} has images of {len(sizes)} "
                f"sizes (e.g. {', '.join(f'{h}x{w}' for h, w in sorted(sizes)[:2])}, H x W) "
                f"and data.batch_size is {cfg.data.batch_size}: set data.options.size: [H, W] "
                "to resize them, or data.batch_size: 1"
            )
        return dataset

    def collate(self, samples: list[InstanceSample]) -> InstanceSample:
        shapes = {tuple(s.image.shape[1:]) for s in samples}
        if len(shapes) > 1:
            sizes = ", ".join(f"{h}x{w}" for h, w in sorted(shapes)[:2])
            raise DataError(
                f"cannot batch images of different sizes ({sizes}, H x W): set "
                "data.options.size: [H, W] to resize them, or data.batch_size: 1"
            )
        return super().collate(samples)

    def build_loss(self, cfg: ExperimentConfig) -> LossFn:
        check_background(cfg)
        center_weight = task_loss_options(self, cfg).center_weight
        grouping_loss = build_grouping_loss(cfg.loss, ignore_index=IGNORE_LABEL)
        spatial_scale = float(cfg.model.options.get("spatial_scale", SPATIAL_SCALE))

        def loss(
            output: EmbeddingOutput, batch: InstanceSample, generator: torch.Generator
        ) -> dict[str, torch.Tensor]:
            if output.votes is None:
                terms = grouping_loss(output.embedding, batch.instance, generator)
            else:
                terms = grouping_loss(output.embedding, foreground_ids(batch.instance), generator)
                terms["center"] = center_vote_loss(
                    output.votes, batch.instance, spatial_scale, IGNORE_LABEL
                )
                terms["loss"] = terms["loss"] + center_weight * terms["center"]
            if output.semantic is not None:
                target = semantic_target(batch.semantic, int(output.semantic.shape[1]))
                terms["semantic"] = semantic_ce(output.semantic, target, IGNORE_LABEL)
                terms["loss"] = terms["loss"] + terms["semantic"]
            return terms

        return loss

    def build_evaluator(self, cfg: ExperimentConfig) -> InstanceTaskEvaluator:
        return InstanceTaskEvaluator(cfg)

    def postprocess(
        self, cfg: ExperimentConfig, output: EmbeddingOutput, image_size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's output for one image -> ``labels (H, W)`` at ``image_size`` (0
        background) and ``scores (K,)``, on the CPU, whatever the model's stride."""
        logits = None if output.semantic is None else output.semantic[0]
        labels, scores = instances_from_embedding(
            output.embedding[0], cfg, image_size=image_size, logits=logits
        )
        return labels.cpu(), scores.cpu()

    def postprocess_tiles(
        self,
        cfg: ExperimentConfig,
        tiles: Iterable[tuple[Tile, EmbeddingOutput]],
        input_size: tuple[int, int],
        image_size: tuple[int, int],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The grouping blocks of an image -> ``labels (H, W)`` at ``image_size`` and ``scores
        (K,)``, on the CPU: each block's region grouped as :meth:`postprocess` groups an
        image, the groups joined across blocks in embedding space (:func:`join_tiles`). The
        image's embedding is never held whole."""
        return instances_from_tiles(cfg, tiles, input_size, image_size)

    def open_image(self, cfg: ExperimentConfig, path: Path) -> LazyImage:
        """The image :meth:`read_image` reads, to be read window by window."""
        normalize = str(cfg.data.options.get("normalize", "auto"))
        select = cfg.data.options.get("channels")
        return LazyImage(path, self.in_channels(cfg), normalize, select)

    def write_tiles(
        self,
        cfg: ExperimentConfig,
        tiles: Iterable[tuple[Tile, EmbeddingOutput]],
        image: LazyImage,
        out_dir: Path,
        stem: str,
        overwrite: bool,
        seen_size: tuple[int, int] | None = None,
    ) -> list[Path]:
        """The windows of ``image``, an image larger than memory that the model saw at
        ``seen_size`` (default its size) -> its labels at its size as ``STEM_labels.tif`` (a
        tiled BigTIFF written tile by tile), their outlines as ``STEM.geojson``, their COCO
        results as ``STEM.json`` and ``STEM_overlay.png`` (the image and its instances at most
        2048 px a side) (:func:`~pixelgroup.tasks.predictions.write_tiled_labels`), grouped and
        joined as :meth:`postprocess_tiles` does."""
        semantic = check_background(cfg) == "semantic"
        paths, _ = write_tiled_labels(
            _tile_groups(cfg, tiles, seen_size or image.size, image.size),
            image.size,
            out_dir,
            stem,
            bandwidth=cfg.grouping.bandwidth,
            background_is_group=not semantic,
            overwrite=overwrite,
            image=image,
        )
        return paths

    def write(
        self,
        cfg: ExperimentConfig,
        prediction: tuple[torch.Tensor, torch.Tensor],
        image: torch.Tensor,
        out_dir: Path,
        stem: str,
    ) -> list[Path]:
        """Instances of ``image (C, H, W)`` in [0, 1] -> label PNG, overlay PNG, COCO JSON."""
        return write_instance_prediction(out_dir, stem, image, *prediction)

    def kept_outputs(self, out_dir: Path, stem: str) -> list[Path]:
        """The files of an earlier prediction of ``stem`` (or a user's files of those names,
        e.g. masks called ``STEM_labels.png``) are replaced only with ``--overwrite``."""
        return instance_outputs(out_dir, stem)

    def finish_prediction(self, out_dir: Path, stems: Sequence[str]) -> list[Path]:
        """After every image: the records of all ``STEM.json`` in one ``results.json``."""
        return [write_results_json(out_dir, stems)]


def instances_from_tiles(
    cfg: ExperimentConfig,
    tiles: Iterable[tuple[Tile, EmbeddingOutput]],
    input_size: tuple[int, int],
    image_size: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(block, output)`` of each grouping block of an image the model saw at
    ``input_size`` (:meth:`~pixelgroup.engine.inference.InferenceRunner.blocks`: ``output``
    covers the block's region, its ``window``) -> ``labels (H, W)`` at ``image_size`` (0
    background) and ``scores (K,)``, on the CPU: each block's region grouped at
    ``image_size``'s resolution as :func:`instances_from_embedding` groups an image, the
    groups joined across blocks in embedding space (:func:`join_tiles`); the image's
    embedding is never held whole."""
    semantic = check_background(cfg) == "semantic"
    return join_tiles(
        _tile_groups(cfg, tiles, input_size, image_size),
        image_size,
        bandwidth=cfg.grouping.bandwidth,
        background_is_group=not semantic,
    )


def _tile_groups(
    cfg: ExperimentConfig,
    tiles: Iterable[tuple[Tile, EmbeddingOutput]],
    input_size: tuple[int, int],
    image_size: tuple[int, int],
) -> Iterator[TileGroups]:
    """Each block's region (its core and margin) grouped as an image is grouped, at the
    image's resolution (the boxes of the image the model saw at ``input_size`` brought to
    ``image_size``, :meth:`~pixelgroup.postprocess.tiles.Box.rescaled`; ``grouping.min_area``
    in image pixels, as :meth:`InstanceTask.postprocess`); each group scored as the grouping
    scores a whole image's (label 0's score: its compactness), so that an instance inside
    one tile has the score it has in the whole image."""
    for tile, output in tiles:
        region = tile.region
        grid = (int(output.embedding.shape[-2]), int(output.embedding.shape[-1]))
        stride = output_stride(tile.window, grid)
        rows, cols = region.within(tile.window).slices(stride)
        embedding = output.embedding[0, :, rows, cols]
        logits = None if output.semantic is None else output.semantic[0, :, rows, cols]
        core, region = (b.rescaled(input_size, image_size) for b in (tile.core, region))
        labels, scores = instances_from_embedding(
            embedding, cfg, image_size=region.size, logits=logits
        )
        groups = tile_groups(core, region, embedding, labels)
        scores = torch.cat([groups.scores[:1], scores.float().cpu()])
        yield dataclasses.replace(groups, scores=scores)


class InstanceTaskEvaluator:
    """Groups each embedding of a batch at its ground truth's resolution and feeds a
    :class:`~pixelgroup.metrics.CompositeEvaluator` of an :class:`InstanceEvaluator`, a
    :class:`MatchingEvaluator` (``acc50``, ``f1_50``, ``pq50``, ...) and a
    :class:`CocoEvaluator` (keys prefixed ``coco_``).

    Ignored (crowd) pixels are set to background in both label maps by the
    :class:`InstanceEvaluator`, left out of both by the :class:`MatchingEvaluator`; the
    :class:`CocoEvaluator` treats them as COCO's crowd."""

    def __init__(self, cfg: ExperimentConfig) -> None:
        check_background(cfg)
        self.cfg = cfg
        self.metrics = CompositeEvaluator(
            [
                InstanceEvaluator(ignore_label=IGNORE_LABEL),
                MatchingEvaluator(ignore_label=IGNORE_LABEL),
                CocoEvaluator(ignore_label=IGNORE_LABEL),
            ],
            prefixes=["", "", "coco_"],
        )

    def reset(self) -> None:
        self.metrics.reset()

    def process(self, output: EmbeddingOutput, batch: InstanceSample) -> None:
        predictions, targets = [], []
        semantic = output.semantic if output.semantic is not None else [None] * len(batch.instance)
        for embedding, logits, gt in zip(output.embedding, semantic, batch.instance, strict=True):
            size = (int(gt.shape[0]), int(gt.shape[1]))
            labels, scores = instances_from_embedding(
                embedding, self.cfg, image_size=size, logits=logits
            )
            predictions.append(InstancePrediction(labels.cpu(), scores.cpu()))
            targets.append(InstanceTarget(gt.cpu()))
        self.metrics.process(predictions, targets)

    def process_tiles(
        self,
        tiles: Sequence[Iterable[tuple[Tile, EmbeddingOutput]]],
        batch: InstanceSample,
        input_size: tuple[int, int],
    ) -> None:
        """As :meth:`process` for images the model saw in tiles at ``input_size = (h, w)``:
        per image of the batch, the ``(tile, output)`` of each window, grouped and joined
        across tiles (:func:`instances_from_tiles`) at its ground truth's resolution, never
        the image's whole embedding."""
        predictions, targets = [], []
        for windows, gt in zip(tiles, batch.instance, strict=True):
            size = (int(gt.shape[0]), int(gt.shape[1]))
            labels, scores = instances_from_tiles(self.cfg, windows, input_size, size)
            predictions.append(InstancePrediction(labels, scores))
            targets.append(InstanceTarget(gt.cpu()))
        self.metrics.process(predictions, targets)

    def evaluate(self) -> dict[str, float]:
        return self.metrics.evaluate()
