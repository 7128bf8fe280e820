"""The ``boundary`` task: BSDS500 boundary detection with the pair loss (docs/boundaries.md).

* Data: ``cfg.data.name`` is ``"bsds"``; ``cfg.data.root`` a BSDS500 release (``BSR``,
  ``BSR/BSDS500/data``, ...) or a folder of sample ``.mat`` files
  (:func:`pixelgroup.data.bsds.open_boundary_dataset`, ``DATASETS["bsds"]``). This task's
  own ``cfg.data.options`` (:class:`~pixelgroup.data.transforms.CropFlipOptions`,
  :class:`BoundaryEvalOptions`):

  - ``crop`` (None): ``[H, W]`` random crop for training (the full image otherwise);
  - ``flip`` (True): random horizontal flips for training; ``turn`` (False): vertical
    flips and 90° rotations too; ``jitter`` (0): brightness / contrast / saturation jitter
    (every draw per ``(seed, epoch, index)`` by :class:`~pixelgroup.data.AugmentedDataset`,
    so it does not depend on DataLoader workers and a resumed run repeats it exactly);
  - ``eval_thresholds`` (99), ``nms`` (True): benchmark thresholds, and whether the mean head
    probability is thinned by :func:`~pixelgroup.postprocess.boundary_nms.boundary_nms` before
    it (the standard);
  - ``eval_workers`` (None = all CPUs): benchmark processes.

  A pixel is boundary when at least half of the annotators mark it, non-boundary when none
  does, and ignored in between (RCF's rule; the single-map samples are 0/1). Batches of
  differently sized images are zero-padded to the largest; padding is ignored. (The model's
  ``input_scale`` option shrinks the network input, as the original's halving; the maps are
  still upsampled to the input size before the loss and the thinning: docs/boundaries.md.)
* Loss: HED's class-balanced binary cross-entropy on every side logit and the fused logit
  (positives weighted by the fraction of negatives in the image and vice versa, averaged over
  the image's labelled pixels, summed over heads) plus the pixel-pair loss on every side
  embedding with groups boundary / non-boundary (``cfg.loss``: ``margin``, ``pos_weight``,
  ``neg_weight``, ``kind``, ``sample_ratio``, ``max_samples``; ``num_iters`` must be 0: the
  original boundary model has no mean-shift loops). The total is ``loss.bce_weight`` x BCE +
  ``loss.pair_weight`` x pair loss (both 1 by default); the pair loss is not computed at
  weight 0, the BCE always is (reported; at weight 0 its zero gradients keep every parameter
  in the backward, as DistributedDataParallel needs). The original's two stages (docs/boundaries.md:
  the pair loss first, then the classifiers fine-tuned) are ``bce_weight: 0``, then
  ``pair_weight: 0`` with ``train.init_from`` the first stage's checkpoint
  (``configs/bsds.yaml``, docs/boundaries.md).
  Returns ``{"loss", "bce", "pair"}`` (``"pair"`` only at a non-zero weight).
* Model: ``model.name: boundary``, :class:`~pixelgroup.models.BoundaryNet` with
  ``model.options``.
* Evaluation: :class:`~pixelgroup.metrics.boundary.BoundaryEvaluator` (ODS, OIS, AP, R50).
* Predict: 16-bit boundary maps ``OUT/raw/STEM.png`` and ``OUT/nms/STEM.png`` (thinned),
  which :func:`evaluate_boundary_maps` (``pixelgroup eval-boundaries``) scores offline.
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
from pixelgroup.config import ExperimentConfig, LossConfig, option_names, split_options
from pixelgroup.data import AugmentedDataset, CropFlip, build_dataset
from pixelgroup.data.boundary_maps import evaluate_boundary_maps, read_boundary_map
from pixelgroup.data.bsds import BSDS500, BoundarySample
from pixelgroup.data.io import write_png
from pixelgroup.data.registry import dataset_options
from pixelgroup.data.transforms import CropFlipOptions
from pixelgroup.errors import ConfigError
from pixelgroup.losses.pairwise import pairwise_embedding_loss
from pixelgroup.metrics import BoundaryEvaluator, BoundaryPrediction, BoundaryTarget
from pixelgroup.models import BoundaryNet, build_model
from pixelgroup.postprocess.boundary_nms import boundary_nms
from pixelgroup.tasks.base import LossFn, TaskBase, task_loss_options
from pixelgroup.tasks.rehearsal import DatasetEvaluation, RehearsalPlan

__all__ = [
    "BoundaryBatch",
    "BoundaryEvalOptions",
    "BoundaryLossOptions",
    "BoundaryTask",
    "BoundaryTaskEvaluator",
    "class_balanced_bce",
    "collate_boundaries",
    "write_boundary_prediction",
    "read_boundary_map",
    "evaluate_boundary_maps",
]

IGNORE = -1.0  # target value of padded / ambiguous pixels
LABEL_THRESHOLD = 0.5  # fraction of annotators that makes a pixel a boundary


@dataclass(frozen=True)
class BoundaryEvalOptions:
    """The boundary task's evaluation keys of ``data.options``: ``eval_thresholds`` of the
    benchmark, ``nms`` thinning before it, ``eval_workers`` benchmark processes (None: all
    CPUs)."""

    eval_thresholds: int = option(99, min=1)
    nms: bool = True
    eval_workers: int | None = option(None, min=1)


@dataclass(frozen=True)
class BoundaryLossOptions:
    """The boundary task's ``loss`` keys: the total is ``bce_weight`` x the heads'
    class-balanced BCE + ``pair_weight`` x the side embeddings' pair loss."""

    bce_weight: float = option(1.0, min=0)
    pair_weight: float = option(1.0, min=0)


_OWN_KEYS = option_names(CropFlipOptions, BoundaryEvalOptions)


def _options(cfg: ExperimentConfig) -> tuple[CropFlipOptions, BoundaryEvalOptions, dict[str, Any]]:
    """This task's augmentation and evaluation keys of ``data.options``, and the rest (the
    ``bsds`` dataset's)."""
    if cfg.data.name != "bsds":
        raise ConfigError(
            f"the boundary task reads data.name 'bsds' (the BSDS500 release or .mat "
            f"samples, told apart by data.root's layout), got {cfg.data.name!r}"
        )
    aug, rest = split_options(CropFlipOptions, cfg.data.options)
    ev, rest = split_options(BoundaryEvalOptions, rest)
    dataset_options("bsds", rest, sample=BoundarySample, also=_OWN_KEYS)
    if aug.crop is not None and (len(aug.crop) != 2 or min(aug.crop) < 1):
        raise ConfigError(f"data.options.crop must be [H, W] with H, W >= 1, got {list(aug.crop)}")
    return aug, ev, rest


@dataclass
class BoundaryBatch:
    """A padded batch.

    Attributes:
        image_ids: B file stems.
        image: ``(B, 3, H, W)`` float32 in [0, 1], zero-padded bottom / right.
        target: ``(B, H, W)`` float32: 1 boundary, 0 non-boundary, -1 ignored or padding.
        sizes: B ``(h, w)`` unpadded sizes.
        boundaries: B ``(A, h, w)`` bool annotator maps (for the benchmark).
    """

    image_ids: list[str]
    image: torch.Tensor
    target: torch.Tensor
    sizes: list[tuple[int, int]]
    boundaries: list[torch.Tensor]


def _target(sample: BoundarySample) -> torch.Tensor:
    consensus = sample.consensus
    target = torch.full_like(consensus, IGNORE)
    target[consensus == 0] = 0.0
    target[consensus >= LABEL_THRESHOLD] = 1.0
    return target


def collate_boundaries(samples: list[BoundarySample]) -> BoundaryBatch:
    """Pad ``(3, h, w)`` images to the batch's largest size; see :class:`BoundaryBatch`."""
    h = max(s.image.shape[1] for s in samples)
    w = max(s.image.shape[2] for s in samples)
    image = torch.zeros(len(samples), 3, h, w)
    target = torch.full((len(samples), h, w), IGNORE)
    for i, s in enumerate(samples):
        sh, sw = s.image.shape[1:]
        image[i, :, :sh, :sw] = s.image
        target[i, :sh, :sw] = _target(s)
    return BoundaryBatch(
        [s.image_id for s in samples],
        image,
        target,
        [(int(s.image.shape[1]), int(s.image.shape[2])) for s in samples],
        [s.boundaries for s in samples],
    )


def class_balanced_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """HED's class-balanced BCE, summed over heads, averaged over images.

    Args:
        logits: ``(B, K, H, W)`` boundary logits of K heads.
        target: ``(B, H, W)``: 1 boundary, 0 non-boundary, anything else ignored.

    Positives weigh ``|Y-| / |Y|`` and negatives ``|Y+| / |Y|`` (per image, over labelled
    pixels); each image's weighted sum is divided by its number of labelled pixels.
    """
    pos = (target == 1).to(logits.dtype)
    neg = (target == 0).to(logits.dtype)
    n_pos, n_neg = pos.sum((1, 2), keepdim=True), neg.sum((1, 2), keepdim=True)
    total = (n_pos + n_neg).clamp(min=1)
    weight = (pos * n_neg + neg * n_pos) / total
    bce = F.binary_cross_entropy_with_logits(
        logits, pos[:, None].expand_as(logits), reduction="none"
    )
    per_image = (bce * weight[:, None]).sum((2, 3)) / total[:, :, 0]
    return per_image.sum(1).mean()


class BoundaryTask(TaskBase):
    """Boundary detection on BSDS500 with side-output embeddings (see the module docstring)."""

    loss_options: type = BoundaryLossOptions

    def build_dataset(self, cfg: ExperimentConfig, split: str) -> Dataset:
        aug, _, rest = _options(cfg)
        dataset = build_dataset("bsds", cfg.data.root, split, rest, sample=BoundarySample)
        if split == cfg.data.train_split:
            augment = CropFlip(aug.crop, aug.flip, aug.turn, aug.jitter)
            return AugmentedDataset(dataset, augment, seed=cfg.seed)
        return dataset

    def collate(self, samples: list[BoundarySample]) -> BoundaryBatch:
        return collate_boundaries(samples)

    def batch_image(self, batch: BoundaryBatch) -> torch.Tensor:
        return batch.image

    def build_model(self, cfg: ExperimentConfig) -> nn.Module:
        return build_model(cfg.model.name, {"boundary": BoundaryNet}, **cfg.model.options)

    def build_loss(self, cfg: ExperimentConfig) -> LossFn:
        c = cfg.loss
        if c.num_iters != 0:
            raise ConfigError(
                f"the boundary task trains without mean-shift loops: set loss.num_iters to 0, "
                f"got {c.num_iters}"
            )
        for name in ("margin", "sample_ratio"):
            if isinstance(getattr(c, name), tuple):
                raise ConfigError(
                    f"loss.{name}: the boundary task's pair loss has one site (no loops), give "
                    f"one number, got {list(getattr(c, name))}"
                )
        w = task_loss_options(self, cfg)
        if w.bce_weight == 0 and w.pair_weight == 0:
            raise ConfigError("loss.bce_weight and loss.pair_weight are both 0: nothing to train")
        _options(cfg)

        def loss(output: Any, batch: BoundaryBatch, generator: torch.Generator):
            logits = output.logits
            target = batch.target.to(logits.device)
            size = target.shape[-2:]
            # the BCE is cheap and always computed: at weight 0 (stage 1) it is reported and
            # gives the classifiers zero gradients, so every parameter takes part in the
            # backward (DistributedDataParallel's rule); the pair loss is skipped at weight 0
            bce = class_balanced_bce(_resize(logits, size), target)
            total = w.bce_weight * bce
            terms = {"bce": bce.detach()}
            if w.pair_weight > 0:
                pair = _pair_loss(output.embeddings, target, c, generator)
                total = total + w.pair_weight * pair
                terms["pair"] = pair.detach()
            return {"loss": total, **terms}

        return loss

    def build_evaluator(self, cfg: ExperimentConfig) -> BoundaryTaskEvaluator:
        return BoundaryTaskEvaluator(cfg)

    def rehearsal(self, cfg: ExperimentConfig, size: str) -> RehearsalPlan:
        """A synthetic BSDS500 release, scored by :func:`evaluate_boundary_maps`."""
        return RehearsalPlan("bsds", evaluator=_rehearsal_evaluation)

    def postprocess(
        self, cfg: ExperimentConfig, output: Any, image_size: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The model's output for one image -> ``(prob, thinned)``: ``image_size`` float64
        maps in [0, 1], the mean head probability and its
        :func:`~pixelgroup.postprocess.boundary_nms.boundary_nms`."""
        prob = _resize(output.boundary, torch.Size(image_size))[0, 0].double().cpu().numpy()
        return prob, np.clip(boundary_nms(prob), 0.0, 1.0)

    def write(
        self,
        cfg: ExperimentConfig,
        prediction: tuple[np.ndarray, np.ndarray],
        image: torch.Tensor,
        out_dir: Path,
        stem: str,
    ) -> list[Path]:
        """Boundary maps -> ``out_dir/{raw,nms}/STEM.png``."""
        return write_boundary_prediction(out_dir, stem, *prediction)

    def kept_outputs(self, out_dir: Path, stem: str) -> list[Path]:
        """``raw/STEM.png`` and ``nms/STEM.png``: replaced only with ``--overwrite``."""
        return [Path(out_dir) / name / f"{stem}.png" for name in ("raw", "nms")]


def _pair_loss(
    embeddings: list[torch.Tensor],
    target: torch.Tensor,
    c: LossConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """The pair loss summed over the side embeddings, groups boundary / non-boundary."""
    assert not isinstance(c.margin, tuple) and not isinstance(c.sample_ratio, tuple)  # build_loss
    size = target.shape[-2:]
    labels = torch.where(target < 0, 255, target).long().flatten(1)
    pair = target.new_zeros(())
    for embedding in embeddings:
        e = F.normalize(_resize(embedding, size), dim=1, eps=1e-5).flatten(2)
        pair = (
            pair
            + pairwise_embedding_loss(
                e.transpose(1, 2),
                labels,
                c.margin,
                sample_ratio=c.sample_ratio,
                max_samples=c.max_samples,
                pos_weight=c.pos_weight,
                neg_weight=c.neg_weight,
                kind=c.kind,
                ignore_index=255,
                generator=generator,
            )["loss"]
        )
    return pair


def _resize(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    if x.shape[-2:] == size:
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class BoundaryTaskEvaluator:
    """Mean head probability -> (NMS) -> :class:`BoundaryEvaluator`; ``evaluate`` gives
    ``{"ODS", "OIS", "AP", "R50"}`` (R50 left out when precision never reaches 0.5)."""

    def __init__(self, cfg: ExperimentConfig) -> None:
        o = _options(cfg)[1]
        self.nms = o.nms
        self.metrics = BoundaryEvaluator(
            num_thresholds=o.eval_thresholds, num_workers=o.eval_workers
        )

    def reset(self) -> None:
        self.metrics.reset()

    def process(self, output: Any, batch: BoundaryBatch) -> None:
        prob = _resize(output.boundary, batch.image.shape[-2:])[:, 0]
        predictions, targets = [], []
        for k, (name, (h, w)) in enumerate(zip(batch.image_ids, batch.sizes, strict=True)):
            pred = prob[k, :h, :w].detach().double().cpu().numpy()
            if self.nms:
                pred = boundary_nms(pred)
            predictions.append(BoundaryPrediction(np.clip(pred, 0.0, 1.0)))
            targets.append(BoundaryTarget(batch.boundaries[k].numpy(), image_id=name))
        self.metrics.process(predictions, targets)

    def evaluate(self) -> dict[str, float]:
        return self.metrics.evaluate()


def write_boundary_prediction(
    out_dir: str | Path, stem: str, prob: np.ndarray, thinned: np.ndarray
) -> list[Path]:
    """Write ``(H, W)`` maps in [0, 1] as 16-bit PNGs ``out_dir/raw/<stem>.png`` and
    ``out_dir/nms/<stem>.png`` (atomically) and return their paths; each folder is a PRED_DIR
    for ``pixelgroup eval-boundaries``."""
    paths = []
    for name, m in (("raw", prob), ("nms", thinned)):
        path = Path(out_dir) / name / f"{stem}.png"
        write_png(np.round(np.clip(m, 0, 1) * 65535).astype(np.uint16), path)
        paths.append(path)
    return paths


def _rehearsal_evaluation(cfg: ExperimentConfig, pred: Path, progress: bool) -> DatasetEvaluation:
    """The thinned maps ``pred/nms`` against the split's BSDS500 ground truth, with
    ``data.options.eval_thresholds``."""
    split = cfg.data.eval_split
    gt = BSDS500(str(cfg.data.root), split).root / "groundTruth" / split
    thresholds = _options(cfg)[1].eval_thresholds
    return DatasetEvaluation(
        f"pixelgroup eval-boundaries {pred / 'nms'} {gt} --thresholds {thresholds}",
        lambda: evaluate_boundary_maps(pred / "nms", gt, thresholds=thresholds, progress=progress)[
            0
        ].to_dict(),
    )
