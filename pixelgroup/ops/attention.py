"""Softmax attention through torch's fused kernels, whatever the widths of Q, K and V.

torch's fused attention kernels (CPU flash, CUDA flash / memory-efficient) need one head
width for Q, K and V (a multiple of 8 on CUDA); otherwise ``scaled_dot_product_attention``
silently falls back to the math path, which materialises the N x M score matrix. Zero
columns change no dot product and no weighted sum, so padding to a common width is exact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["fused_attention"]


def fused_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float
) -> torch.Tensor:
    """``softmax(scale · Q Kᵀ) V`` without an N x M matrix.

    Args:
        query: ``(N, Dq)``.
        key: ``(M, Dq)``.
        value: ``(M, Dv)``.
        scale: multiplies the logits.

    Returns:
        ``(N, Dv)``, in the dtype of ``query``.

    Cost: O(N·M·max(Dq, Dv)) time, O((N + M)·max(Dq, Dv)) memory.
    """
    width = max(query.shape[1], value.shape[1])
    if query.device.type != "cpu":
        width = -(-width // 8) * 8
    q, k, v = (F.pad(t, (0, width - t.shape[1])) for t in (query, key, value))
    out = F.scaled_dot_product_attention(q[None], k[None], v[None], scale=scale)[0]
    return out[:, : value.shape[1]]
