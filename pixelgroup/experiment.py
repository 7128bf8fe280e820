"""Experiment configs: what ``pixelgroup train`` reads from YAML and stores in checkpoints.

Sections are frozen dataclasses (see :mod:`pixelgroup.config` for loading and ``--set``
overrides). ``task`` picks an entry of :data:`pixelgroup.engine.tasks.TASKS`, which decides how
the sections are used. ``options`` mappings go to the dataset / model constructors verbatim, so
a typo there is reported when the dataset or model is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DataConfig",
    "ModelConfig",
    "LossConfig",
    "OptimConfig",
    "TrainConfig",
    "GroupingConfig",
    "ExperimentConfig",
]


@dataclass(frozen=True)
class DataConfig:
    """Dataset name (a key of the task's dataset registry), its root and constructor options."""

    name: str = "toy"
    root: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    train_split: str = "train"
    eval_split: str = "test"
    batch_size: int = 8
    num_workers: int = 0


@dataclass(frozen=True)
class ModelConfig:
    """A key of :data:`pixelgroup.models.MODELS` and its keyword arguments."""

    name: str = "toy"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LossConfig:
    """:class:`pixelgroup.losses.RecurrentGroupingLoss` settings (α, δ, T, ...).

    ``stride`` > 1 average-pools the embedding (then re-normalises) before the loss, so the
    T GBMS loops of training run on (H/stride)·(W/stride) points: GBMS is quadratic in N.
    ``aux_weight`` and ``aux_labels`` are read by the ``semantic`` task only: its loss is
    cross-entropy + ``aux_weight`` x this grouping loss on the ``aux_labels`` map
    (``"semantic"`` classes or ``"instance"`` ids).
    """

    margin: float = 0.5
    bandwidth: float = 0.1
    num_iters: int = 3
    iter_weights: tuple[float, ...] | None = None
    sample_ratio: float | None = 0.2
    max_samples: int = 4000
    pos_weight: float = 1.0
    neg_weight: float = 1.0
    kind: str = "linear"
    stride: int = 1
    aux_weight: float = 1.0
    aux_labels: str = "semantic"


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser (``sgd`` or ``adam``) with a per-iteration poly schedule lr·(1 − i/I)^power."""

    name: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    poly_power: float = 0.9


@dataclass(frozen=True)
class TrainConfig:
    """Epochs and the length of an epoch (``None``: one pass over the training split).

    ``grad_accum`` k splits each step's (global) batch into k micro-batches whose gradients
    add up; ``amp`` is ``"none"``, ``"bf16"`` or ``"fp16"`` (CUDA; bf16 also on CPU)
    autocast. See :mod:`pixelgroup.engine.distributed`. ``checkpoint_every`` n also writes the
    checkpoint every n steps inside an epoch (long VOC epochs), and resuming continues there.
    """

    epochs: int = 10
    iters_per_epoch: int | None = None
    grad_clip: float | None = None
    grad_accum: int = 1
    amp: str = "none"
    checkpoint_every: int | None = None


@dataclass(frozen=True)
class GroupingConfig:
    """:func:`pixelgroup.postprocess.group_pixels` settings used by eval and predict.

    ``stride`` > 1 groups an average-pooled embedding and assigns each full-resolution pixel
    to the nearest group centre (see :func:`pixelgroup.engine.tasks.extract_instances`).
    ``min_area`` is in full-resolution pixels. ``max_points`` bounds how many pixels the
    mean shift moves (the rest vote; ``None``: all of them).
    """

    bandwidth: float = 0.1
    num_iters: int = 10
    threshold: float | None = None
    min_area: int = 16
    stride: int = 1
    max_points: int | None = 1024


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment; ``seed`` drives model init, shuffling and pixel sampling."""

    task: str = "instance"
    seed: int = 0
    device: str = "cpu"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    grouping: GroupingConfig = field(default_factory=GroupingConfig)
