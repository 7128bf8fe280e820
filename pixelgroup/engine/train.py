"""The training loop: recurrent grouping loss, poly schedule, checkpoints, exact resume.

An epoch is ``train.iters_per_epoch`` steps, by default one pass over the training split but at
least :data:`MIN_EPOCH_IMAGES` images (a split of two images would otherwise make every step an
epoch); each further pass inside an epoch draws new augmentations. The checkpoint is written at
the end of every epoch, or, with ``train.checkpoint_every`` n, every n steps of the run (epoch
ends aside) and at its end.

Determinism: the model is initialised from ``cfg.seed`` (global RNG untouched), epoch e shuffles
with a generator seeded by ``(seed, e)``, and the loss's pixel sampling uses one generator whose
state is saved in every checkpoint, so ``resume`` continues exactly where an uninterrupted run
would be (bit-identical on CPU).

Scale-out (:mod:`pixelgroup.engine.distributed`): under ``torchrun`` each process trains a
DistributedDataParallel replica on its share of every global batch (``data.batch_size``), with
``train.grad_accum`` micro-batches per step and ``train.amp`` autocast; loss terms are averaged
over ranks and only rank 0 shows progress and writes files. When torchrun restarts the workers
(``--max-restarts``), training resumes from the last checkpoint on its own.
"""

from __future__ import annotations

import math
import os
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from pixelgroup._atomic import write_json
from pixelgroup.config import ExperimentConfig, from_dict, to_dict
from pixelgroup.engine.checkpoint import (
    build_model_seeded,
    finish_interrupted_save,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from pixelgroup.engine.distributed import (
    DistInfo,
    autocast,
    barrier,
    float32_outputs,
    gather_objects,
    init_distributed,
    make_grad_scaler,
    mean_across_ranks,
    micro_batch_size,
    unwrap_model,
    wrap_model,
)
from pixelgroup.engine.tune import SweepResult, store_grouping, tune_grouping
from pixelgroup.errors import CheckpointError, ConfigError
from pixelgroup.tasks import Task, get_task
from pixelgroup.tasks.base import LossFn, task_loss_options

__all__ = [
    "train",
    "TrainResult",
    "NonFiniteLossError",
    "CHECKPOINT_NAME",
    "RESUME_SAFE_KEYS",
    "MIN_EPOCH_IMAGES",
    "FixedBatchStep",
]

CHECKPOINT_NAME = "checkpoint.pt"

MIN_EPOCH_IMAGES = 128
"""With ``train.iters_per_epoch: null`` an epoch still holds at least this many images."""

# config keys a resumed run may change: they do not alter what has been trained so far
# (train.init_from only seeds a fresh run: a resumed one keeps its own weights)
RESUME_SAFE_KEYS = (
    "train.epochs",
    "train.checkpoint_every",
    "data.num_workers",
    "model.test_bn",
    "train.init_from",
)


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or inf; training stops rather than writing garbage weights."""


@dataclass(frozen=True)
class TrainResult:
    """Where the run's checkpoint is, the per-iteration loss terms of the whole run and, with
    ``train.tune_split``, the grouping sweep whose winner the checkpoint stores (rank 0)."""

    checkpoint: Path
    history: list[dict[str, float]]
    dist: DistInfo = DistInfo()  # this process's rank (only rank 0 writes the checkpoint)
    tuned: SweepResult | None = None


def _optimizer(cfg: ExperimentConfig, params) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    raise ConfigError(f"optim.name must be 'sgd' or 'adam', got {o.name!r}")


def _pass_seed(epoch: int, pass_index: int) -> int:
    """The shuffle seed of pass ``pass_index`` over the data within ``epoch`` (an epoch of
    ``train.iters_per_epoch`` steps may hold several passes): ``epoch * 1000`` for an epoch's
    first pass (the orders of every run so far), ``2**32 * pass_index + epoch`` for later ones,
    so no two (epoch, pass) pairs share an order for epochs below 2**32 / 1000."""
    return epoch * 1000 if pass_index == 0 else 2**32 * pass_index + epoch


def _loader(
    cfg: ExperimentConfig,
    dataset,
    task,
    epoch: int,
    pass_index: int,
    info: DistInfo,
    batch_size: int,
    skip_batches: int = 0,
) -> DataLoader:
    # DistributedSampler draws randperm(len, seed + epoch) and gives rank r every W-th item, so
    # with one process the order is the plain shuffled order.
    sampler: DistributedSampler = DistributedSampler(
        dataset, info.world_size, info.rank, shuffle=True, seed=cfg.seed * 100_003, drop_last=True
    )
    sampler.set_epoch(_pass_seed(epoch, pass_index))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=list(sampler)[skip_batches * batch_size :],  # resuming mid-epoch
        collate_fn=task.collate,
        num_workers=cfg.data.num_workers,
        drop_last=True,
    )


@dataclass
class _Run:
    """Everything one training process holds: built by :func:`_build`, filled by
    :func:`_restore`, advanced by :func:`_train_one_epoch`, written by :func:`_save`."""

    cfg: ExperimentConfig
    run_dir: Path
    info: DistInfo
    device: torch.device
    task: Task
    dataset: Any
    model: torch.nn.Module
    criterion: Any
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: Any
    generator: torch.Generator
    micro: int  # images per micro-batch on this rank
    per_epoch: int  # optimiser steps per epoch
    steps_per_pass: int  # steps in one pass over this rank's share of the data
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / CHECKPOINT_NAME


def _check(cfg: ExperimentConfig) -> None:
    if cfg.data.batch_size < 1 or cfg.train.epochs < 1:
        raise ConfigError(
            f"need data.batch_size >= 1 and train.epochs >= 1, got {cfg.data.batch_size} "
            f"and {cfg.train.epochs}"
        )
    every = cfg.train.checkpoint_every
    if every is not None and every < 1:
        raise ConfigError(f"train.checkpoint_every must be >= 1 or null, got {every}")
    if cfg.train.grad_accum < 1:
        raise ConfigError(f"train.grad_accum must be >= 1, got {cfg.train.grad_accum}")
    if cfg.train.amp == "fp16" and not cfg.device.startswith("cuda"):
        raise ConfigError(
            f"train.amp 'fp16' needs a CUDA device, got device {cfg.device!r}; use 'bf16' or "
            "'none' on the CPU"
        )


def _build(cfg: ExperimentConfig, run_dir: Path, weights: Any = None) -> _Run:
    """Dataset, model (with checkpoint ``weights`` if given, else those of the checkpoint
    ``train.init_from`` if set; loaded before the DDP wrap), loss, optimiser, schedule and RNG
    of ``cfg`` on this process's device."""
    _check(cfg)
    task = get_task(cfg.task)
    task_loss_options(task, cfg)  # the task's loss keys, checked before any data is read
    info, device = init_distributed(cfg.device)
    micro = micro_batch_size(cfg.data.batch_size, info.world_size, cfg.train.grad_accum)
    dataset = task.build_dataset(cfg, cfg.data.train_split)
    if cfg.train.tune_split is not None:  # a missing split stops the run now, not after it
        task.build_dataset(cfg, cfg.train.tune_split)
    num_items = len(dataset)  # type: ignore[arg-type]  # map-style datasets are sized
    batch = cfg.data.batch_size
    per_epoch = cfg.train.iters_per_epoch or max(num_items // batch, -(-MIN_EPOCH_IMAGES // batch))
    if num_items < batch or per_epoch < 1:
        raise ConfigError(
            f"the training split has {num_items} items, fewer than one batch of "
            f"{cfg.data.batch_size}"
        )
    model = build_model_seeded(cfg).to(device)
    if cfg.train.amp == "bf16" and device.type == "cpu":
        _check_cpu_bf16(model)
    if weights is not None:
        load_weights(model, weights, run_dir / CHECKPOINT_NAME)
    elif cfg.train.init_from is not None:  # the next stage of a schedule starts from these
        init = Path(cfg.train.init_from).expanduser()
        load_weights(model, load_checkpoint(init)["model"], init)
    model = wrap_model(model, info, device)
    optimizer = _optimizer(cfg, model.parameters())
    total = cfg.train.epochs * per_epoch
    power = cfg.optim.poly_power
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: max(0.0, 1.0 - i / total) ** power
    )
    autocast(cfg.train.amp, device)  # checks train.amp before any work
    return _Run(
        cfg=cfg,
        run_dir=run_dir,
        info=info,
        device=device,
        task=task,
        dataset=dataset,
        model=model,
        criterion=task.build_loss(cfg),
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=make_grad_scaler(cfg.train.amp, device),
        generator=torch.Generator(device=device).manual_seed(cfg.seed + 1_000_003 * info.rank),
        micro=micro,
        per_epoch=per_epoch,
        steps_per_pass=num_items // info.world_size // micro // cfg.train.grad_accum,
    )


def _restore(run: _Run, state: dict[str, Any]) -> tuple[int, int]:
    """Load a checkpoint's optimiser, schedule, RNG and history into ``run`` (the weights are
    loaded by :func:`_build`); returns ``(epoch, step)`` to continue from."""
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    ranks = state.get("rank_generators") or [state["generator"]]
    if len(ranks) == run.info.world_size:  # else a new world size: keep the fresh seeds
        run.generator.set_state(ranks[run.info.rank])
    if "scaler" in state:
        run.scaler.load_state_dict(state["scaler"])
    run.history = list(state["history"])
    return int(state["epoch"]), int(state.get("step", 0))


def _save(run: _Run, epochs_done: int, step: int) -> None:
    """Checkpoint after ``epochs_done`` epochs and ``step`` steps of the next (rank 0 writes)."""
    generators = gather_objects(run.generator.get_state(), run.info)
    if run.info.is_main:
        extra: dict[str, Any] = {"rank_generators": generators} if run.info.distributed else {}
        if run.scaler.is_enabled():
            extra["scaler"] = run.scaler.state_dict()
        save_checkpoint(
            {
                "config": to_dict(run.cfg),
                "model": unwrap_model(run.model).state_dict(),
                "optimizer": run.optimizer.state_dict(),
                "scheduler": run.scheduler.state_dict(),
                "generator": run.generator.get_state(),
                "epoch": epochs_done,
                "step": step,
                "history": run.history,
                **extra,
            },
            run.checkpoint,
        )
        write_json(to_dict(run.cfg), run.run_dir / "config.json")  # describes that checkpoint
    barrier(run.info)


def _check_cpu_bf16(model: nn.Module) -> None:
    """Refuse ``train.amp: bf16`` on the CPU for a model with a dilated (>= 3) convolution in
    channels_last memory: torch 2.14's CPU bfloat16 kernel for its backward gives NaN weight
    gradients and at times crashes the process (AMD EPYC with ``avx512_bf16``; dilation 1 and
    2 and the NCHW layout are fine). The toy network's dilations 4 and 8 are such."""
    for name, module in model.named_modules():
        if (
            isinstance(module, nn.Conv2d)
            and max(module.dilation) >= 3
            and module.weight.is_contiguous(memory_format=torch.channels_last)
        ):
            raise ConfigError(
                f"train.amp bf16 cannot train this model on the CPU: torch's bfloat16 kernel "
                f"for its convolution {name} (dilation {max(module.dilation)}, channels_last) "
                "gives NaN gradients and can crash; use train.amp none (float32) on the CPU"
            )


def _check_gradients(model: nn.Module, epoch: int, step: int) -> None:
    """Raise :class:`NonFiniteLossError` before the optimiser writes NaN / inf gradients into
    the weights (a finite loss, then a NaN one at the next step, named wrongly)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads or torch.isfinite(torch.nn.utils.get_total_norm(grads)):
        return
    raise NonFiniteLossError(
        f"gradients are NaN or inf at epoch {epoch + 1}, iteration {step + 1} under train.amp "
        "bf16 (the loss was finite); lower optim.lr, set train.grad_clip or use train.amp none"
    )


def _train_one_epoch(run: _Run, epoch: int, start_step: int, progress: bool) -> None:
    """Steps ``start_step .. per_epoch`` of ``epoch``, checkpointing at every multiple of
    ``train.checkpoint_every`` steps of the run; raises :class:`NonFiniteLossError` on a
    NaN/inf loss."""
    cfg, info, model, optimizer = run.cfg, run.info, run.model, run.optimizer
    accum, every = cfg.train.grad_accum, cfg.train.checkpoint_every
    passes = -(-run.per_epoch // run.steps_per_pass)  # passes over the data per epoch
    model.train()
    bar = tqdm(
        total=run.per_epoch,
        desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
        disable=not progress or not info.is_main,
    )
    done = start_step
    bar.update(done)
    while done < run.per_epoch:  # iters_per_epoch may exceed one pass over the data
        optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        first = done - done % run.steps_per_pass  # where this pass began
        # augmentation seeds: new ones in every pass
        run.task.set_epoch(run.dataset, epoch * passes + first // run.steps_per_pass)
        loader = _loader(
            cfg,
            run.dataset,
            run.task,
            epoch,
            first // run.steps_per_pass,
            info,
            run.micro,
            (done - first) * accum,
        )
        for micro_step, batch in enumerate(loader):
            last = (micro_step + 1) % accum == 0
            sync = nullcontext() if last or not info.distributed else model.no_sync()  # type: ignore[operator]
            with sync:
                with autocast(cfg.train.amp, run.device):
                    output = model(run.task.batch_image(batch).to(run.device))
                terms = run.criterion(float32_outputs(output), batch, run.generator)
                loss = terms["loss"]
                if not math.isfinite(float(loss.detach())):
                    raise NonFiniteLossError(
                        f"loss is {float(loss.detach())} at epoch {epoch + 1}, "
                        f"iteration {done + 1}; lower optim.lr or set train.grad_clip"
                    )
                run.scaler.scale(loss / accum).backward()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) / accum
            if not last:
                continue
            if cfg.train.amp == "bf16":  # no GradScaler skips a step of bad gradients
                _check_gradients(model, epoch, done)
            if cfg.train.grad_clip is not None:
                run.scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
            run.scaler.step(optimizer)
            run.scaler.update()
            optimizer.zero_grad(set_to_none=True)
            run.scheduler.step()
            record = mean_across_ranks(sums, info)
            sums = {}
            run.history.append(record)
            bar.set_postfix(_postfix(record), refresh=False)
            bar.update()
            done += 1
            if done == run.per_epoch:
                break
            if every is not None and (epoch * run.per_epoch + done) % every == 0:
                _save(run, epoch, done)
    bar.close()


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict) and key != "options":
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _check_resume_changes(cfg: ExperimentConfig, stored: ExperimentConfig, path: Path) -> None:
    """A resumed run may change only :data:`RESUME_SAFE_KEYS`; name the first other change."""
    new, old = _flat(to_dict(cfg)), _flat(to_dict(stored))
    changed = sorted(k for k in new if new[k] != old.get(k))
    unsafe = [k for k in changed if k not in RESUME_SAFE_KEYS]
    if unsafe:
        raise ConfigError(
            f"resuming {path}: {unsafe[0]} cannot change ({old.get(unsafe[0])!r} -> "
            f"{new[unsafe[0]]!r}); a resumed run may change only {', '.join(RESUME_SAFE_KEYS)}"
        )


def train(
    cfg: ExperimentConfig | None,
    run_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train ``cfg`` into ``run_dir`` (``checkpoint.pt``, ``config.json``).

    ``cfg``'s ``auto`` values are chosen from the training data first (the task's
    ``fit_config``) and stored so. With ``resume``, continue from ``run_dir/checkpoint.pt``
    with the config stored in it; ``cfg`` may be None or that config with
    :data:`RESUME_SAFE_KEYS` changed (e.g. more epochs to extend a finished run). Without
    ``resume``, a ``run_dir`` that already holds a checkpoint is an error unless
    ``overwrite``: a finished run is never replaced unasked.
    A checkpoint write that was killed is finished or cleaned up first
    (:func:`~pixelgroup.engine.checkpoint.finish_interrupted_save`); ``config.json`` is
    written with every checkpoint, so it always describes the one beside it. Raises
    :class:`NonFiniteLossError` when a loss is NaN or inf. This trains ``cfg`` as one stage;
    :func:`pixelgroup.engine.schedule.train_schedule` runs the ``stages`` of a config.
    """
    run_dir = Path(run_dir)
    ckpt_path = run_dir / CHECKPOINT_NAME
    state = None
    if cfg is not None:  # its ``auto`` values, chosen from the data as the stored run's were
        cfg = get_task(cfg.task).fit_config(cfg)
    finish_interrupted_save(ckpt_path)  # a save killed between its renames, from older versions
    if not resume and int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0:
        resume = ckpt_path.is_file()  # torchrun restarted the workers after a crash
    elif not resume and ckpt_path.is_file() and not overwrite:
        raise CheckpointError(
            f"{run_dir} already holds a checkpoint; continue it with --resume, or replace it "
            f"with --overwrite (or pick another -o)"
        )
    if resume:
        state = load_checkpoint(ckpt_path)
        stored = from_dict(ExperimentConfig, state["config"])
        if cfg is not None:
            _check_resume_changes(cfg, stored, ckpt_path)
        cfg = cfg or stored
        if cfg.train.epochs < state["epoch"]:
            raise ConfigError(
                f"resuming {ckpt_path}: train.epochs={cfg.train.epochs} is fewer than the "
                f"{state['epoch']} epochs it has completed; give train.epochs >= {state['epoch']}"
            )
    elif cfg is None:
        raise ConfigError("train needs a config unless resume=True")
    run = _build(cfg, run_dir, None if state is None else state["model"])
    start = start_step = 0
    if state is not None:
        start, start_step = _restore(run, state)
    if run.info.is_main and state is not None:  # a crash between the two writes of _save
        write_json(state["config"], run_dir / "config.json")
    every = cfg.train.checkpoint_every
    for epoch in range(start, cfg.train.epochs):
        _train_one_epoch(run, epoch, start_step if epoch == start else 0, progress)
        steps = (epoch + 1) * run.per_epoch
        if every is None or steps % every == 0 or epoch + 1 == cfg.train.epochs:
            _save(run, epoch + 1, 0)
    tuned = None
    if cfg.train.tune_split is not None and run.info.is_main:
        tuned = tune_grouping(unwrap_model(run.model), cfg, cfg.train.tune_split, progress=progress)
        store_grouping(ckpt_path, tuned)
    return TrainResult(checkpoint=ckpt_path, history=run.history, dist=run.info, tuned=tuned)


def _postfix(record: dict[str, float]) -> dict[str, str]:
    """Short tqdm postfix: the total and each loop's loss (``l0``, ``l1``, ...)."""
    out = {"loss": f"{record['loss']:.4f}"}
    for key, value in record.items():
        if key.startswith("loss_iter"):
            out[f"l{key[len('loss_iter') :]}"] = f"{value:.3f}"
    return out


@dataclass
class FixedBatchStep:
    """One training iteration of ``cfg``'s recipe on one fixed batch (the first
    ``data.batch_size`` training items), for timing it (``pixelgroup bench --suite targets``,
    ``benchmarks/subnormals.py``): ``forward()`` (network + loss -> the scalar loss),
    ``backward(loss)`` (gradients + one Adam step at ``optim.lr``), or both by calling it.
    ``iterations``: the recipe's number of steps (``train.epochs`` x ``train.iters_per_epoch``,
    the latter 0 when unset)."""

    model: nn.Module
    loss_fn: LossFn
    batch: Any
    image: torch.Tensor
    optimizer: torch.optim.Optimizer
    iterations: int

    @classmethod
    def from_config(cls, cfg: ExperimentConfig) -> FixedBatchStep:
        task = get_task(cfg.task)
        cfg = task.fit_config(cfg)
        dataset = task.build_dataset(cfg, cfg.data.train_split)
        batch = task.collate([dataset[i] for i in range(cfg.data.batch_size)])
        model = build_model_seeded(cfg).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr)
        iterations = cfg.train.epochs * (cfg.train.iters_per_epoch or 0)
        image = task.batch_image(batch)
        return cls(model, task.build_loss(cfg), batch, image, optimizer, iterations)

    def forward(self) -> torch.Tensor:
        output = self.model(self.image)
        return self.loss_fn(output, self.batch, torch.Generator().manual_seed(0))["loss"]

    def backward(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def __call__(self) -> None:
        self.backward(self.forward())
