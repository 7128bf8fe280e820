"""The training loop: recurrent grouping loss, poly schedule, per-epoch checkpoints, exact resume.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from pixelgroup._atomic import write_json
from pixelgroup.config import from_dict, to_dict
from pixelgroup.engine.checkpoint import (
    build_model_seeded,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from pixelgroup.engine.distributed import (
    DistInfo,
    autocast,
    barrier,
    gather_objects,
    init_distributed,
    make_grad_scaler,
    mean_across_ranks,
    micro_batch_size,
    unwrap_model,
    wrap_model,
)
from pixelgroup.engine.tasks import get_task
from pixelgroup.experiment import ExperimentConfig

__all__ = ["train", "TrainResult", "NonFiniteLossError", "CHECKPOINT_NAME", "write_json"]

CHECKPOINT_NAME = "checkpoint.pt"


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or inf; training stops rather than writing garbage weights."""


@dataclass(frozen=True)
class TrainResult:
    """Where the run's checkpoint is and the per-iteration loss terms of the whole run."""

    checkpoint: Path
    history: list[dict[str, float]]
    dist: DistInfo = DistInfo()  # this process's rank (only rank 0 writes the checkpoint)


def _optimizer(cfg: ExperimentConfig, params) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    raise ValueError(f"optim.name must be 'sgd' or 'adam', got {o.name!r}")


def _loader(
    cfg: ExperimentConfig,
    dataset,
    task,
    epoch: int,
    info: DistInfo,
    batch_size: int,
    skip_batches: int = 0,
) -> DataLoader:
    # DistributedSampler draws randperm(len, seed + epoch) and gives rank r every W-th item, so
    # with one process the order is the plain shuffled order.
    sampler: DistributedSampler = DistributedSampler(
        dataset, info.world_size, info.rank, shuffle=True, seed=cfg.seed * 100_003, drop_last=True
    )
    sampler.set_epoch(epoch)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=list(sampler)[skip_batches * batch_size :],  # resuming mid-epoch
        collate_fn=task.collate,
        num_workers=cfg.data.num_workers,
        drop_last=True,
    )


def train(
    cfg: ExperimentConfig | None,
    run_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train ``cfg`` into ``run_dir`` (``checkpoint.pt`` each epoch, ``config.json``).

    With ``resume``, continue from ``run_dir/checkpoint.pt`` with the config stored in it
    (``cfg`` must then be None or equal to it). Raises :class:`NonFiniteLossError` when a loss
    is NaN or inf.
    """
    run_dir = Path(run_dir)
    ckpt_path = run_dir / CHECKPOINT_NAME
    state = None
    if not resume and int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0:
        resume = ckpt_path.is_file()  # torchrun restarted the workers after a crash
    if resume:
        state = load_checkpoint(ckpt_path)
        stored = from_dict(ExperimentConfig, state["config"])
        if cfg is not None and cfg != stored:
            raise ValueError(f"--resume: the config differs from the one in {ckpt_path}")
        cfg = stored
    elif cfg is None:
        raise ValueError("train needs a config unless resume=True")
    if cfg.data.batch_size < 1 or cfg.train.epochs < 1:
        raise ValueError(
            f"need data.batch_size >= 1 and train.epochs >= 1, got {cfg.data.batch_size} "
            f"and {cfg.train.epochs}"
        )
    task = get_task(cfg.task)
    info, device = init_distributed(cfg.device)
    micro = micro_batch_size(cfg.data.batch_size, info.world_size, cfg.train.grad_accum)
    accum = cfg.train.grad_accum
    dataset = task.build_dataset(cfg, cfg.data.train_split)
    num_items = len(dataset)  # type: ignore[arg-type]  # map-style datasets are sized
    per_epoch = cfg.train.iters_per_epoch or num_items // cfg.data.batch_size
    if per_epoch < 1:
        raise ValueError(
            f"the training split has {num_items} items, fewer than one batch of "
            f"{cfg.data.batch_size}"
        )
    model = build_model_seeded(cfg).to(device)
    if state is not None:
        load_weights(model, state["model"], ckpt_path)
    model = wrap_model(model, info, device)
    criterion = task.build_loss(cfg)
    optimizer = _optimizer(cfg, model.parameters())
    total = cfg.train.epochs * per_epoch
    power = cfg.optim.poly_power
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: max(0.0, 1.0 - i / total) ** power
    )
    generator = torch.Generator(device=device).manual_seed(cfg.seed + 1_000_003 * info.rank)
    scaler = make_grad_scaler(cfg.train.amp, device)
    autocast(cfg.train.amp, device)  # checks train.amp before any work
    history: list[dict[str, float]] = []
    start = start_step = 0
    every = cfg.train.checkpoint_every
    if every is not None and every < 1:
        raise ValueError(f"train.checkpoint_every must be >= 1 or null, got {every}")
    # steps in one pass over this rank's share of the data
    steps_per_pass = len(dataset) // info.world_size // micro // accum  # type: ignore[arg-type]

    def save(epochs_done: int, step: int) -> None:
        """Checkpoint after ``epochs_done`` epochs and ``step`` steps of the next (rank 0)."""
        generators = gather_objects(generator.get_state(), info)
        if info.is_main:
            extra: dict[str, Any] = {"rank_generators": generators} if info.distributed else {}
            if scaler.is_enabled():
                extra["scaler"] = scaler.state_dict()
            save_checkpoint(
                {
                    "config": to_dict(cfg),
                    "model": unwrap_model(model).state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "generator": generator.get_state(),
                    "epoch": epochs_done,
                    "step": step,
                    "history": history,
                    **extra,
                },
                ckpt_path,
            )
        barrier(info)

    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        ranks = state.get("rank_generators") or [state["generator"]]
        if len(ranks) == info.world_size:  # else a new world size: keep the fresh seeds
            generator.set_state(ranks[info.rank])
        if "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        history, start = list(state["history"]), int(state["epoch"])
        start_step = int(state.get("step", 0))
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(to_dict(cfg), run_dir / "config.json")

    for epoch in range(start, cfg.train.epochs):
        if hasattr(dataset, "set_epoch"):  # per-epoch augmentation seeds
            dataset.set_epoch(epoch)
        model.train()
        bar = tqdm(
            total=per_epoch,
            desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
            disable=not progress or not info.is_main,
        )
        done = start_step if epoch == start else 0
        bar.update(done)
        while done < per_epoch:  # iters_per_epoch may exceed one pass over the data
            optimizer.zero_grad(set_to_none=True)
            sums: dict[str, float] = {}
            first = done - done % steps_per_pass  # where this pass began
            loader = _loader(
                cfg, dataset, task, epoch * 1000 + first, info, micro, (done - first) * accum
            )
            for micro_step, batch in enumerate(loader):
                last = (micro_step + 1) % accum == 0
                sync = nullcontext() if last or not info.distributed else model.no_sync()  # type: ignore[operator]
                with sync:
                    with autocast(cfg.train.amp, device):
                        output = model(task.batch_image(batch).to(device))
                    terms = criterion(output, batch, generator)
                    loss = terms["loss"]
                    if not math.isfinite(float(loss.detach())):
                        raise NonFiniteLossError(
                            f"loss is {float(loss.detach())} at epoch {epoch + 1}, "
                            f"iteration {done + 1}; lower optim.lr or set train.grad_clip"
                        )
                    scaler.scale(loss / accum).backward()
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach()) / accum
                if not last:
                    continue
                if cfg.train.grad_clip is not None:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                record = mean_across_ranks(sums, info)
                sums = {}
                history.append(record)
                bar.set_postfix(_postfix(record), refresh=False)
                bar.update()
                done += 1
                if done == per_epoch:
                    break
                if every is not None and done % every == 0:
                    save(epoch, done)
        bar.close()
        save(epoch + 1, 0)
    return TrainResult(checkpoint=ckpt_path, history=history, dist=info)


def _postfix(record: dict[str, float]) -> dict[str, str]:
    """Short tqdm postfix: the total and each loop's loss (``l0``, ``l1``, ...)."""
    out = {"loss": f"{record['loss']:.4f}"}
    for key, value in record.items():
        if key.startswith("loss_iter"):
            out[f"l{key[len('loss_iter') :]}"] = f"{value:.3f}"
    return out
