"""The GBMS kernel-weighted mean in O(N·D) memory: a tiled, symmetric autograd function.

For unit rows X ``(N, D)`` and κ = 1/δ², one GBMS blur is ``Y = D⁻¹ G X`` with
``G = exp(κ(XXᵀ − 1))`` and row sums ``d = G·1``. Because Q = K = V = X:

* the exponent is <= 0, so no running maximum is needed (``d >= 1``: the diagonal is 1);
* ``G`` is symmetric, so only tile pairs ``J >= I`` are formed: one ``t x t`` tile feeds
  the rows of I (``G_IJ X_J``) and of J (``X_Iᵀ G_IJ``, accumulated transposed), halving the
  products and exponentials;
* the forward saves only ``d`` and ``Y``; the backward recomputes each tile. With ``dY`` the
  output gradient, ``r_i = dY_i·Y_i`` and ``P = D⁻¹G``::

      dA = P ∘ (dY Xᵀ − r 1ᵀ)                  (softmax backward, logits κS)
      dX = Pᵀ dY + κ (dA + dAᵀ) X

  and per tile pair ``(dA + dAᵀ)_IJ = G_IJ ∘ (Z_I X_Jᵀ + X_I Z_Jᵀ − c_I − c_J)`` with
  ``Z = dY / d`` and ``c = r / d``, one matrix product after stacking ``[Z, X, −c, 1]``.

Shifts and scales (κ·log2 e) are folded into the matrix products (an extra column), so each
tile costs its products plus one ``exp2`` (forward) or one ``exp2`` and one multiply
(backward). Peak extra memory is O(N·D) plus a few ``t x t`` tiles. Double backward is not
supported. docs/benchmarks.md §1 has the measurements behind each of these choices.
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

__all__ = ["tiled_blur", "DEFAULT_TILE"]

DEFAULT_TILE = 512
# Kernel tiles are computed as 2^(log2(e)·logit): log2(e) is folded into the matrix product,
# and torch's exp2 ran 4-5x faster than its exp here (7 vs 1.5 G values/s on one AVX-512
# core, both within 1e-7 relative). 2^x for x < -126 is subnormal in float32, and subnormal
# numbers slow x86 arithmetic (an exp landing there took 20x longer here, and the products
# after it several times longer), so the kernel is floored at 2^-115 ≈ e^-80 ≈ 1.8e-35.
# Since d >= 1 the relative change is below float64 resolution for any N < 1e19.
_LOG2_E = math.log2(math.e)
_LOG2_FLOOR = -115.0
_MIN_WIDTH = 16


def _floored_exp2_(logits2: torch.Tensor) -> torch.Tensor:
    """Kernel values from base-2 logits <= 0, in place: ``2^max(logits2, -115)``, never
    subnormal."""
    return logits2.clamp_min_(_LOG2_FLOOR).exp2_()


def _pairs(n: int, tile: int):
    """Tile pairs ``(I, J)`` with ``J >= I`` as ``(i0, i1, j0, j1)``."""
    for i0 in range(0, n, tile):
        for j0 in range(i0, n, tile):
            yield i0, min(i0 + tile, n), j0, min(j0 + tile, n)


def _widened(t: torch.Tensor) -> torch.Tensor:
    """``(N, w)`` with zero columns appended up to 16 when w < 16: MKL's skinny products ran
    up to 3x faster per tile entry at width 16 than at 9 here; zero columns change nothing."""
    width = t.shape[1]
    return torch.nn.functional.pad(t, (0, _MIN_WIDTH - width)) if width < _MIN_WIDTH else t


def _kernel_operands(x: torch.Tensor, kappa: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``left, right`` ``(N, >= D + 1)`` with ``2^(left_I right_Jᵀ) = G_IJ`` (base-2 logits
    ``κ(S − 1)·log2 e``); ``G @ right = [G X, d, 0...]``."""
    ones = x.new_ones(len(x), 1)
    scale = kappa * _LOG2_E
    left = _widened(torch.cat([scale * x, -scale * ones], dim=1))
    return left, _widened(torch.cat([x, ones], dim=1))


def _forward_one(x: torch.Tensor, kappa: float, tile: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, D)`` -> blurred ``(N, D)`` and row sums ``(N,)``."""
    n, dim = x.shape
    left, right = _kernel_operands(x, kappa)
    # rows: sum over J >= I of G_IJ right_J, by I; cols: sum over I < J of right_Iᵀ G_IJ, by
    # J, kept transposed because Aᵀ B ran several times faster here than (Bᵀ A)ᵀ
    rows = x.new_zeros(n, right.shape[1])
    cols = x.new_zeros(right.shape[1], n)
    for i0, i1, j0, j1 in _pairs(n, tile):
        g = _floored_exp2_(left[i0:i1] @ right[j0:j1].T)
        rows[i0:i1].addmm_(g, right[j0:j1])
        if j0 != i0:
            cols[:, j0:j1].addmm_(right[i0:i1].T, g)
    acc = rows + cols.T
    density = acc[:, dim]
    return acc[:, :dim] / density[:, None], density


def _backward_one(
    x: torch.Tensor,
    y: torch.Tensor,
    density: torch.Tensor,
    grad: torch.Tensor,
    kappa: float,
    tile: int,
) -> torch.Tensor:
    """Gradient ``(N, D)`` wrt ``x`` of ``<grad, Y(x)>``, recomputing kernel tiles."""
    n, dim = x.shape
    ones = x.new_ones(n, 1)
    z = grad / density[:, None]
    c = (grad * y).sum(dim=1, keepdim=True) / density[:, None]
    kern_left, kern_right = _kernel_operands(x, kappa)
    # (κ·[Z, X, −c, 1]) @ [X, Z, 1, −c]ᵀ = κ(Z_I X_Jᵀ + X_I Z_Jᵀ − c_I − c_J)
    sym_left = _widened(kappa * torch.cat([z, x, -c, ones], dim=1))
    sym_right = _widened(torch.cat([x, z, ones, -c], dim=1))
    z, xw = _widened(z), _widened(x)
    rows = torch.zeros_like(xw)  # by I: G_IJ Z_J + M_IJ X_J
    cols = xw.new_zeros(xw.shape[1], n)  # by J, transposed: Z_Iᵀ G_IJ + X_Iᵀ M_IJ
    for i0, i1, j0, j1 in _pairs(n, tile):
        g = _floored_exp2_(kern_left[i0:i1] @ kern_right[j0:j1].T)
        m = (sym_left[i0:i1] @ sym_right[j0:j1].T).mul_(g)  # κ (dA + dAᵀ)_IJ
        rows[i0:i1].addmm_(g, z[j0:j1]).addmm_(m, xw[j0:j1])
        if j0 != i0:
            cols[:, j0:j1].addmm_(z[i0:i1].T, g).addmm_(xw[i0:i1].T, m)
    return (rows + cols.T)[:, :dim]


class _TiledBlur(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, kappa: float, tile: int) -> torch.Tensor:
        outs = [_forward_one(xb, kappa, tile) for xb in x]
        y = torch.stack([o[0] for o in outs])
        density = torch.stack([o[1] for o in outs])
        ctx.save_for_backward(x, y, density)
        ctx.kappa, ctx.tile = kappa, tile
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, y, density = ctx.saved_tensors
        grad = grad.contiguous()
        dx = torch.stack(
            [
                _backward_one(x[b], y[b], density[b], grad[b], ctx.kappa, ctx.tile)
                for b in range(x.shape[0])
            ]
        )
        return dx, None, None


def tiled_blur(x: torch.Tensor, bandwidth: float, tile: int = DEFAULT_TILE) -> torch.Tensor:
    """Kernel-weighted means ``D⁻¹ G X`` of ``(B, N, D)`` unit rows, without an N x N matrix.

    Half-precision inputs are computed in float32 and cast back. Differentiable (first order).

    Cost: about 3·N²·D flops and N²/2 exponentials forward, 7·N²·D flops and N²/2
    exponentials backward, per image; memory O(N·D + tile²).
    """
    compute = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    return _TiledBlur.apply(compute.contiguous(), 1.0 / bandwidth**2, tile).to(x.dtype)
