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
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pixelgroup._checks import (
    check_finite,
    check_non_negative_int,
    check_positive,
    check_rank,
    check_tensor,
    check_unit_rows,
)
from pixelgroup.ops.attention import fused_attention

__all__ = ["weighted_gbms_step", "merge_coincident", "merged_mean_shift", "MergedMeanShift"]


def weighted_gbms_step(
    x: torch.Tensor, weights: torch.Tensor, bandwidth: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """One GBMS step on weighted points, as one fused attention call (no M x M matrix).

    The weighted kernel is softmax attention with logits ``κ(x_i·x_j − 1) + log w_j``
    (:func:`pixelgroup.ops.attention.fused_attention`'s key log-weights). One extra
    "sentinel" key (zero vector, log-weight ``log c`` with c the smallest weight, value
    ``e_{D+1}``) makes the attention output carry the density too: its last entry is
    ``s_i = c / (d_i + c)``.

    Args:
        x: ``(M, D)`` unit rows.
        weights: ``(M,)`` positive point weights (multiplicities).
        bandwidth: δ > 0.

    Returns:
        ``(x_new, density)``: ``(M, D)`` moved points re-projected onto the sphere (as in
        :func:`pixelgroup.ops.gbms_step`) and ``(M,)`` weighted kernel densities
        ``d_i = sum_j w_j k_ij`` at the input points.

    Cost: O(M²·D) time, O(M·D) memory (:func:`pixelgroup.ops.attention.fused_attention`).
    """
    m, dim = x.shape
    kappa = 1.0 / bandwidth**2
    floor = weights.min()
    key = torch.cat([x, x.new_zeros(1, dim)])
    log_weights = torch.cat([weights.log() - kappa, floor.log()[None]])
    value = x.new_zeros(m + 1, dim + 1)
    value[:m, :dim] = x
    value[m, dim] = 1.0
    out = fused_attention(x, key, value, scale=kappa, key_log_weights=log_weights)
    sentinel = out[:, dim]  # c / (d + c), in (0, 1/2]
    blurred = out[:, :dim] / (1.0 - sentinel)[:, None]  # the weighted mean
    moved = blurred / (blurred.norm(dim=1, keepdim=True) + 1e-5)
    return moved, floor * (1.0 - sentinel) / sentinel


def merge_coincident(
    x: torch.Tensor, weights: torch.Tensor, merge_tol: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Merge points that share a grid cell of side ``merge_tol`` into weighted points.

    Args:
        x: ``(M, D)`` points.
        weights: ``(M,)`` weights.
        merge_tol: cell side; ``0`` merges only exactly identical points (exact for GBMS).

    Returns:
        ``(points, merged_weights, index)``: ``(M', D)`` weighted cell means, ``(M',)`` summed
        weights and ``(M,)`` int64 with ``points[index[i]]`` the point that ``x[i]`` became.
        Each point moves by at most ``merge_tol * sqrt(D)``.

    Cost: O(M·D·log M) (a sort).
    """
    keys = x.double() if merge_tol == 0 else torch.round(x.double() / merge_tol)
    index, num = _unique_rows(keys)
    merged_weights = weights.new_zeros(num).index_add_(0, index, weights)
    sums = x.new_zeros(num, x.shape[1]).index_add_(0, index, x * weights[:, None])
    return sums / merged_weights[:, None], merged_weights, index


def _projection(keys: torch.Tensor) -> torch.Tensor:
    """A fixed random ``(D,)`` direction for the ``(M, D)`` keys (seed 0)."""
    gen = torch.Generator().manual_seed(0)
    return torch.randn(keys.shape[1], generator=gen, dtype=keys.dtype).to(keys.device)


def _unique_rows(keys: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``(M,)`` int64 ids in 0..U-1, equal exactly for equal rows of the ``(M, D)`` keys, and U.

    Sorts one random projection of the rows (a 1-D sort, several times faster than
    ``torch.unique(dim=0)``'s row sort) and checks that rows sharing a projection are equal;
    on a (vanishingly rare) coincidence it falls back to the row sort.
    """
    projected, index = torch.unique(keys @ _projection(keys), return_inverse=True)
    first = keys.new_zeros(len(projected), keys.shape[1])
    first[index] = keys  # one representative row per id
    if bool((first[index] == keys).all()):
        return index, len(projected)
    rows, index = torch.unique(keys, dim=0, return_inverse=True)
    return index, len(rows)


@dataclass(frozen=True)
class MergedMeanShift:
    """Result of :func:`merged_mean_shift`.

    Attributes:
        points: ``(M, D)`` distinct final points (modes once converged).
        weights: ``(M,)`` how many input points (their summed weights) each final point
            carries.
        density: ``(M,)`` weighted kernel density of each point at the last step.
        index: ``(N,)`` int64; ``points[index]`` are the final positions of the inputs.
        num_iters: loops actually run (<= the requested T; fewer after an early stop).
    """

    points: torch.Tensor
    weights: torch.Tensor
    density: torch.Tensor
    index: torch.Tensor
    num_iters: int


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
        up to rounding.

    Cost: sum over loops of O(M_t²·D) with M_t the distinct points at loop t (M_0 <= N).

    Example:
        >>> x = torch.nn.functional.normalize(torch.randn(500, 3), dim=1)
        >>> r = merged_mean_shift(x, bandwidth=0.3, num_iters=20)
        >>> r.points[r.index].shape
        torch.Size([500, 3])
    """
    x = check_tensor(x, "x")
    check_rank(x, (2,), "x", "(N, D)")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"x must have N >= 1 points of D >= 1 dims, got {tuple(x.shape)}")
    check_finite(x, "x")
    check_unit_rows(x, "x")
    check_positive(bandwidth, "bandwidth")
    check_non_negative_int(num_iters, "num_iters")
    for value, name in ((merge_tol, "merge_tol"), (stop_tol, "stop_tol")):
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value}")

    if weights is None:
        weights = x.new_ones(x.shape[0])
    weights = check_tensor(weights, "weights")
    if weights.shape != x.shape[:1] or not bool((weights > 0).all()):
        raise ValueError(
            f"weights must be ({x.shape[0]},) positive values like x's rows, got shape "
            f"{tuple(weights.shape)}"
        )
    points, weights, index = merge_coincident(x, weights.to(x.dtype), merge_tol)
    density = None
    done = 0
    while done < num_iters:
        moved, dens = weighted_gbms_step(points, weights, bandwidth)
        done += 1
        shift = float((moved - points).norm(dim=1).max())
        points, merged_weights, step_index = merge_coincident(moved, weights, merge_tol)
        # a merged point's density: the weight-averaged density of what it merged
        density = dens.new_zeros(points.shape[0]).index_add_(0, step_index, dens * weights)
        density = density / merged_weights
        weights, index = merged_weights, step_index[index]
        if shift <= stop_tol:
            break
    if density is None:
        density = weighted_gbms_step(points, weights, bandwidth)[1]
    return MergedMeanShift(points, weights, density, index, done)
