"""Gaussian-blurring mean shift (GBMS) on the unit sphere: the recurrent grouping layer.

One step moves every point to the kernel-weighted mean of all points (itself included) and
projects the result back onto the sphere (docs/method.md, "Recurrent mean shift")::

    k_ij  = exp((x_i . x_j - 1) / bandwidth**2)     vMF kernel, kappa = 1/bandwidth**2
    y_i   = sum_j k_ij x_j / sum_j k_ij
    x_i+  = y_i / (||y_i|| + 1e-5)

The row normalisation makes this softmax attention with queries = keys = values = X and
scale 1/bandwidth**2 (the -1 shift cancels). Implementations (``impl``):

* ``"tiled"``: our symmetric tiled autograd function (:mod:`pixelgroup.ops.tiled_gbms`),
  O(N·D) memory forward and backward, forward+backward about 3x the forward (measured);
* ``"sdpa"``: :func:`torch.nn.functional.scaled_dot_product_attention` (fused kernels, no
  N x N matrix; on CPU its forward+backward measured 3.6-5.3x its forward);
* ``"dense"``: materialises the N x N kernel (O(N²) memory; the test reference);
* ``"auto"`` (default): ``"tiled"`` on CPU, where it measured faster than ``"sdpa"`` for
  every D from 3 to 64, forward (1.2-2.6x at N = 16384) and forward+backward (1.5-4.6x;
  docs/benchmarks.md); ``"sdpa"`` on CUDA, where its flash / memory-efficient kernels apply.

Gradients flow through both the kernel weights and the moved points.

**Numerics.** Every implementation computes the kernel with each row's own largest logit (or
a bound of it that keeps the row's kernel mass normal) subtracted: ``"dense"`` through
:func:`torch.softmax`, ``"sdpa"`` inside the fused kernel, ``"tiled"`` with a shared shift
κ·max|x|² and an exact recomputation of the rows that shift leaves too small
(:mod:`pixelgroup.ops.tiled_gbms`). So no input the checks accept (norms up to 1.01, shorter
and zero rows too, any δ >= 1e-8) overflows, underflows to 0/0 or collapses onto the global
mean. Half-precision inputs are computed in float32, and every step runs with autocast off (a
bfloat16 autocast region would round the logits, or break the tiled products). What remains
is the rounding of the logits, about κ·(D + 1)·u in absolute terms (u = 2⁻²⁴ in float32,
2⁻⁵³ in float64): with logit errors ε the result matches the float64 log-sum-exp reference to
``(e^{2ε} − 1)`` times each row's weighted spread. Once κ·u·D ≳ 1 (float32 below δ ≈ 2e-3 at
D = 64) the weights of near neighbours are not resolved any more: use float64 points there.
docs/numerics.md has the measured errors per dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pixelgroup._checks import (
    check_bandwidth,
    check_choice,
    check_finite,
    check_non_negative_int,
    check_points,
    check_rank,
    check_tensor,
    check_unit_rows,
)
from pixelgroup.ops.attention import no_autocast
from pixelgroup.ops.sphere import normalize_to_sphere
from pixelgroup.ops.tiled_gbms import tiled_blur

__all__ = ["gbms_step", "recurrent_mean_shift", "RecurrentMeanShift", "GBMS_IMPLS"]

GBMS_IMPLS = ("auto", "tiled", "sdpa", "dense")
_HALF = (torch.float16, torch.bfloat16)


def _blur_dense(x: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """Kernel-weighted means ``(B, N, D)`` with the N x N kernel held in memory; the softmax
    subtracts each row's largest logit. Half precision is computed in float32."""
    compute = x.float() if x.dtype in _HALF else x
    logits = (compute / bandwidth**2) @ compute.transpose(1, 2)
    return (torch.softmax(logits, dim=-1) @ compute).to(x.dtype)


def _blur_sdpa(x: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """Kernel-weighted means ``(B, N, D)`` via fused softmax attention (no N x N matrix).

    κ is folded into the query rather than passed as ``scale``: torch's CPU flash-attention
    backward with ``scale=κ`` returned gradients off by 6 % at κ = 1e6, 63 % at κ = 1e7 and
    NaN at κ = 1e10 in float32 (torch 2.14), while with the query pre-scaled its forward and
    backward form the same logits. Half precision is computed in float32 (κ·x would
    overflow float16).
    """
    compute = x.float() if x.dtype in _HALF else x
    q = compute.unsqueeze(1)  # (B, 1, N, D): one head, so the fused CPU/CUDA kernels apply
    out = F.scaled_dot_product_attention(q / bandwidth**2, q, q, scale=1.0)
    return out.squeeze(1).to(x.dtype)


def _validate(x: object, bandwidth: object, impl: object) -> tuple[torch.Tensor, float, str]:
    x = check_points(x, "x")
    checked_bandwidth = check_bandwidth(bandwidth)
    checked_impl = check_choice(impl, "impl", GBMS_IMPLS)
    check_finite(x, "x")
    check_unit_rows(x, "x")
    return x, checked_bandwidth, checked_impl


_BLURS = {"tiled": tiled_blur, "sdpa": _blur_sdpa, "dense": _blur_dense}


def _auto_impl(x: torch.Tensor) -> str:
    return "tiled" if x.device.type == "cpu" else "sdpa"


def _step(x: torch.Tensor, bandwidth: float, impl: str) -> torch.Tensor:
    """One step; half precision is blurred and re-projected in float32 and rounded once at
    the end (re-projecting in float16 underflowed ``|y|·(|y| + 1e-5)²`` in the backward for
    short blurred rows, an inf gradient where the true one is ~1e3)."""
    if impl == "auto":
        impl = _auto_impl(x)
    compute = x.float() if x.dtype in _HALF else x
    with no_autocast(x.device):
        return normalize_to_sphere(_BLURS[impl](compute, bandwidth), dim=-1).to(x.dtype)


def _unroll(x: torch.Tensor, bandwidth: float, num_iters: int, impl: str) -> list[torch.Tensor]:
    iterates = [x]
    for _ in range(num_iters):
        iterates.append(_step(iterates[-1], bandwidth, impl))
    return iterates


def gbms_step(x: torch.Tensor, bandwidth: float, *, impl: str = "auto") -> torch.Tensor:
    """One Gaussian-blurring mean-shift step on the sphere (differentiable).

    Args:
        x: ``(B, N, D)`` points with unit-norm rows (e.g. from :func:`normalize_to_sphere`;
            B, N, D >= 1, finite, norms <= 1.01 — shorter rows, zero included, are fine).
        bandwidth: kernel bandwidth δ >= 1e-8 (vMF concentration κ = 1/δ²; a Python
            number, NumPy scalar or 0-d tensor). The original uses 0.1 (toy training,
            demo 3) and 0.2 (its stored toy model, demo-4 visualisation).
        impl: ``"auto"``, ``"tiled"``, ``"sdpa"`` (all O(N·D) memory) or ``"dense"``
            (explicit N x N kernel, O(N²) memory); see the module docstring.

    Returns:
        ``(B, N, D)`` unit rows, same dtype and device as ``x`` (half precision is computed in
        float32 and rounded once).

    Cost: O(B·N²·D) time per step (4·N²·D flops).

    Example:
        >>> x = normalize_to_sphere(torch.randn(1, 100, 3), dim=-1)
        >>> gbms_step(x, bandwidth=0.2).shape
        torch.Size([1, 100, 3])
    """
    x, checked_bandwidth, checked_impl = _validate(x, bandwidth, impl)
    return _step(x, checked_bandwidth, checked_impl)


def recurrent_mean_shift(
    x: torch.Tensor, bandwidth: float, num_iters: int, *, impl: str = "auto"
) -> list[torch.Tensor]:
    """Unroll ``num_iters`` GBMS steps (T), keeping every iterate for per-loop losses.

    Args:
        x: ``(B, N, D)`` unit rows.
        bandwidth: δ >= 1e-8.
        num_iters: T >= 0 (an int, NumPy integer or 0-d integer tensor).
        impl: see :func:`gbms_step`.

    Returns:
        A list of ``T + 1`` tensors ``(B, N, D)``: the input followed by every iterate. Each is
        differentiable with respect to ``x`` through all earlier steps.

    Cost: T times :func:`gbms_step`; autograd keeps O(T·B·N·D) activations.
    """
    x, checked_bandwidth, checked_impl = _validate(x, bandwidth, impl)
    steps = check_non_negative_int(num_iters, "num_iters")
    return _unroll(x, checked_bandwidth, steps, checked_impl)


class RecurrentMeanShift(nn.Module):
    """The grouping layer: T differentiable GBMS steps. See :func:`recurrent_mean_shift`.

    Accepts points ``(B, N, D)`` or a dense map ``(B, D, H, W)`` and returns the ``T + 1``
    iterates in the same layout.
    """

    def __init__(self, bandwidth: float = 0.1, num_iters: int = 5, impl: str = "auto") -> None:
        super().__init__()
        self.bandwidth = check_bandwidth(bandwidth)
        self.num_iters = check_non_negative_int(num_iters, "num_iters")
        self.impl = check_choice(impl, "impl", GBMS_IMPLS)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = check_tensor(x, "x")
        check_rank(x, (3, 4), "x", "(B, N, D) or (B, D, H, W)")
        if x.dim() == 3:
            if x.is_floating_point() and bool((x.norm(dim=-1) > 1.01).any()):
                raise ValueError(
                    f"x of shape {tuple(x.shape)} is read as (B, N, D) points, whose rows are "
                    "not unit-norm; for one (D, H, W) map add the batch dim (x[None]), else "
                    "call pixelgroup.ops.normalize_to_sphere first"
                )
            return recurrent_mean_shift(x, self.bandwidth, self.num_iters, impl=self.impl)
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
        if min(x.shape) == 0:
            raise ValueError(
                f"x must have B, D, H, W >= 1 for a dense map (B, D, H, W), "
                f"got shape {tuple(x.shape)}"
            )
        check_finite(x, "x")
        check_unit_rows(x, "x", dim=1, what="vectors along dim 1 (D)")
        b, d, h, w = x.shape
        points = x.flatten(2).transpose(1, 2)
        iterates = _unroll(points, self.bandwidth, self.num_iters, self.impl)
        return [x] + [it.transpose(1, 2).reshape(b, d, h, w) for it in iterates[1:]]

    def extra_repr(self) -> str:
        return f"bandwidth={self.bandwidth}, num_iters={self.num_iters}, impl={self.impl!r}"
