"""Points on the unit hypersphere: projection and calibrated cosine similarity."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pixelgroup._checks import check_int, check_rank, check_tensor

__all__ = ["normalize_to_sphere", "pool_to_sphere", "calibrated_similarity"]


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


def pool_to_sphere(x: torch.Tensor, stride: int) -> torch.Tensor:
    """A dense embedding ``s x s`` average-pooled and projected back onto the unit sphere.

    The one pooling of the package: the loss (``loss.stride``, ``loss.loop_stride``), the
    grouping (``grouping.stride``) and the exported graph all call it, so training and
    inference group the same pixels. A partial cell at the bottom or right edge (H or W not a
    multiple of s) averages the pixels it has: every pixel takes part, none is dropped.

    Args:
        x: ``(B, D, H, W)`` embedding.
        stride: s >= 1; 1 returns ``x`` itself.

    Returns:
        ``(B, D, ceil(H / s), ceil(W / s))``, same dtype and device, unit vectors along D
        (:func:`normalize_to_sphere`). Cost O(B·D·H·W).

    Example:
        >>> x = normalize_to_sphere(torch.randn(1, 3, 5, 7))
        >>> tuple(pool_to_sphere(x, 2).shape)
        (1, 3, 3, 4)
    """
    x = check_tensor(x, "x")
    check_rank(x, (4,), "x", "(B, D, H, W)")
    if check_int(stride, "stride", minimum=1) == 1:
        return x
    return normalize_to_sphere(F.avg_pool2d(x, stride, ceil_mode=True), dim=1)


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
