"""Inference-time GBMS on weighted points: merge coincident points so late loops cost O(M²·D).

After a few GBMS loops the points of one instance collapse onto (nearly) one location. A set
of ``w`` identical points acts on every other point exactly like one point of weight ``w``::

    y_i = sum_j w_j k_ij x_j / sum_j w_j k_ij          (weighted GBMS step, k as in gbms_step)

so merging identical points changes nothing (``merge_tol=0``). Merging points that fall in
the same grid cell of side ``merge_tol`` moves each point by at most ``merge_tol·sqrt(D)``
per merge (it is replaced by the weighted mean of its cell). With M distinct points left, a
loop costs O(M²·D) instead of O(N²·D). Each loop is one fused attention call, so no N x N (or
M x M) matrix is ever held. These functions are for inference (``torch.no_grad``); the
differentiable layer is :func:`pixelgroup.ops.recurrent_mean_shift`.

**Numerics.** The weighted kernel is softmax attention with logits ``κ x_i·x_j + log w_j``;
the fused kernel subtracts each row's largest logit, so the moved points are right for every
input the checks accept (any norms <= 1.01, any δ >= 1e-8). The density comes from the same
call through one extra "sentinel" key whose logit tracks each row's own self-similarity
(:func:`weighted_gbms_step`), and is returned as a log-density: ``d_i`` itself under- or
overflows (``e^{−κ}`` for a zero row, ``e^{0.02κ}`` for a row of norm 1.01), its logarithm
never does. Half-precision points are computed in float32, with autocast off.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pixelgroup._checks import (
    check_bandwidth,
    check_finite,
    check_finite_number,
    check_non_negative_int,
    check_rank,
    check_tensor,
    check_unit_rows,
)
from pixelgroup.ops.attention import fused_attention, no_autocast

__all__ = ["weighted_gbms_step", "merge_coincident", "merged_mean_shift", "MergedMeanShift"]

_HALF = (torch.float16, torch.bfloat16)
_TILE = 512
_ROWS = 4096  # rows of grid keys made at once (1 MB at D = 32: cache-resident)


def _check_rows(x: object, name: str = "x") -> torch.Tensor:
    """Floating ``(M, D)`` unit rows with M, D >= 1, finite."""
    x = check_tensor(x, name)
    check_rank(x, (2,), name, "(N, D)")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must have N >= 1 points of D >= 1 dims, got {tuple(x.shape)}")
    check_finite(x, name)
    check_unit_rows(x, name)
    return x


def _check_weights(weights: object, count: int) -> torch.Tensor:
    """Finite positive floating ``(count,)`` weights."""
    weights = check_tensor(weights, "weights")
    if not weights.is_floating_point():
        raise TypeError(f"weights must be a floating-point tensor, got dtype {weights.dtype}")
    if tuple(weights.shape) != (count,):
        raise ValueError(
            f"weights must be ({count},) positive values like x's rows, got shape "
            f"{tuple(weights.shape)}"
        )
    if not bool(((weights > 0) & torch.isfinite(weights)).all()):
        raise ValueError("weights must be finite and > 0 (point multiplicities)")
    return weights


def _log_mass(query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """``(R,)`` ``log Σ_j exp(query_i·key_j)`` in tiles (no R x M matrix)."""
    out = query.new_full((len(query),), -math.inf)
    for r0 in range(0, len(query), _TILE):
        part = out[r0 : r0 + _TILE]
        for j0 in range(0, len(key), _TILE):
            block = torch.logsumexp(query[r0 : r0 + _TILE] @ key[j0 : j0 + _TILE].T, dim=1)
            part.copy_(torch.logaddexp(part, block))
    return out


def weighted_gbms_step(
    x: torch.Tensor, weights: torch.Tensor, bandwidth: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """One GBMS step on weighted points, as one fused attention call (no M x M matrix).

    The weighted kernel is softmax attention with logits ``κ x_i·x_j + log w_j``
    (:func:`pixelgroup.ops.attention.fused_attention`, which subtracts each row's largest
    logit). One extra "sentinel" key with logit ``σ_i = κ|x_i|² + log c`` (c the smallest
    weight; a third query column carries ``κ|x_i|²``, lowered by a bound on the rounding of
    the logits) and value ``e_{D+2}``, and a value column of ones on the real keys, make the
    output carry the data share
    ``t_i = m_i / (m_i + e^{σ_i})`` and the sentinel share ``s_i = e^{σ_i} / (m_i + e^{σ_i})``,
    ``m_i = Σ_j e^{κ x_i·x_j + log w_j}``. A row's own term is at least the sentinel, so
    ``t_i >= 1/2``: the mean ``out / t_i`` loses nothing, and ``log m_i = log t_i − log s_i +
    σ_i``. Where the sentinel share is too small to resolve (``s_i`` below float32's normal
    range times 2^24: neighbours far longer than the row at a large κ) ``log m_i`` is
    recomputed as a tiled log-sum-exp.

    Args:
        x: ``(M, D)`` unit rows.
        weights: ``(M,)`` finite positive point weights (multiplicities).
        bandwidth: δ >= 1e-8.

    Returns:
        ``(x_new, log_density)``: ``(M, D)`` moved points re-projected onto the sphere (as in
        :func:`pixelgroup.ops.gbms_step`), dtype of ``x``, and ``(M,)`` log weighted kernel
        densities ``log d_i = log Σ_j w_j exp((x_i·x_j − 1)/δ²)`` at the input points, in
        the compute dtype (float32 for half inputs).

    Cost: O(M²·D) time, O(M·D) memory (:func:`pixelgroup.ops.attention.fused_attention`).
    """
    x = _check_rows(x)
    weights = _check_weights(weights, x.shape[0])
    kappa = 1.0 / check_bandwidth(bandwidth) ** 2
    with no_autocast(x.device):
        moved, log_density = _weighted_step(x.float() if x.dtype in _HALF else x, weights, kappa)
    return moved.to(x.dtype), log_density


def _weighted_step(
    xc: torch.Tensor, weights: torch.Tensor, kappa: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`weighted_gbms_step` of checked ``(M, D)`` float32 / float64 rows, κ = 1/δ²."""
    m, dim = xc.shape
    log_w = weights.to(xc.dtype).log()
    log_c = log_w.min()
    # σ_i sits below the self logit by more than the products' rounding error (at most
    # γ_{D+2} times κ|x_i|² + |log w| for either logit), so t_i >= 1/2 holds as computed
    rounding = 8 * (dim + 4) * torch.finfo(xc.dtype).eps / 2
    sq_norm = (xc * xc).sum(dim=1, keepdim=True)
    self_logit = kappa * sq_norm - rounding * (kappa * sq_norm + log_w.abs().max())
    # logits: [κx_i, 1, κ|x_i|²] · [x_j, log w_j, 0] and · [0, log c, 1] (the sentinel)
    query = torch.cat([kappa * xc, xc.new_ones(m, 1), self_logit], dim=1)
    key = torch.cat([xc, log_w[:, None], xc.new_zeros(m, 1)], dim=1)
    value = torch.cat([xc, xc.new_ones(m, 1), xc.new_zeros(m, 1)], dim=1)
    sentinel = torch.cat([log_c[None], xc.new_ones(1)])  # key and value: columns D, D + 1
    key = torch.cat([key, F.pad(sentinel, (dim, 0))[None]])
    value = torch.cat([value, F.pad(sentinel[1:], (dim + 1, 0))[None]])
    out = fused_attention(query, key, value, scale=1.0)
    share, sentinel_share = out[:, dim], out[:, dim + 1]  # t_i >= 1/2 and s_i
    blurred = out[:, :dim] / share[:, None]  # the weighted mean
    moved = blurred / (blurred.norm(dim=1, keepdim=True) + 1e-5)
    log_mass = share.log() - sentinel_share.log() + self_logit[:, 0] + log_c
    unresolved = sentinel_share < torch.finfo(torch.float32).tiny * 2.0**24
    if bool(unresolved.any()):
        rows = unresolved.nonzero()[:, 0]
        log_mass[rows] = _log_mass(query[rows, : dim + 1], key[:m, : dim + 1])
    return moved, log_mass - kappa


def merge_coincident(
    x: torch.Tensor, weights: torch.Tensor, merge_tol: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Merge points that share a grid cell of side ``merge_tol`` into weighted points.

    Args:
        x: ``(M, D)`` points.
        weights: ``(M,)`` weights.
        merge_tol: cell side; ``0`` merges only exactly identical points (exact for GBMS),
            and so does any side below 2⁻⁶⁰ (finer than float64 resolves unit rows).

    Returns:
        ``(points, merged_weights, index)``: ``(M', D)`` weighted cell means, ``(M',)`` summed
        weights and ``(M,)`` int64 with ``points[index[i]]`` the point that ``x[i]`` became.
        Each point moves by at most ``merge_tol * sqrt(D)``.

    Cost: O(M·D·log M) (a sort).
    """
    index, order, num = _unique_rows(x, merge_tol)
    if num == len(x):  # nothing merges (noisy embeddings): a permutation, no scatter
        merged_weights, points = weights[order], torch.index_select(x, 0, order)
        if not bool((merged_weights == 1).all()):  # as the sums below: x·w / w
            points = points * merged_weights[:, None] / merged_weights[:, None]
        return points, merged_weights, index
    merged_weights = weights.new_zeros(num).index_add_(0, index, weights)
    sums = x.new_zeros(num, x.shape[1]).index_add_(0, index, x * weights[:, None])
    return sums / merged_weights[:, None], merged_weights, index


def _grid_keys(x: torch.Tensor, merge_tol: float) -> torch.Tensor:
    """``(M, D)`` float64 cell of each row: ``round(x / merge_tol)``, or the row itself below
    2⁻⁶⁰ (``x / merge_tol`` would only overflow, never merge more)."""
    keys = x.to(torch.float64, copy=True)
    return keys if merge_tol < 2.0**-60 else keys.div_(merge_tol).round_()


def _projection(keys: torch.Tensor) -> torch.Tensor:
    """A fixed random ``(D,)`` direction for the ``(M, D)`` keys (seed 0)."""
    return _direction(keys.shape[1], keys.dtype, keys.device)


@functools.lru_cache(maxsize=16)
def _direction(dim: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(dim, generator=gen, dtype=dtype).to(device)


def _argsort(values: torch.Tensor) -> torch.Tensor:
    """``(M,)`` int64 order sorting the 1-D ``values`` (ties in any order): NumPy's SIMD sort
    on the CPU, several times faster there than ``torch.sort``."""
    if values.device.type == "cpu":
        return torch.from_numpy(np.argsort(values.numpy()))
    return torch.argsort(values)


def _unique_rows(x: torch.Tensor, merge_tol: float) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(M,)`` int64 ids in 0..U-1, equal exactly for rows of the ``(M, D)`` x with equal
    :func:`_grid_keys`, an ``(M,)`` order of the rows by id, and U.

    Sorts one random projection of the keys (a 1-D sort, several times faster than
    ``torch.unique(dim=0)``'s row sort; ids in the order of ``torch.unique`` of the
    projections; keys made a cache-sized block of rows at a time) and checks that the rows
    sharing a projection, neighbours in that order, have equal keys; on a (vanishingly rare)
    coincidence it falls back to the row sort.
    """
    direction = _projection(x.new_zeros(0, x.shape[1], dtype=torch.float64))
    projected = torch.cat(
        [_grid_keys(x[r0 : r0 + _ROWS], merge_tol) @ direction for r0 in range(0, len(x), _ROWS)]
        or [direction[:0]]
    )
    order = _argsort(projected)
    values = projected[order]
    new = torch.ones(len(values), dtype=torch.bool, device=x.device)
    new[1:] = values[1:] != values[:-1]
    ids = torch.cumsum(new, 0).sub_(1)
    same = ~new[1:]
    first, second = order[:-1][same], order[1:][same]
    if not torch.equal(_grid_keys(x[first], merge_tol), _grid_keys(x[second], merge_tol)):
        rows, index = torch.unique(_grid_keys(x, merge_tol), dim=0, return_inverse=True)
        return index, torch.argsort(index, stable=True), len(rows)
    index = torch.empty_like(ids)
    index[order] = ids
    return index, order, int(ids[-1]) + 1 if len(ids) else 0


@dataclass(frozen=True)
class MergedMeanShift:
    """Result of :func:`merged_mean_shift`.

    Attributes:
        points: ``(M, D)`` distinct final points (modes once converged), dtype of the input.
        weights: ``(M,)`` how many input points (their summed weights) each final point
            carries.
        log_density: ``(M,)`` log of the weighted kernel density of each point at the last
            step (``log d_i`` of :func:`weighted_gbms_step`, weight-averaged over merged
            points): always finite, unlike ``d_i``.
        index: ``(N,)`` int64; ``points[index]`` are the final positions of the inputs.
        num_iters: loops actually run (<= the requested T; fewer after an early stop).
    """

    points: torch.Tensor
    weights: torch.Tensor
    log_density: torch.Tensor
    index: torch.Tensor
    num_iters: int

    @property
    def density(self) -> torch.Tensor:
        """``(M,)`` ``exp(log_density)``; may under- or overflow (0 or inf) at small δ."""
        return self.log_density.exp()


def _merged_log_density(
    log_density: torch.Tensor, weights: torch.Tensor, index: torch.Tensor, merged: torch.Tensor
) -> torch.Tensor:
    """``log(Σ_k w_k d_k / Σ_k w_k)`` over the points k that ``index`` merges, in log space."""
    terms = log_density + weights.log()
    top = terms.new_full((len(merged),), -math.inf).scatter_reduce(0, index, terms, "amax")
    total = terms.new_zeros(len(merged)).index_add_(0, index, (terms - top[index]).exp())
    return top + total.log() - merged.log()


@torch.no_grad()
def merged_mean_shift(
    x: torch.Tensor,
    bandwidth: float,
    num_iters: int,
    *,
    weights: torch.Tensor | None = None,
    merge_tol: float = 1e-3,
    stop_tol: float = 1e-4,
) -> MergedMeanShift:
    """Run up to T GBMS loops, merging coincident points after every loop.

    Args:
        x: ``(N, D)`` unit rows (one image).
        bandwidth: δ > 0.
        num_iters: T >= 0, the most loops to run.
        weights: ``(N,)`` positive multiplicities of the rows (default: all 1).
        merge_tol: grid cell side for merging (0: merge only identical points, exact).
        stop_tol: stop early once no point moves more than this (Euclidean) in one loop.

    Returns:
        A :class:`MergedMeanShift`. With ``merge_tol=0`` and ``stop_tol=0``,
        ``points[index]`` equals T loops of :func:`pixelgroup.ops.recurrent_mean_shift`
        up to rounding. Half-precision points are shifted in float32.

    Cost: sum over loops of O(M_t²·D) with M_t the distinct points at loop t (M_0 <= N).

    Example:
        >>> x = torch.nn.functional.normalize(torch.randn(500, 3), dim=1)
        >>> r = merged_mean_shift(x, bandwidth=0.3, num_iters=20)
        >>> r.points[r.index].shape
        torch.Size([500, 3])
    """
    x = _check_rows(x)
    bandwidth = check_bandwidth(bandwidth)
    num_iters = check_non_negative_int(num_iters, "num_iters")
    merge_tol = check_finite_number(merge_tol, "merge_tol", minimum=0.0)
    stop_tol = check_finite_number(stop_tol, "stop_tol", minimum=0.0)
    compute = torch.float32 if x.dtype in _HALF else x.dtype
    weights = x.new_ones(x.shape[0]) if weights is None else _check_weights(weights, len(x))
    points, weights, index = merge_coincident(x.to(compute), weights.to(compute), merge_tol)
    kappa = 1.0 / bandwidth**2
    log_density = None
    done = 0
    with no_autocast(x.device):
        while done < num_iters:
            moved, log_dens = _weighted_step(points, weights, kappa)
            done += 1
            shift = float((moved - points).norm(dim=1).max())
            points, merged_weights, step_index = merge_coincident(moved, weights, merge_tol)
            # a merged point's density: the weight-averaged density of what it merged
            log_density = _merged_log_density(log_dens, weights, step_index, merged_weights)
            weights, index = merged_weights, step_index[index]
            if shift <= stop_tol:
                break
        if log_density is None:
            log_density = _weighted_step(points, weights, kappa)[1]
    return MergedMeanShift(points.to(x.dtype), weights, log_density, index, done)
