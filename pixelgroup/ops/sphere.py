"""Points on the unit hypersphere: projection and calibrated cosine similarity."""

from __future__ import annotations

import torch

from pixelgroup._checks import check_tensor

__all__ = ["normalize_to_sphere", "calibrated_similarity"]


def normalize_to_sphere(x: torch.Tensor, dim: int = 1, eps: float = 1e-5) -> torch.Tensor:
    """Project vectors onto the unit sphere: ``x / (||x|| + eps)`` along ``dim``.

    Args:
        x: any shape, e.g. a dense embedding ``(B, D, H, W)`` (``dim=1``) or points
            ``(B, N, D)`` (``dim=-1``).
        dim: the embedding dimension.
        eps: added to the norm (the original uses 1e-5), so a zero vector maps to zero
            instead of NaN and the gradient stays finite.

    Returns:
        Same shape and dtype as ``x``; norms along ``dim`` are ``||x|| / (||x|| + eps)``.

    Example:
        >>> z = torch.randn(2, 8, 16, 16)
        >>> x = normalize_to_sphere(z)
        >>> bool(torch.allclose(x.norm(dim=1), torch.ones(2, 16, 16), atol=1e-4))
        True
    """
    x = check_tensor(x, "x")
    return x / (x.norm(dim=dim, keepdim=True) + eps)


def calibrated_similarity(x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """Calibrated cosine similarity ``s = (1 + x_i . y_j) / 2`` in [0, 1] for unit rows.

    Args:
        x: ``(..., N, D)`` unit rows.
        y: ``(..., M, D)`` unit rows; defaults to ``x``.

    Returns:
        ``(..., N, M)`` similarities. Cost O(N M D) time and O(N M) memory.
    """
    y = x if y is None else y
    return 0.5 * (1.0 + x @ y.transpose(-1, -2))
