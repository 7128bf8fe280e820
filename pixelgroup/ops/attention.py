"""Softmax attention through torch's fused kernels, whatever the widths of Q, K and V.

torch's fused attention kernels (CPU flash, CUDA flash / memory-efficient) need one head
width for Q, K and V (a multiple of 8 on CUDA); otherwise ``scaled_dot_product_attention``
silently falls back to the math path, which materialises the N x M score matrix. Zero
columns change no dot product and no weighted sum, so padding to a common width is exact.

The fused kernels subtract each query's largest logit, so any logits are safe; the scale is
folded into the query (``scale=1`` for the kernel) because torch's CPU flash-attention
backward mis-scales large ``scale`` values (:func:`pixelgroup.ops.mean_shift._blur_sdpa`).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

__all__ = ["fused_attention", "no_autocast"]


def no_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast switched off on ``device`` (a no-op elsewhere): kernel logits κ·x_i·x_j need
    float32 or better, and an autocast region would compute them in half precision."""
    if device.type in ("cpu", "cuda"):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def fused_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    scale: float,
    key_log_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """``softmax(scale · Q Kᵀ + 1 log(w)ᵀ) V`` without an N x M matrix.

    Args:
        query: ``(N, Dq)``.
        key: ``(M, Dq)``.
        value: ``(M, Dv)``.
        scale: multiplies the logits.
        key_log_weights: optional ``(M,)`` log w_j added to every query's logit for key j
            (a key of weight w acts like w copies of it); it rides in one extra column,
            ``[scale·q, 1] · [k, log w]``.

    Returns:
        ``(N, Dv)``, in the dtype of ``query``.

    Cost: O(N·M·max(Dq, Dv)) time, O((N + M)·max(Dq, Dv)) memory.
    """
    query = scale * query
    if key_log_weights is not None:
        query = torch.cat([query, query.new_ones(len(query), 1)], dim=1)
        key = torch.cat([key, key_log_weights[:, None].to(key.dtype)], dim=1)
    width = max(query.shape[1], value.shape[1])
    if query.device.type != "cpu":
        width = -(-width // 8) * 8
    q, k, v = (F.pad(t, (0, width - t.shape[1])) for t in (query, key, value))
    out = F.scaled_dot_product_attention(q[None], k[None], v[None], scale=1.0)[0]
    return out[:, : value.shape[1]]
