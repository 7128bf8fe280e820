"""Checkpoints: weights, optimiser / scheduler / RNG state and the config, written atomically
with a checksum, the previous one kept.

A checkpoint's state is a dict with ``config`` (plain dict of an
:class:`~pixelgroup.config.ExperimentConfig`), ``model``, ``optimizer``, ``scheduler``,
``generator`` (the loss-sampling RNG state), ``epoch`` (epochs completed), ``step`` and
``history`` (per-iteration loss terms). On disk it is ``torch.save``'d into bytes and wrapped
as ``{"format": "pixelgroup-checkpoint", "version": 3, "sha256": ..., "payload": tensor}``, the
payload a 1-D ``torch.uint8`` tensor of those bytes and the SHA-256 that of the same bytes.
:func:`load_checkpoint` verifies the SHA-256 (a flipped byte is an error, never a silently
different run) and still reads version 2 (the same dict with the payload a Python ``bytes``
object, which ``torch.save`` pickles several times slower than a tensor: docs/rehearsal.md)
and the plain dicts of version 1. :func:`save_checkpoint` keeps the checkpoint it replaces as
``*.prev.pt`` (a hard link, or a copy, made before the one rename that installs the new file), so
a good ``checkpoint.pt`` exists at every moment of a save; :func:`finish_interrupted_save`
installs the complete, checksum-valid temp file a save killed between two renames left behind
(as older versions could). Weights with a NaN or inf are never written nor loaded.
:func:`load_model` rebuilds the model from the stored config, so no YAML is needed.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pixelgroup._atomic import atomic_path
from pixelgroup.config import ExperimentConfig, from_dict
from pixelgroup.errors import CheckpointError
from pixelgroup.tasks import get_task
from pixelgroup.tasks.base import task_loss_options

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "load_model",
    "build_model_seeded",
    "load_weights",
    "previous_checkpoint",
    "finish_interrupted_save",
    "check_finite_weights",
]

_REQUIRED = ("config", "model", "epoch")
_FORMAT = "pixelgroup-checkpoint"
_VERSION = 3


def previous_checkpoint(path: str | Path) -> Path:
    """Where :func:`save_checkpoint` keeps the checkpoint that ``path`` replaced."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def check_finite_weights(weights: object, path: str | Path, doing: str) -> None:
    """Raise :class:`CheckpointError` naming ``path`` and the first weight of the state dict
    ``weights`` that holds a NaN or inf (a diverged run); ``doing`` says what was refused."""
    if not isinstance(weights, dict):
        return
    for key, value in weights.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            bad = int((~torch.isfinite(value)).sum())
            if bad:
                raise CheckpointError(
                    f"{doing} {path}: weight {key!r} holds {bad} NaN/inf values (training "
                    "diverged; lower optim.lr or set train.grad_clip)"
                )


def _keep_previous(path: Path) -> None:
    """Make :func:`previous_checkpoint` a hard link to ``path`` (a copy where the file system
    has no hard links), itself written atomically; ``path`` stays in place."""
    with atomic_path(previous_checkpoint(path)) as tmp:
        tmp.unlink()
        try:
            os.link(path, tmp)
        except OSError:
            shutil.copyfile(path, tmp)


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` with its SHA-256, never half-written and never leaving
    ``path`` missing: to a temp file beside it, the old checkpoint kept as
    :func:`previous_checkpoint`, then the temp file renamed over ``path``. Weights with a NaN or
    inf raise :class:`CheckpointError` and nothing is written."""
    path = Path(path)
    check_finite_weights(state.get("model"), path, "refusing to write checkpoint")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getbuffer()  # no copy: the tensor below shares these bytes
    wrapped = {
        "format": _FORMAT,
        "version": _VERSION,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "payload": torch.frombuffer(payload, dtype=torch.uint8),
    }
    with atomic_path(path) as tmp:
        torch.save(wrapped, tmp)
        if path.is_file():
            _keep_previous(path)


def finish_interrupted_save(path: str | Path) -> list[Path]:
    """Clean up after a killed :func:`save_checkpoint` of ``path``; returns the temp files
    deleted.

    When ``path`` is missing but a temp file beside it is a complete checkpoint (its SHA-256
    verified), the save was killed between its renames: that file becomes ``path``. Every
    other temp file of ``path`` or of its :func:`previous_checkpoint` is half-written and
    deleted.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    prev = previous_checkpoint(path)
    temps = sorted(path.parent.glob(f".{path.name}.*.tmp"), key=lambda p: -p.stat().st_mtime)
    if not path.exists():
        for tmp in temps:
            try:
                load_checkpoint(tmp)
            except CheckpointError:
                continue
            os.replace(tmp, path)
            temps.remove(tmp)
            break
    stale = temps + sorted(path.parent.glob(f".{prev.name}.*.tmp"))
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def _payload_bytes(wrapped: dict[str, Any], path: Path, hint: str) -> bytes:
    """The payload of a wrapped checkpoint: a ``bytes`` object (version 2) or the bytes of a
    1-D ``torch.uint8`` tensor (version 3)."""
    version, payload = wrapped.get("version"), wrapped.get("payload")
    if version not in (2, _VERSION):
        raise CheckpointError(
            f"checkpoint {path} has format version {version!r}; this pixelgroup reads versions "
            f"1 to {_VERSION} (was it written by a newer one?)"
        )
    if version == 2:
        if isinstance(payload, bytes):
            return payload
        expected = "bytes"
    elif isinstance(payload, torch.Tensor) and payload.dtype == torch.uint8 and payload.dim() == 1:
        return payload.numpy().tobytes()
    else:
        expected = "1-D uint8 tensor"
    raise CheckpointError(
        f"checkpoint {path} is corrupt: its payload is a {type(payload).__name__}, not the "
        f"{expected} of format version {version}{hint}"
    )


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (on CPU)."""
    path = Path(path)
    prev = previous_checkpoint(path)
    hint = f"; the previous checkpoint is {prev}" if prev.is_file() else ""
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}{hint}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and state.get("format") == _FORMAT:
            payload = _payload_bytes(state, path, hint)
            if hashlib.sha256(payload).hexdigest() != state["sha256"]:
                raise CheckpointError(
                    f"checkpoint {path} is corrupt: its SHA-256 does not match the one stored "
                    f"when it was written{hint}"
                )
            del state  # frees a version 3 payload tensor; ``payload`` is a copy of its bytes
            state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except Exception as e:  # torch raises many types for a corrupt or foreign file
        first = (str(e).strip().splitlines() or [""])[0]
        raise CheckpointError(
            f"cannot read checkpoint {path}: not a pixelgroup checkpoint, or corrupt "
            f"(torch.load: {type(e).__name__}: {first}){hint}"
        ) from None
    if not isinstance(state, dict) or any(k not in state for k in _REQUIRED):
        raise CheckpointError(
            f"{path} is not a pixelgroup checkpoint (expected keys {', '.join(_REQUIRED)})"
        )
    return state


def build_model_seeded(cfg: ExperimentConfig) -> nn.Module:
    """The task's model, initialised from ``cfg.seed`` without touching the global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return get_task(cfg.task).build_model(cfg)


def load_weights(model: nn.Module, weights: object, path: str | Path) -> None:
    """Load a checkpoint's ``weights`` (state dict) into ``model`` strictly.

    Raises :class:`CheckpointError` naming ``path`` and the first key that is missing,
    unexpected or of another shape (a checkpoint of another model, or weights that do not fit
    its config). BatchNorm's ``num_batches_tracked`` counters that the model has no place for
    (its frozen stages use ``FrozenBatchNorm2d``, which keeps none) are dropped.
    """
    expected = model.state_dict()
    if not isinstance(weights, dict):
        raise CheckpointError(f"{path}: 'model' must be a state dict, got {type(weights).__name__}")
    problem = None
    for key, value in expected.items():
        if key not in weights:
            problem = f"{key!r} missing from the checkpoint"
        elif getattr(weights[key], "shape", None) != value.shape:
            got = tuple(getattr(weights[key], "shape", ()))
            problem = (
                f"{key!r} has shape {got} in the checkpoint, the model expects {tuple(value.shape)}"
            )
        if problem:
            break
    if problem is None:
        weights = {
            k: v
            for k, v in weights.items()
            if k in expected or not k.endswith(".num_batches_tracked")
        }
        extra = [key for key in weights if key not in expected]
        problem = f"{extra[0]!r} is not a weight of the model" if extra else None
    if problem is not None:
        raise CheckpointError(
            f"checkpoint {path} does not fit the model its config builds "
            f"({type(model).__name__}): {problem}"
        )
    check_finite_weights(weights, path, "cannot use checkpoint")
    model.load_state_dict(weights)


def load_model(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, ExperimentConfig, dict[str, Any]]:
    """Rebuild the model of a checkpoint in eval mode: ``(model, config, checkpoint dict)``.
    A stored value out of range, its task's ``loss`` keys included, is a ConfigError."""
    state = load_checkpoint(path)
    cfg = from_dict(ExperimentConfig, state["config"])
    task_loss_options(get_task(cfg.task), cfg)
    model = build_model_seeded(cfg)
    load_weights(model, state["model"], path)
    return model.to(device).eval(), cfg, state
