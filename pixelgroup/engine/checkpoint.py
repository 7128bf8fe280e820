"""Checkpoints: weights, optimiser / scheduler / RNG state and the config, written atomically.

A checkpoint is a ``torch.save`` dict with ``config`` (plain dict of an
:class:`~pixelgroup.experiment.ExperimentConfig`), ``model``, ``optimizer``, ``scheduler``,
``generator`` (the loss-sampling RNG state), ``epoch`` (epochs completed) and ``history``
(per-iteration loss terms). :func:`load_model` rebuilds the model from the stored config, so
no YAML is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from pixelgroup._atomic import atomic_path
from pixelgroup.config import apply_overrides, from_dict, to_dict
from pixelgroup.experiment import ExperimentConfig

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "load_model",
    "build_model_seeded",
    "load_weights",
    "override_config",
]

_REQUIRED = ("config", "model", "epoch")


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` to a temp file beside ``path``, then ``os.replace`` (never half-written)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (on CPU)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a corrupt or foreign file
        raise ValueError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from None
    if not isinstance(state, dict) or any(k not in state for k in _REQUIRED):
        raise ValueError(
            f"{path} is not a pixelgroup checkpoint (expected keys {', '.join(_REQUIRED)})"
        )
    return state


def build_model_seeded(cfg: ExperimentConfig) -> nn.Module:
    """The task's model, initialised from ``cfg.seed`` without touching the global RNG state."""
    from pixelgroup.engine.tasks import get_task

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return get_task(cfg.task).build_model(cfg)


def load_weights(model: nn.Module, weights: object, path: str | Path) -> None:
    """Load a checkpoint's ``weights`` (state dict) into ``model`` strictly.

    Raises ``ValueError`` naming ``path`` and the first key that is missing, unexpected or of
    another shape (a checkpoint of another model, or weights that do not fit its config).
    """
    expected = model.state_dict()
    if not isinstance(weights, dict):
        raise ValueError(f"{path}: 'model' must be a state dict, got {type(weights).__name__}")
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
        extra = [key for key in weights if key not in expected]
        problem = f"{extra[0]!r} is not a weight of the model" if extra else None
    if problem is not None:
        raise ValueError(
            f"checkpoint {path} does not fit the model its config builds "
            f"({type(model).__name__}): {problem}"
        )
    model.load_state_dict(weights)


def load_model(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, ExperimentConfig, dict[str, Any]]:
    """Rebuild the model of a checkpoint in eval mode: ``(model, config, checkpoint dict)``."""
    state = load_checkpoint(path)
    cfg = from_dict(ExperimentConfig, state["config"])
    model = build_model_seeded(cfg)
    load_weights(model, state["model"], path)
    return model.to(device).eval(), cfg, state


def override_config(cfg: ExperimentConfig, overrides: list[str]) -> ExperimentConfig:
    """``cfg`` with ``--set key=value`` overrides applied (unknown keys raise ConfigError)."""
    if not overrides:
        return cfg
    return from_dict(ExperimentConfig, apply_overrides(to_dict(cfg), overrides))
