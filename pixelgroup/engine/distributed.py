"""Distributed data-parallel helpers for the train loop (``torchrun``), AMP and accumulation.

Launch: ``torchrun --nproc_per_node=N -m pixelgroup train ...``. torchrun sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous; :func:`init_distributed` then joins the
process group (NCCL when the config's device is CUDA, gloo on CPU) and, on CUDA, binds the
process to ``cuda:LOCAL_RANK``. Without those variables everything here is a no-op, so a plain
``pixelgroup train`` runs exactly as before.

Batches: ``data.batch_size`` is the **global** batch of one optimiser step. Each of the W
processes runs ``train.grad_accum`` = k micro-batches of ``batch_size / (W·k)`` images and
DistributedDataParallel averages the gradients. Every process draws the same per-epoch
permutation and takes every W-th item (:class:`torch.utils.data.DistributedSampler`), so the
images of step i are those of step i of a single process with the same global batch; since
the loss is a mean over images, the update is the same too (up to float summation order).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from pixelgroup.errors import ConfigError

__all__ = [
    "DistInfo",
    "init_distributed",
    "wrap_model",
    "unwrap_model",
    "micro_batch_size",
    "mean_across_ranks",
    "autocast",
    "float32_outputs",
    "make_grad_scaler",
    "barrier",
    "gather_objects",
]

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job: ``rank`` in 0..world_size-1, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that logs, shows progress and writes files."""
        return self.rank == 0


def init_distributed(device: str) -> tuple[DistInfo, torch.device]:
    """Join the torchrun process group if ``WORLD_SIZE`` > 1; return ``(info, device)``.

    ``device`` is the config's (``"cpu"``, ``"cuda"``); on CUDA each process gets
    ``cuda:LOCAL_RANK``. Raises ``ConfigError`` for a device that is not there and
    ``ValueError`` for a bad environment.
    """
    try:
        torch.device(device)
    except RuntimeError:
        raise ConfigError(f"device must be cpu, cuda or cuda:N, got {device!r}") from None
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device} but no CUDA device is available here; use device=cpu")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), torch.device(device)
    try:
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    except (KeyError, ValueError):
        raise ValueError(
            f"WORLD_SIZE={world} but RANK is missing or not an int; launch with torchrun"
        ) from None
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available() or local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK {local_rank} needs a CUDA device, {torch.cuda.device_count()} visible"
            )
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world, local_rank), dev


def wrap_model(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel when distributed, else unchanged."""
    if not info.distributed:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside a DDP wrapper (what checkpoints store)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def micro_batch_size(batch_size: int, world_size: int, grad_accum: int) -> int:
    """Images per process per micro-step: ``batch_size / (world_size · grad_accum)``."""
    if grad_accum < 1:
        raise ValueError(f"train.grad_accum must be >= 1, got {grad_accum}")
    parts = world_size * grad_accum
    if batch_size % parts:
        raise ValueError(
            f"data.batch_size {batch_size} (the global batch) must be divisible by "
            f"processes x train.grad_accum = {world_size} x {grad_accum} = {parts}"
        )
    return batch_size // parts


def mean_across_ranks(values: Mapping[str, float], info: DistInfo) -> dict[str, float]:
    """Average scalar metrics over all processes (every rank must pass the same keys)."""
    if not info.distributed:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return {k: float(v) / info.world_size for k, v in zip(keys, t.tolist(), strict=True)}


def autocast(amp: str, device: torch.device):
    """The autocast context for ``train.amp`` (``"none"``, ``"bf16"``, ``"fp16"``).

    fp16 needs CUDA; bf16 also runs on CPU.
    """
    if amp == "none":
        return nullcontext()
    if amp not in AMP_DTYPES:
        raise ValueError(f"train.amp must be 'none', 'bf16' or 'fp16', got {amp!r}")
    if amp == "fp16" and device.type != "cuda":
        raise ValueError(f"train.amp 'fp16' needs a CUDA device, got {device.type!r}")
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[amp])


def float32_outputs(output: Any) -> Any:
    """``output`` (a tensor, a list of them, or a dataclass of those, e.g. ``EmbeddingOutput``)
    with its float16 / bfloat16 tensors in float32, the rest as it was.

    The losses run outside the autocast region on what the model returned; in float16 their
    sums over an image overflow (a cross-entropy over 500 x 375 pixels gave NaN on the first
    step of the VOC recipe) and the pair weights ``1 / n²`` underflow.
    """
    if isinstance(output, torch.Tensor):
        return output.float() if output.dtype in AMP_DTYPES.values() else output
    if isinstance(output, list):
        return [float32_outputs(t) for t in output]
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        changes = {
            f.name: float32_outputs(getattr(output, f.name)) for f in dataclasses.fields(output)
        }
        return dataclasses.replace(output, **changes)
    return output


def make_grad_scaler(amp: str, device: torch.device) -> torch.amp.GradScaler:
    """A loss scaler, enabled only for fp16 (bf16 has float32's range)."""
    return torch.amp.GradScaler(device.type, enabled=amp == "fp16")


def barrier(info: DistInfo) -> None:
    """Wait for every process (no-op when not distributed)."""
    if info.distributed:
        dist.barrier()


def gather_objects(obj: object, info: DistInfo) -> list[object]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` when not distributed)."""
    if not info.distributed:
        return [obj]
    out: list[object] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out
