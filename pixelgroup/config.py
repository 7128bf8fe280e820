"""The experiment schema: what ``pixelgroup train`` reads from YAML and stores in checkpoints.

Sections are frozen dataclasses; :func:`load_config` reads YAML and ``--set`` overrides into
them (unknown keys are an error naming the key). ``task`` picks an entry of
:data:`pixelgroup.tasks.TASKS`, which decides how the sections are used.

``data.options`` and ``model.options`` stay plain mappings in the YAML (and in checkpoints).
``data.options`` is read into typed option dataclasses (:func:`parse_options`: unknown keys
and wrong types are a :class:`ConfigError` naming the key): each dataset's beside it,
registered with it in :data:`pixelgroup.data.DATASETS`, and a task's own keys (augmentation,
evaluation) beside the task, which splits them off first (:func:`split_options`).
``model.options`` are checked against the model constructor's signature.

Every number is checked when a config is read: finite, and in the range its field's
``metadata`` (a :func:`~pixelgroup._config_io.rule`) gives, so a bad value (a negative
``train.grad_clip``, a NaN ``optim.lr``) is a one-line :class:`ConfigError` naming the key.

``stages`` lists the stages of a multi-stage schedule (:class:`StageConfig`): ``pixelgroup
train`` runs them in order, each from the previous one's weights.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pixelgroup._config_io import (
    ConfigError,
    apply_overrides,
    from_dict,
    load_config,
    rest_field,
    rule,
    to_dict,
)

__all__ = [
    "ConfigError",
    "load_config",
    "from_dict",
    "to_dict",
    "apply_overrides",
    "override_config",
    "expand_stages",
    "resolve_config",
    "CONFIG_DIR",
    "parse_options",
    "split_options",
    "option_names",
    "DataConfig",
    "ModelConfig",
    "LossConfig",
    "LEGACY_LOSS_DEFAULTS",
    "OptimConfig",
    "TrainConfig",
    "GroupingConfig",
    "ExperimentConfig",
    "StageConfig",
]


_POSITIVE = rule(above=0)
_AT_LEAST_0 = rule(min=0)
_AT_LEAST_1 = rule(min=1)


def _f(default: Any, metadata: dict[str, Any]) -> Any:
    """A field with ``default`` and the :func:`~pixelgroup._config_io.rule` ``metadata``."""
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class DataConfig:
    """Dataset name (a key of the task's dataset registry), its root and constructor options."""

    name: str = "toy"
    root: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    train_split: str = "train"
    eval_split: str = "test"
    batch_size: int = _f(8, _AT_LEAST_1)
    num_workers: int = _f(0, _AT_LEAST_0)


@dataclass(frozen=True)
class ModelConfig:
    """A key of :data:`pixelgroup.models.MODELS` and its keyword arguments.

    ``test_bn`` is how BatchNorm normalises in ``pixelgroup eval`` / ``predict``:
    ``"running"`` (the running statistics gathered in training, PyTorch's eval mode) or
    ``"batch"`` (each image by its own statistics, as training at batch 1 and the original's VOC
    evaluation; see :func:`pixelgroup.models.apply_test_bn`).
    """

    name: str = "toy"
    options: dict[str, Any] = field(default_factory=dict)
    test_bn: str = _f("running", rule(choices=("running", "batch")))


@dataclass(frozen=True)
class LossConfig:
    """:class:`pixelgroup.losses.RecurrentGroupingLoss` settings (α, δ, T, ...).

    ``stride`` > 1 average-pools the embedding (then re-normalises) before the whole loss;
    ``loop_stride`` > 1 keeps loop 0 at the (``stride``-pooled) embedding's resolution and runs
    only the T GBMS loops on its ``loop_stride`` x ``loop_stride``-pooled copy (GBMS is
    quadratic in N): pixelgroup's own approximation, the original's loops take the whole map.
    ``margin`` and ``sample_ratio`` take one value or
    ``num_iters + 1`` values (loop 0..T).

    The section's other keys (``task_options``, written beside these in YAML and checkpoints)
    belong to the task: each task reads them into its own ``Task.loss_options`` dataclass
    (e.g. the semantic task's ``aux_weight``, the boundary task's ``bce_weight``), and an
    unknown one is a :class:`ConfigError` naming the keys valid for that task when it trains.
    Configs stored before the tasks owned them held all five of ``aux_weight``,
    ``aux_labels``, ``bce_weight``, ``pair_weight``, ``center_weight`` for every task; such a
    key at its old default (:data:`LEGACY_LOSS_DEFAULTS`, the tasks' defaults too) is dropped
    when read, so they load unchanged.
    """

    margin: float | tuple[float, ...] = _f(0.5, rule(min=0, max=1))
    bandwidth: float = _f(0.1, _POSITIVE)
    num_iters: int = _f(3, _AT_LEAST_0)
    iter_weights: tuple[float, ...] | None = _f(None, _AT_LEAST_0)
    sample_ratio: float | tuple[float, ...] | None = _f(0.2, rule(above=0, max=1))
    max_samples: int = _f(4000, _AT_LEAST_1)
    pos_weight: float = _f(1.0, _AT_LEAST_0)
    neg_weight: float = _f(1.0, _AT_LEAST_0)
    kind: str = _f("linear", rule(choices=("linear", "squared", "logistic")))
    stride: int = _f(1, _AT_LEAST_1)
    loop_stride: int = _f(1, _AT_LEAST_1)
    task_options: dict[str, Any] = rest_field()

    def __post_init__(self) -> None:
        kept = {k: v for k, v in self.task_options.items() if LEGACY_LOSS_DEFAULTS.get(k) != v}
        object.__setattr__(self, "task_options", kept)


LEGACY_LOSS_DEFAULTS: dict[str, Any] = {
    "aux_weight": 1.0,
    "aux_labels": "semantic",
    "bce_weight": 1.0,
    "pair_weight": 1.0,
    "center_weight": 1.0,
}
"""The task-owned ``loss`` keys every stored config held before the tasks owned them, at
their defaults (dropped when a config is read; see :class:`LossConfig`)."""


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser (``sgd`` or ``adam``) with a per-iteration poly schedule lr·(1 − i/I)^power."""

    name: str = _f("adam", rule(choices=("sgd", "adam")))
    lr: float = _f(1e-3, _AT_LEAST_0)
    momentum: float = _f(0.9, rule(min=0, max=1))
    weight_decay: float = _f(0.0, _AT_LEAST_0)
    poly_power: float = _f(0.9, _AT_LEAST_0)


@dataclass(frozen=True)
class TrainConfig:
    """Epochs and the length of an epoch in steps (``None``: one pass over the training split,
    but at least 128 images, :data:`pixelgroup.engine.train.MIN_EPOCH_IMAGES`, so that two
    training images make an epoch of 64 steps at batch 2, not of one).

    ``grad_accum`` k splits each step's (global) batch into k micro-batches whose gradients
    add up; ``amp`` is ``"none"``, ``"bf16"`` or ``"fp16"`` (CUDA; bf16 also on CPU)
    autocast. See :mod:`pixelgroup.engine.distributed`. The checkpoint is written after every
    epoch (``checkpoint_every: null``) or every ``checkpoint_every`` steps of the run, counted
    across epochs, and after the last (long VOC epochs: a checkpoint inside them; short
    epochs: fewer 40 MB writes); resuming continues from any of them.
    ``init_from`` names a checkpoint whose weights initialise the model (loaded strictly: the
    same model and options) before training starts; its optimiser, schedule and epoch are not
    used, so it starts the next stage of a schedule (a resumed run keeps its own weights).
    ``tune_split`` names a split on which the grouping is chosen after the last step, as
    ``pixelgroup tune --split SPLIT`` does (:func:`pixelgroup.engine.tune.tune_grouping`;
    ``None``: not tuned).
    """

    epochs: int = _f(10, _AT_LEAST_1)
    iters_per_epoch: int | None = _f(None, _AT_LEAST_1)
    grad_clip: float | None = _f(None, _POSITIVE)
    grad_accum: int = _f(1, _AT_LEAST_1)
    amp: str = _f("none", rule(choices=("none", "bf16", "fp16")))
    checkpoint_every: int | None = _f(None, _AT_LEAST_1)
    init_from: str | None = None
    tune_split: str | None = None


@dataclass(frozen=True)
class GroupingConfig:
    """:func:`pixelgroup.postprocess.group_pixels` settings used by eval and predict.

    ``stride`` > 1 groups an average-pooled embedding and assigns each pixel of the label map
    (the image's size, also for a dense model's stride-4/8 embedding) to the nearest group
    centre (see :func:`pixelgroup.postprocess.extract_instances`).
    ``min_area`` is in pixels of the label map (the image), whatever the embedding's stride:
    :func:`pixelgroup.tasks.base.grouping_arguments` converts it for every task; ``"auto"``
    lets training choose it from the training objects' sizes (the instance task, see
    :meth:`pixelgroup.tasks.instance.InstanceTask.fit_config`), and read it with
    :meth:`min_area_pixels`.
    ``max_points`` bounds how many pixels the mean shift moves (the rest vote; ``None``: all).
    ``background`` decides which pixels are background (label 0) in the instance task:
    ``"largest"``, the largest group; ``"semantic"``, the pixels the model's semantic head
    (``model.options.num_classes: 2``, class 0 = background) calls background.
    ``tune_metric`` is the evaluator key that ``pixelgroup tune`` maximises by default
    (``AP70``: AP at IoU 0.7; ``acc50``: matched objects TP / (TP + FP + FN) at IoU 0.5, the
    microscopy number).
    """

    bandwidth: float = _f(0.1, _POSITIVE)
    num_iters: int = _f(10, _AT_LEAST_0)
    threshold: float | None = _f(None, rule(min=-1, max=1))
    min_area: int | str = _f(16, rule(min=0, choices=("auto",)))
    stride: int = _f(1, _AT_LEAST_1)
    max_points: int | None = _f(1024, _AT_LEAST_1)
    background: str = _f("largest", rule(choices=("largest", "semantic")))
    split_components: bool = False
    tune_metric: str = "AP70"

    def min_area_pixels(self) -> int:
        """``min_area`` in pixels; ``"auto"`` is a ConfigError here: training replaces it with
        the number it chose, so only a config that never trained still holds it."""
        if isinstance(self.min_area, str):
            raise ConfigError(
                "grouping.min_area 'auto' is chosen when training, from the training masks' "
                "objects; give a number of pixels here"
            )
        return self.min_area


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment; ``seed`` drives model init, shuffling and pixel sampling."""

    task: str = "instance"
    seed: int = _f(0, rule(min=0, max=2**32 - 1))
    device: str = "cpu"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    grouping: GroupingConfig = field(default_factory=GroupingConfig)
    stages: tuple[StageConfig, ...] = ()


@dataclass(frozen=True)
class StageConfig:
    """One stage of a training schedule (``stages:`` in a config, in the order they run).

    A stage trains the experiment with ``overrides`` (dotted keys, as ``--set``) applied,
    starting from the final weights of the stage named ``init_from`` (default: the previous
    one; the first stage starts as the config says, e.g. from ``train.init_from``). An
    experiment without stages is one stage. See :func:`expand_stages`.
    """

    name: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None


def expand_stages(
    cfg: ExperimentConfig, overrides: list[str] | None = None
) -> list[tuple[StageConfig, ExperimentConfig]]:
    """Each stage of ``cfg`` with its config: ``cfg`` with the stage's ``overrides`` and then
    ``overrides`` (``--set`` strings, e.g. a rehearsal's) applied, and ``stages`` emptied (a
    stage's checkpoint holds the config of that stage). Its ``train.init_from`` is left to the
    caller, who knows where the stages write. ``cfg`` without stages is one stage named "".

    Raises :class:`ConfigError` for a stage without a name or named twice, a name that is not
    a plain folder name, an ``init_from`` that names no earlier stage, and any override that
    does not fit the schema; every stage is checked before any trains.
    """
    stages = cfg.stages or (StageConfig(),)
    base = dataclasses.replace(cfg, stages=())
    out: list[tuple[StageConfig, ExperimentConfig]] = []
    for k, stage in enumerate(stages):
        where = f"stages[{k}]"
        if cfg.stages and (not stage.name or Path(stage.name).name != stage.name):
            raise ConfigError(f"{where}.name must be a plain folder name, got {stage.name!r}")
        earlier = [s.name for s, _ in out]
        if stage.name in earlier:
            raise ConfigError(f"{where}.name {stage.name!r} names two stages")
        if stage.init_from is not None and stage.init_from not in earlier:
            raise ConfigError(
                f"{where}.init_from must name an earlier stage ({', '.join(earlier) or 'none'}), "
                f"got {stage.init_from!r}"
            )
        if any(key.split(".")[0] == "stages" for key in stage.overrides):
            raise ConfigError(f"{where}.overrides cannot change the stages")
        own = [f"{key}={json.dumps(value)}" for key, value in stage.overrides.items()]
        try:
            out.append((stage, override_config(base, [*own, *(overrides or [])])))
        except ConfigError as e:
            raise ConfigError(f"{where} ({stage.name}): {e}") from None
    return out


CONFIG_DIR = Path(__file__).resolve().parent / "configs"
"""The shipped experiment configs (``configs/`` in the repository is a link to it)."""


def resolve_config(name: str | Path) -> Path:
    """A config file path, or the name of a shipped config (``toy``, ``bsds``, ...) -> its path.

    Raises :class:`ConfigError` naming the shipped configs when neither exists.
    """
    path = Path(name)
    if path.is_file():
        return path
    shipped = CONFIG_DIR / f"{path.name}.yaml"
    if path.suffix == "" and len(path.parts) == 1 and shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
    raise ConfigError(f"config not found: {name} (a YAML file, or a shipped config: {names})")


def override_config(cfg: ExperimentConfig, overrides: list[str]) -> ExperimentConfig:
    """``cfg`` with ``--set key=value`` overrides applied (unknown keys raise ConfigError)."""
    if not overrides:
        return cfg
    return from_dict(ExperimentConfig, apply_overrides(to_dict(cfg), overrides))


# --- typed ``data.options``: the dataclasses live beside their datasets and tasks -------------

OptionsT = TypeVar("OptionsT")


def split_options(
    cls: type[OptionsT], options: Mapping[str, Any], section: str = "data.options"
) -> tuple[OptionsT, dict[str, Any]]:
    """``options`` split into the dataclass ``cls`` (values coerced and checked) and the keys
    that are not its fields, for a task that passes those on to its dataset."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    own = {k: v for k, v in options.items() if k in names}
    rest = {k: v for k, v in options.items() if k not in names}
    return from_dict(cls, own, prefix=f"{section}."), rest


def parse_options(
    cls: type[OptionsT],
    options: Mapping[str, Any],
    section: str = "data.options",
    also: Iterable[str] = (),
) -> OptionsT:
    """``options`` read into the dataclass ``cls``; unknown keys and wrong types raise
    :class:`ConfigError` naming ``section.key`` and the valid keys (``cls``'s fields and
    ``also``, the keys a task took out of the same mapping before)."""
    parsed, rest = split_options(cls, options, section)
    if rest:
        names = sorted({f.name for f in dataclasses.fields(cls)} | set(also))  # type: ignore[arg-type]
        raise ConfigError(
            f"unknown config key '{section}.{sorted(rest)[0]}'; "
            f"valid keys here: {', '.join(names) or '(none)'}"
        )
    return parsed


def option_names(*classes: type) -> tuple[str, ...]:
    """The field names of the option dataclasses ``classes`` (for ``parse_options(also=)``)."""
    return tuple(f.name for cls in classes for f in dataclasses.fields(cls))
