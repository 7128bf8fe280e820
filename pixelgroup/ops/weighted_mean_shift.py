"""Inference-time GBMS on weighted points: merge coincident points so late loops cost O(M²·D).

After a few GBMS loops the points of one instance collapse onto (nearly) one location. A set
of ``w`` identical points acts on every other point exactly like one point of weight ``w``::

    y_i = sum_j w_j k_ij x_j / sum_j w_j k_ij          (weighted GBMS step, k as in gbms_step)

so merging identical points changes nothing (``merge_tol=0``). Merging points that fall in
the same grid cell of side ``merge_tol`` moves each point by at most ``merge_tol·sqrt(D)``
per merge (it is replaced by the weighted mean of its cell). With M distinct points left, a
loop costs O(M²·D) instead of O(N²·D). The kernel is evaluated in row tiles, so no N x N (or
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
from pixelgroup.ops.tiled_gbms import floored_exp_

__all__ = ["weighted_gbms_step", "merge_coincident", "merged_mean_shift", "MergedMeanShift"]

# Elements of one kernel tile (rows x M): 4M entries = 16 MB in float32.
_TILE_ELEMENTS = 1 << 22


def weighted_gbms_step(
    x: torch.Tensor, weights: torch.Tensor, bandwidth: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """One GBMS step on weighted points, tiled over rows (no M x M matrix).

    Args:
        x: ``(M, D)`` unit rows.
        weights: ``(M,)`` positive point weights (multiplicities).
        bandwidth: δ > 0.

    Returns:
        ``(x_new, density)``: ``(M, D)`` moved points re-projected onto the sphere (as in
        :func:`pixelgroup.ops.gbms_step`) and ``(M,)`` weighted kernel densities
        ``d_i = sum_j w_j k_ij`` at the input points.

    Cost: O(M²·D) time, O(M·D + tile) memory.
    """
    m, dim = x.shape
    rows = max(1, _TILE_ELEMENTS // m)
    kappa = 1.0 / bandwidth**2
    # left_i · right_j = κ(S_ij − 1) + log w_j, so one exp gives the weighted kernel w_j k_ij
    left = torch.cat([kappa * x, x.new_ones(m, 1)], dim=1)
    right = torch.cat([x, weights.log()[:, None] - kappa], dim=1)
    values = torch.cat([x, x.new_ones(m, 1)], dim=1)  # kernel @ values = [sum w k x, d]
    out = torch.empty_like(x)
    density = x.new_empty(m)
    for start in range(0, m, rows):
        kernel = floored_exp_(left[start : start + rows] @ right.T)
        acc = kernel @ values
        blurred = acc[:, :dim] / acc[:, dim:]
        out[start : start + rows] = blurred / (blurred.norm(dim=1, keepdim=True) + 1e-5)
        density[start : start + rows] = acc[:, dim]
    return out, density


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
    keys = x if merge_tol == 0 else torch.round(x / merge_tol).to(torch.int64)
    uniq, index = torch.unique(keys, dim=0, return_inverse=True)
    merged_weights = weights.new_zeros(uniq.shape[0]).index_add_(0, index, weights)
    if merge_tol == 0:
        return uniq, merged_weights, index
    sums = x.new_zeros(uniq.shape[0], x.shape[1]).index_add_(0, index, x * weights[:, None])
    return sums / merged_weights[:, None], merged_weights, index


@dataclass(frozen=True)
class MergedMeanShift:
    """Result of :func:`merged_mean_shift`.

    Attributes:
        points: ``(M, D)`` distinct final points (modes once converged).
        weights: ``(M,)`` how many input points each final point carries.
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
    merge_tol: float = 1e-3,
    stop_tol: float = 1e-4,
) -> MergedMeanShift:
    """Run up to T GBMS loops, merging coincident points after every loop.

    Args:
        x: ``(N, D)`` unit rows (one image).
        bandwidth: δ > 0.
        num_iters: T >= 0, the most loops to run.
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

    points, weights, index = merge_coincident(x, x.new_ones(x.shape[0]), merge_tol)
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
