"""Input validation shared by the public functions.

Every check raises ``ValueError`` or ``TypeError`` with a message that names the argument,
what was expected and what was received, so that bad input never surfaces as a traceback from
deep inside an op.
"""

from __future__ import annotations

import torch

__all__ = [
    "check_tensor",
    "check_rank",
    "check_points",
    "check_labels",
    "check_positive",
    "check_non_negative_int",
    "check_finite",
    "check_unit_rows",
]


def check_tensor(x: object, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def check_rank(x: torch.Tensor, ranks: tuple[int, ...], name: str, layout: str) -> None:
    if x.dim() not in ranks:
        raise ValueError(
            f"{name} must have shape {layout} ({' or '.join(map(str, ranks))} dims), "
            f"got shape {tuple(x.shape)}"
        )


def check_points(x: object, name: str = "x") -> torch.Tensor:
    """A floating ``(B, N, D)`` point set with N >= 1 and D >= 1."""
    x = check_tensor(x, name)
    check_rank(x, (3,), name, "(B, N, D)")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.shape[1] == 0 or x.shape[2] == 0:
        raise ValueError(f"{name} must have N >= 1 points of D >= 1 dims, got {tuple(x.shape)}")
    return x


def check_labels(labels: object, shape: tuple[int, ...], name: str = "labels") -> torch.Tensor:
    """An integer label tensor of exactly ``shape``."""
    labels = check_tensor(labels, name)
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, got dtype {labels.dtype}")
    if tuple(labels.shape) != tuple(shape):
        raise ValueError(
            f"{name} must have shape {tuple(shape)} to match the embeddings, "
            f"got {tuple(labels.shape)}"
        )
    return labels


def check_positive(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return float(value)


def check_non_negative_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def check_finite(x: torch.Tensor, name: str) -> None:
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} contains {bad} non-finite values (NaN or inf)")


def check_unit_rows(x: torch.Tensor, name: str, tol: float = 1e-2) -> None:
    """Rows along the last dim must have norm <= 1 + tol (they are points on the sphere)."""
    norm = x.detach().float().norm(dim=-1).max()
    if float(norm) > 1.0 + tol:
        raise ValueError(
            f"{name} must hold unit-norm rows along the last dim (max norm {float(norm):.4g}); "
            "call pixelgroup.ops.normalize_to_sphere first"
        )
