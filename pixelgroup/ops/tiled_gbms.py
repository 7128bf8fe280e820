"""The GBMS kernel-weighted mean in O(N·D) memory: a tiled, symmetric autograd function.

For rows X ``(N, D)`` of norm <= M and κ = 1/δ², one GBMS blur is ``Y = D⁻¹ G X`` with
``G = exp(κ(XXᵀ − M²))`` and row sums ``d = G·1`` (any per-row shift cancels in ``D⁻¹G``;
this one is shared by all rows, so ``G`` stays symmetric). Because Q = K = V = X:

* the exponent is <= 0 (``x_i·x_j <= |x_i||x_j| <= M²``), so exp never overflows, whatever
  the norms the unit-norm check lets through (up to 1.01; bfloat16 rows reach 1.004), and
  the longest rows keep ``d_i >= 1``;
* ``G`` is symmetric, so only the entries ``j >= i`` are formed, halving the products and
  exponentials: each block I of t rows meets the rows from its first one on, in chunks J of up
  to 4t rows. A chunk's kernel tile, formed as ``G_JI`` ``(|J|, t)``, feeds the rows of I
  (``[X, 1]_Jᵀ G_JI``) and the rows of J past the diagonal block I x I (``[X, 1]_Iᵀ G_JIᵀ``),
  both accumulated transposed, into one ``(D + 1, N)`` sum;
* the forward saves only ``d``, ``Y`` and the shifts; the backward recomputes each tile. With
  ``dY`` the output gradient, ``r_i = dY_i·Y_i`` and ``P = D⁻¹G``::

      dA = P ∘ (dY Xᵀ − r 1ᵀ)                  (softmax backward, logits κS)
      dX = Pᵀ dY + κ (dA + dAᵀ) X

  and per tile pair ``(dA + dAᵀ)_IJ = G_IJ ∘ (Z_I X_Jᵀ + X_I Z_Jᵀ − c_I − c_J)`` with
  ``Z = dY / d`` and ``c = r / d``, one matrix product after stacking ``[Z, X, −c, 1]``.

Rows that the shared shift leaves with a tiny kernel mass are recomputed with their own
maximum (flash-attention style); the exponent is floored at −115 so that no kernel value is
subnormal; on the CPU at D <= 8 the symmetric pass runs in fused C++ kernels
(``_gbms_small_dim.cpp``, :func:`small_dim_kernels`). Why, what each choice costs
and the error bounds: docs/benchmarks.md, "1.0 How the tiled layer works". Double backward is
not supported.
"""

from __future__ import annotations

import ctypes
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

from pixelgroup._native import compiled_library
from pixelgroup.ops.attention import no_autocast

__all__ = ["tiled_blur", "DEFAULT_TILE", "small_dim_kernels", "MAX_NATIVE_DIM"]

DEFAULT_TILE = 256
# a strip chunk holds _CHUNK tiles: kernel buffers of (_CHUNK·tile, tile) entries (1 MiB each
# in float32 at the default tile)
_CHUNK = 4
_LOG2_E = math.log2(math.e)
_LOG2_FLOOR = -115.0
# rows with d_i < N·2^-62 are recomputed with their own maximum (module docstring)
_LOG2_RECOMPUTE = -62.0
_MIN_WIDTH = 4
# the torch path's backward takes its factors z and c times a power of two that lifts the
# largest to [2^39, 2^40), undone after: products of kernel values (>= 2^-115) with them then
# stay normal in float32 (>= 2^-126) unless a factor is 2^-50 below the largest, and every sum
# stays far below float32's 2^128 (2^40·κ·N <= 2^91 at δ = 1e-4, N = 2^24)
_LIFT_LOG2 = 40


def _floored_exp2_(logits2: torch.Tensor) -> torch.Tensor:
    """Kernel values from base-2 logits <= 0, in place: ``2^max(logits2, -115)``, never
    subnormal."""
    return logits2.clamp_min_(_LOG2_FLOOR).exp2_()


def _clamped_exp2_(logits2: torch.Tensor) -> torch.Tensor:
    """Kernel values from base-2 logits whose true values are <= 0 but may round above it, in
    place: ``2^clamp(logits2, -115, 0)``."""
    return logits2.clamp_(_LOG2_FLOOR, 0.0).exp2_()


def _strips(n: int, tile: int):
    """Blocks ``I = [i0, i1)`` of ``tile`` rows, each with the chunks ``J = [j0, j1)`` of up to
    ``_CHUNK·tile`` rows that cover rows ``i0 .. N``, as ``(i0, i1, j0, j1)``: every pair
    ``j >= i`` lies in one ``(I, J)``, the diagonal block ``I x I`` in the first chunk."""
    for i0 in range(0, n, tile):
        for j0 in range(i0, n, _CHUNK * tile):
            yield i0, min(i0 + tile, n), j0, min(j0 + _CHUNK * tile, n)


def _tile(buffer: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """A contiguous ``(rows, cols)`` view of the first ``rows·cols`` entries of ``buffer``."""
    return buffer[: rows * cols].view(rows, cols)


def _padded(t: torch.Tensor) -> torch.Tensor:
    """``(N, w)`` with zero columns appended up to 4 when w < 4 (products against 2 or 3
    columns ran 2-3x slower than against 4, module docstring); zero columns change nothing."""
    width = t.shape[1]
    return torch.nn.functional.pad(t, (0, _MIN_WIDTH - width)) if width < _MIN_WIDTH else t


MAX_NATIVE_DIM = 8
_SOURCE = Path(__file__).with_name("_gbms_small_dim.cpp")


def _declare(lib: ctypes.CDLL) -> None:
    """The result types of the library's two size queries."""
    for query in (lib.pg_block_rows, lib.pg_scratch_elements):
        query.restype = ctypes.c_int64


def small_dim_kernels() -> ctypes.CDLL | None:
    """The fused small-D GBMS kernels of ``_gbms_small_dim.cpp`` (``pg_forward_f32_d3``,
    ``pg_backward_f64_d8``, ...), compiled at first use, or None where they are disabled or
    cannot be built (then the torch path runs: same results within rounding).

    Built once per machine by :func:`pixelgroup._native.compiled_library` (system compiler,
    ``-march=native``, cached; see there for the folders and variables); the build took 5.3 s
    on the AVX-512 kind (gcc 12; 4.4 s for AVX2 code). Where no compiler works (one warning if
    a compile failed) or with ``PIXELGROUP_NATIVE=0`` this returns None. ``PIXELGROUP_NATIVE``
    is read at every call, so a benchmark can set it to compare both paths in one process."""
    if os.environ.get("PIXELGROUP_NATIVE", "1") == "0":
        return None
    return compiled_library(
        _SOURCE, "the fused small-D GBMS kernels", "the GBMS layer runs its torch path", _declare
    )


_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
# fused kernels: columns padded to a multiple of 16 (whole 64-byte vectors in either dtype);
# rows split among threads by equal numbers of pairs when N is at least this
_NATIVE_PAD = 16
_NATIVE_MIN_SPLIT = 2048


def _native_kernels(x: torch.Tensor) -> ctypes.CDLL | None:
    """The fused kernels where they apply to ``x`` ``(N, D)``: CPU, float32 or float64,
    D <= 8, and a compiler that built them (:func:`small_dim_kernels`)."""
    if x.device.type != "cpu" or x.dtype not in _SUFFIX or x.shape[1] > MAX_NATIVE_DIM:
        return None
    return small_dim_kernels()


def _transposed_padded(t: torch.Tensor) -> torch.Tensor:
    """``(N, w)`` -> ``(w, N')`` contiguous, N' the next multiple of 16, zero columns after N."""
    n = t.shape[0]
    out = t.new_zeros(t.shape[1], -(-n // _NATIVE_PAD) * _NATIVE_PAD)
    out[:, :n] = t.T
    return out


def _row_splits(n: int, parts: int, block: int) -> list[int]:
    """Row bounds ``0 = b_0 < ... < b_k = n`` on multiples of ``block`` giving each part about
    the same number of pairs ``j >= i`` (row i has n − i)."""
    bounds = {0, n}
    for k in range(1, parts):
        row = n * (1 - math.sqrt(1 - k / parts))
        bounds.add(min(n, round(row / block) * block))
    return sorted(bounds)


def _run_native(
    lib: ctypes.CDLL,
    name: str,
    n: int,
    width: int,
    tensors: tuple[torch.Tensor, ...],
    scalars: tuple[float, ...],
) -> torch.Tensor:
    """Call kernel ``name`` on the padded ``tensors`` over all rows and return its
    ``(width, N)`` sums; with several torch threads and N >= 2048 the rows are split among
    threads (ctypes releases the GIL), each summing into its own buffer."""
    padded = tensors[0].shape[1]
    like = tensors[0]
    c_scalar = ctypes.c_float if like.dtype == torch.float32 else ctypes.c_double
    fn = getattr(lib, name)

    def run(i0: int, i1: int) -> torch.Tensor:
        acc = like.new_zeros(width, padded)
        scratch = like.new_empty(lib.pg_scratch_elements())
        fn(
            *(ctypes.c_void_p(t.data_ptr()) for t in tensors),
            ctypes.c_int64(n),
            ctypes.c_int64(padded),
            *(c_scalar(v) for v in scalars),
            ctypes.c_void_p(acc.data_ptr()),
            ctypes.c_int64(i0),
            ctypes.c_int64(i1),
            ctypes.c_void_p(scratch.data_ptr()),
        )
        return acc

    threads = torch.get_num_threads() if n >= _NATIVE_MIN_SPLIT else 1
    bounds = _row_splits(n, threads, lib.pg_block_rows())
    if len(bounds) == 2:
        return run(0, n)[:, :n]
    with ThreadPoolExecutor(len(bounds) - 1) as pool:
        parts = list(pool.map(run, bounds[:-1], bounds[1:]))
    return torch.stack(parts).sum(dim=0)[:, :n]


def _kernel_left(x: torch.Tensor, scale: float, shift: torch.Tensor) -> torch.Tensor:
    """``(R, >= D + 1)`` rows ``[scale·x_i, −shift_i]``: against :func:`_kernel_right` they
    give base-2 logits ``scale·x_i·x_j − shift_i``."""
    return _padded(torch.cat([scale * x, -shift[:, None]], dim=1))


def _kernel_right(x: torch.Tensor) -> torch.Tensor:
    """``(N, >= D + 1)`` rows ``[x_j, 1]``; ``G @ right = [G X, d, 0...]``."""
    return _padded(torch.cat([x, x.new_ones(len(x), 1)], dim=1))


def _shared_shift(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``(N,)`` filled with ``scale·M²·(1 + 4(D + 3)u)``, M the largest row norm: no logit
    exceeds ``scale·M²``, and the margin exceeds the rounding error of the product that
    forms ``scale·x_i·x_j − shift`` (at most ``γ_{D+1}`` times ``2·scale·M² + margin``, plus
    forming ``scale·x`` and the shift), so every computed exponent is <= 0 without a clamp."""
    unit_roundoff = torch.finfo(x.dtype).eps / 2
    margin = 1.0 + 4 * (x.shape[1] + 3) * unit_roundoff
    return (scale * margin * (x * x).sum(dim=1).max()).expand(len(x))


def _exact_rows(
    x: torch.Tensor, rows: torch.Tensor, scale: float, right: torch.Tensor, tile: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(G_R· @ right)ᵀ`` ``(width, R)`` for the rows in ``rows``, each shifted by its own
    largest base-2 logit ``m_i = max_j scale·x_i·x_j`` (returned, ``(R,)``), in one
    non-symmetric pass with a running maximum (accumulators rescaled when it grows). The
    logits are the plain products ``x_J (scale·x_I)ᵀ``, the shift subtracted afterwards, so
    the largest kernel value of a row is exactly 1 however large κ is."""
    n = len(x)
    query = scale * x[rows]
    acc = x.new_zeros(right.shape[1], len(rows))
    best = x.new_full((len(rows),), -math.inf)
    buffer = x.new_empty(_CHUNK * tile * tile)
    for r0 in range(0, len(rows), tile):
        part, top = acc[:, r0 : r0 + tile], best[r0 : r0 + tile]
        for j0 in range(0, n, _CHUNK * tile):
            j1 = min(j0 + _CHUNK * tile, n)
            logits2 = torch.mm(
                x[j0:j1], query[r0 : r0 + tile].T, out=_tile(buffer, j1 - j0, len(top))
            )
            grown = torch.maximum(top, logits2.amax(dim=0))
            part.mul_((top - grown).exp2_())
            g = _floored_exp2_(logits2.sub_(grown))
            part.addmm_(right[j0:j1].T, g)
            top.copy_(grown)
    return acc, best


def _symmetric_forward(
    x: torch.Tensor, scale: float, shift: torch.Tensor, tile: int
) -> torch.Tensor:
    """``(D + 1, N)``: ``Σ_j G_ij [x_j, 1]`` for every row i, with the shared shift, each
    pair j > i formed once (module docstring); fused kernels at D <= 8 on the CPU."""
    n, dim = x.shape
    lib = _native_kernels(x)
    if lib is not None:
        name = f"pg_forward_{_SUFFIX[x.dtype]}_d{dim}"
        scalars = (scale, float(shift[0]))
        return _run_native(lib, name, n, dim + 1, (_transposed_padded(x),), scalars)
    left, right = _kernel_left(x, scale, shift), _kernel_right(x)
    # acc[:, i] = Σ_j G_ij right_j, kept transposed (module docstring): each chunk's tile is
    # G_JI = G_IJᵀ; right_Jᵀ G_JI adds to the rows of I, right_Iᵀ G_JIᵀ to those of J past I
    acc = x.new_zeros(right.shape[1], n)
    buffer = x.new_empty(_CHUNK * tile * tile)
    for i0, i1, j0, j1 in _strips(n, tile):
        logits2 = _tile(buffer, j1 - j0, i1 - i0)
        g = _floored_exp2_(torch.mm(right[j0:j1], left[i0:i1].T, out=logits2))
        acc[:, i0:i1].addmm_(right[j0:j1].T, g)
        below = max(i1 - j0, 0)  # rows of the chunk inside I: added to I's rows above
        if below < j1 - j0:
            acc[:, j0 + below : j1].addmm_(right[i0:i1].T, g[below:].T)
    return acc[: dim + 1]


def _forward_one(
    x: torch.Tensor, kappa: float, tile: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(N, D)`` -> blurred ``(N, D)``, row sums ``(N,)``, the base-2 shift of each row
    ``(N,)`` and the recomputed rows (bool ``(N,)``)."""
    n, dim = x.shape
    scale = kappa * _LOG2_E
    shift = _shared_shift(x, scale)
    acc = _symmetric_forward(x, scale, shift, tile)
    low = acc[dim] < n * 2.0**_LOG2_RECOMPUTE
    if bool(low.any()):
        idx = low.nonzero()[:, 0]
        shift = shift.clone()
        rows, shift[idx] = _exact_rows(x, idx, scale, _kernel_right(x), tile)
        acc[:, idx] = rows[: dim + 1]
    density = acc[dim]
    return (acc[:dim] / density).T.contiguous(), density, shift, low


def _symmetric_backward(
    x: torch.Tensor, z: torch.Tensor, c: torch.Tensor, kappa: float, scale: float, tile: int
) -> torch.Tensor:
    """``(D, N)``: ``Σ_j G_ij z_j + κ (dA + dAᵀ)_ij x_j`` for every row i, with the shared
    shift, each pair j > i formed once; ``z`` ``(N, D)``, ``c`` ``(N, 1)`` (module docstring);
    fused kernels at D <= 8 on the CPU."""
    n, dim = x.shape
    shift = _shared_shift(x, scale)
    lib = _native_kernels(x)
    if lib is not None:
        tensors = (_transposed_padded(x), _transposed_padded(z), _transposed_padded(kappa * c))
        name = f"pg_backward_{_SUFFIX[x.dtype]}_d{dim}"
        return _run_native(lib, name, n, dim, tensors, (scale, float(shift[0]), kappa))
    ones = x.new_ones(n, 1)
    kern_left, kern_right = _kernel_left(x, scale, shift), _kernel_right(x)
    # (κ·[Z, X, −c, 1]) @ [X, Z, 1, −c]ᵀ = κ(Z_I X_Jᵀ + X_I Z_Jᵀ − c_I − c_J)
    sym_left = _padded(kappa * torch.cat([z, x, -c, ones], dim=1))
    sym_right = _padded(torch.cat([x, z, ones, -c], dim=1))
    zw, xw = _padded(z), _padded(x)
    # transposed as in the forward: acc[:, I] += Z_Jᵀ G_JI + X_Jᵀ M_JI, and the rows of J
    # past I get Z_Iᵀ G_JIᵀ + X_Iᵀ M_JIᵀ (M = κ(dA + dAᵀ))
    acc = xw.new_zeros(xw.shape[1], n)
    buffers = x.new_empty(2, _CHUNK * tile * tile)
    for i0, i1, j0, j1 in _strips(n, tile):
        shape = (j1 - j0, i1 - i0)
        g = torch.mm(kern_right[j0:j1], kern_left[i0:i1].T, out=_tile(buffers[0], *shape))
        g = _floored_exp2_(g)
        m = torch.mm(sym_right[j0:j1], sym_left[i0:i1].T, out=_tile(buffers[1], *shape))
        m.mul_(g)  # κ (dA + dAᵀ)_JI
        acc[:, i0:i1].addmm_(zw[j0:j1].T, g).addmm_(xw[j0:j1].T, m)
        below = max(i1 - j0, 0)
        if below < j1 - j0:
            acc[:, j0 + below : j1].addmm_(zw[i0:i1].T, g[below:].T)
            acc[:, j0 + below : j1].addmm_(xw[i0:i1].T, m[below:].T)
    return acc[:dim]


def _lifted(z: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``z (N, D)`` and ``c (N, 1)`` times ``2^p`` (exact: a power of two) and ``p``, the
    largest entry of either lifted to ``[2^39, 2^40)`` (p <= 120); ``p = 0`` where all are
    zero or one is not finite. The backward is linear in (z, c), so its result is scaled back
    by ``2^-p``. Without it, products of floored kernel values with small gradients fall below
    float32's 2^-126, and each such subnormal costs about a hundred cycles on Intel cores: the
    torch path's backward ran 15-22x longer (N = 4,096, D = 16, one thread; docs/benchmarks.md
    §6.1)."""
    top = float(torch.maximum(z.abs().max(), c.abs().max()))
    if top == 0.0 or not math.isfinite(top):
        return z, c, 0
    power = min(_LIFT_LOG2 - math.frexp(top)[1], 120)  # 2^p itself finite in float32
    return torch.ldexp(z, z.new_tensor(power)), torch.ldexp(c, c.new_tensor(power)), power


def _backward_one(
    x: torch.Tensor,
    y: torch.Tensor,
    density: torch.Tensor,
    shift: torch.Tensor,
    low: torch.Tensor,
    grad: torch.Tensor,
    kappa: float,
    tile: int,
) -> torch.Tensor:
    """Gradient ``(N, D)`` wrt ``x`` of ``<grad, Y(x)>``, recomputing kernel tiles."""
    dim = x.shape[1]
    scale = kappa * _LOG2_E
    z = grad / density[:, None]
    c = (grad * y).sum(dim=1, keepdim=True) / density[:, None]
    z, c, power = _lifted(z, c)
    recomputed = bool(low.any())
    if recomputed:  # their weights come from the non-symmetric pass below
        keep = ~low[:, None]
        z_all, c_all = z, c
        z, c = z * keep, c * keep
    acc = _symmetric_backward(x, z, c, kappa, scale, tile)
    if recomputed:
        idx = low.nonzero()[:, 0]
        own, cols = _exact_rows_backward(
            x, idx, shift[idx], z_all[idx], c_all[idx], _kernel_right(x), kappa, scale, tile
        )
        acc.index_add_(1, idx, own[:dim])
        acc += cols[:dim]
    return torch.ldexp(acc.T, acc.new_tensor(-power))


def _exact_rows_backward(
    x: torch.Tensor,
    idx: torch.Tensor,
    shift: torch.Tensor,
    z: torch.Tensor,
    c: torch.Tensor,
    kern_right: torch.Tensor,
    kappa: float,
    scale: float,
    tile: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The terms of ``dX`` that carry the weights ``P_ij`` of the rows i in ``idx`` (with
    their own shifts), transposed: ``κ Σ_j dA_ij x_j`` for those rows ``(w, R)``, and
    ``Σ_i P_ij dY_i + κ Σ_i dA_ij x_i`` for every j ``(w, N)``; with
    ``dA_ij = G_ij (Z_i·x_j − c_i)``."""
    n = len(x)
    xr = x[idx]
    query = scale * xr  # the forward's products, the shift subtracted afterwards
    # [X, 1] @ (κ·[Z, −c])ᵀ = κ(X_J Z_Iᵀ − c_I)
    a_left = _padded(kappa * torch.cat([z, -c], dim=1))
    a_right = kern_right  # [X, 1, 0...]
    zw, xw, xrw = _padded(z), _padded(x), _padded(xr)
    own = xw.new_zeros(xw.shape[1], len(idx))
    cols = xw.new_zeros(xw.shape[1], n)
    buffers = x.new_empty(2, _CHUNK * tile * tile)
    for r0 in range(0, len(idx), tile):
        r1 = min(r0 + tile, len(idx))
        for j0 in range(0, n, _CHUNK * tile):
            j1 = min(j0 + _CHUNK * tile, n)
            shape = (j1 - j0, r1 - r0)
            logits2 = torch.mm(x[j0:j1], query[r0:r1].T, out=_tile(buffers[0], *shape))
            g = _clamped_exp2_(logits2.sub_(shift[r0:r1]))  # G_JR
            a = torch.mm(a_right[j0:j1], a_left[r0:r1].T, out=_tile(buffers[1], *shape))
            a.mul_(g)  # κ dA_RJᵀ
            own[:, r0:r1].addmm_(xw[j0:j1].T, a)
            cols[:, j0:j1].addmm_(zw[r0:r1].T, g.T).addmm_(xrw[r0:r1].T, a.T)
    return own, cols


class _TiledBlur(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, kappa: float, tile: int) -> torch.Tensor:
        with no_autocast(x.device):
            outs = [_forward_one(xb, kappa, tile) for xb in x]
        y, density, shift, low = (torch.stack([o[k] for o in outs]) for k in range(4))
        ctx.save_for_backward(x, y, density, shift, low)
        ctx.kappa, ctx.tile = kappa, tile
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, y, density, shift, low = ctx.saved_tensors
        grad = grad.to(x.dtype).contiguous()
        with no_autocast(x.device):
            dx = torch.stack(
                [
                    _backward_one(
                        x[b], y[b], density[b], shift[b], low[b], grad[b], ctx.kappa, ctx.tile
                    )
                    for b in range(x.shape[0])
                ]
            )
        return dx, None, None


def tiled_blur(x: torch.Tensor, bandwidth: float, tile: int = DEFAULT_TILE) -> torch.Tensor:
    """Kernel-weighted means ``D⁻¹ G X`` of ``(B, N, D)`` rows, without an N x N matrix.

    Args:
        x: ``(B, N, D)`` rows of norm <= ~1 (points on the sphere; shorter rows are handled
            exactly too, see the module docstring).
        bandwidth: δ > 0 (κ = 1/δ²).
        tile: rows per block (256 by default; the kernel tiles are up to 4·tile x tile).

    Returns:
        ``(B, N, D)`` in the dtype of ``x``. Half-precision inputs are computed in float32
        and cast back. Differentiable (first order).

    Cost: about 3·N²·D flops and N²/2 exponentials forward, 7·N²·D flops and N²/2
    exponentials backward, per image (rows recomputed with their own maximum add about 4·R·N·D
    flops and R·N exponentials each way); memory O(N·D + tile²). At D <= 8 on the CPU the
    fused kernels run instead (module docstring); ``tile`` then only sizes the recomputed
    rows' passes.
    """
    compute = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    return _TiledBlur.apply(compute.contiguous(), 1.0 / bandwidth**2, tile).to(x.dtype)
