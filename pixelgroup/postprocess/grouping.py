"""Instances from one unit embedding: GBMS to near-convergence, then density-seeded grouping.

The original release withheld its extraction code (docs/method.md, "Inference"); this is our design:

1. **Shift.** Up to T GBMS loops (the training layer's update) on the pixels, merging
   coincident points into weighted points after every loop and stopping early once no point
   moves (:func:`pixelgroup.ops.weighted_mean_shift.merged_mean_shift`). Never holds an N x N
   matrix; late loops cost O(M²·D) with M distinct points left, M ≪ N. When more than
   ``max_points`` distinct points remain after merging coincident pixels, only a seeded
   uniform sample of ``max_points`` of them (each weighted by its pixel count) is shifted.
2. **Seed from density.** Visit the distinct points by decreasing kernel density; an
   unassigned point becomes a seed and takes every unassigned point whose cosine to it is at
   least ``threshold`` τ. O(M·K) for K groups.
3. **Vote** (only when sampled). Every point left out of the sample takes the group with
   the largest kernel mass ``sum_{s in group} w_s exp(x·x_s/δ²)`` over the sample's input
   embeddings (w_s: pixel counts): the kernel density classifier of the same kernel, one
   fused attention pass, O(N·S·(D + K)); sampled points keep their own group.
4. **Drop tiny groups.** A group of fewer than ``min_area`` pixels joins the kept group whose
   mean embedding is nearest in cosine (O(N·K·D)).
5. **Background** is an ordinary group (the loss treats it as one), or, given a
   ``semantic_mask`` of foreground pixels, everything outside it is label 0 and only the
   foreground is grouped.

Default τ = 1 − δ² (an angle of about √2·δ): GBMS collapses a group to well within δ of its
mode, while two modes that both survive are about 2δ or more apart (closer ones merge), so τ
sits between the two. With a margin α = 0.5 embedding, ``threshold=0.5`` (cosine ≥ 0, the
margin itself) is a looser, also valid choice. For δ >= √2 the default is −1 (a kernel wider
than the sphere: one group).

Numerics: the loops and the vote are softmax attention with each row's largest logit
subtracted (:mod:`pixelgroup.ops.weighted_mean_shift`), seeds are ordered by log-density
(finite for every accepted input, where the density itself under- or overflows at small δ),
and everything runs in float32 (float64 for float64 input) with autocast off.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pixelgroup._checks import (
    check_bandwidth,
    check_finite,
    check_finite_number,
    check_in_range,
    check_int,
    check_non_negative_int,
    check_rank,
    check_tensor,
    check_unit_rows,
)
from pixelgroup.ops.attention import fused_attention, no_autocast
from pixelgroup.ops.weighted_mean_shift import merge_coincident, merged_mean_shift

__all__ = ["InstanceGrouping", "group_pixels"]


@dataclass(frozen=True)
class InstanceGrouping:
    """Result of :func:`group_pixels` for one image with K groups.

    Attributes:
        labels: ``(H, W)`` int64 in 0..K-1. Without a semantic mask, groups are ordered by
            decreasing area (so the background of a mostly-empty image is usually 0).
        scores: ``(K,)`` float32 compactness in [0, 1]: mean calibrated similarity
            ``(1 + cos)/2`` of the group's input embeddings to its centre.
        centers: ``(K, D)`` unit mean input embedding of each group.
        areas: ``(K,)`` int64 pixel counts.
        background: the label of the background (0) when a semantic mask was given, else None.
        num_iters: GBMS loops actually run (an early stop can end before ``num_iters``).
    """

    labels: torch.Tensor
    scores: torch.Tensor
    centers: torch.Tensor
    areas: torch.Tensor
    background: int | None
    num_iters: int


def _check_mask(mask: object, shape: tuple[int, int], device: torch.device) -> torch.Tensor:
    mask = check_tensor(mask, "semantic_mask")
    if mask.dtype != torch.bool:
        raise TypeError(
            f"semantic_mask must be a bool tensor (True = foreground), got {mask.dtype}"
        )
    if tuple(mask.shape) != shape:
        raise ValueError(
            f"semantic_mask must have shape (H, W) = {shape} like the embedding, "
            f"got {tuple(mask.shape)}"
        )
    return mask.to(device)


def _seed_groups(points: torch.Tensor, log_density: torch.Tensor, threshold: float) -> torch.Tensor:
    """Group ``(M, D)`` points: density-ordered seeds take unassigned points with cos >= τ."""
    group = torch.full((points.shape[0],), -1, dtype=torch.int64, device=points.device)
    order = torch.argsort(log_density, descending=True, stable=True)
    k = 0
    for seed in order.tolist():
        if group[seed] >= 0:
            continue
        take = (points @ points[seed] >= threshold) & (group < 0)
        take[seed] = True
        group[take] = k
        k += 1
    return group


def _vote(
    x: torch.Tensor,
    sample: torch.Tensor,
    weights: torch.Tensor,
    group: torch.Tensor,
    bandwidth: float,
) -> torch.Tensor:
    """``(N,)`` group of each ``(N, D)`` point: the group of the ``(S, D)`` sample points
    (weights and groups ``(S,)``) with the largest kernel mass ``sum_s w_s exp(x·x_s/δ²)``
    at the point. One fused attention pass over one-hot values: no N x S matrix."""
    votes = F.one_hot(group).to(x.dtype)  # (S, K)
    mass = fused_attention(
        x, sample, votes, scale=1.0 / bandwidth**2, key_log_weights=weights.log()
    )
    return mass.argmax(dim=1)


def _absorb_small(group: torch.Tensor, x: torch.Tensor, min_area: int) -> torch.Tensor:
    """Move the ``(N,)`` pixels of groups smaller than ``min_area`` into the kept group whose
    mean ``(N, D)`` embedding is nearest in cosine."""
    num = int(group.max()) + 1
    area = torch.bincount(group, minlength=num)
    keep = area >= min_area
    if bool(keep.all()):
        return group
    if not bool(keep.any()):
        keep[int(torch.argmax(area))] = True
    sums = x.new_zeros(num, x.shape[1]).index_add_(0, group, x)
    kept_ids = torch.nonzero(keep).squeeze(1)
    small = ~keep[group]
    group = group.clone()
    group[small] = kept_ids[torch.argmax(x[small] @ sums[kept_ids].T, dim=1)]
    return group


def _uniform_sample(n: int, size: int | None, device: torch.device) -> torch.Tensor:
    """Sorted ``(min(n, size),)`` indices into n rows, drawn without replacement (seed 0)."""
    if size is None or n <= size:
        return torch.arange(n, device=device)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    return order[:size].sort().values.to(device)


def _relabel_by_area(labels: torch.Tensor) -> torch.Tensor:
    """Consecutive labels 0..K-1 ordered by decreasing area (ties: smaller old id first)."""
    ids, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    rank = torch.empty_like(ids)
    rank[torch.argsort(counts, descending=True, stable=True)] = torch.arange(
        len(ids), device=ids.device
    )
    return rank[inverse]


def group_pixels(
    embedding: torch.Tensor,
    *,
    bandwidth: float = 0.1,
    num_iters: int = 10,
    threshold: float | None = None,
    min_area: int = 16,
    semantic_mask: torch.Tensor | None = None,
    merge_tol: float = 1e-3,
    stop_tol: float = 1e-4,
    max_points: int | None = 1024,
) -> InstanceGrouping:
    """Group the pixels of one unit embedding into instances (no gradient).

    Args:
        embedding: ``(D, H, W)`` unit-norm embedding (e.g. one image of the model output).
        bandwidth: δ of the GBMS loops; use the training value (0.1 by default, 0.2 for the
            original's stored toy model).
        num_iters: T, the most GBMS loops (the original visualises 10–20); stops earlier once
            converged.
        threshold: cosine τ in [-1, 1] for joining a seed; default ``1 - bandwidth**2``,
            at least -1 (see module doc).
        min_area: groups with fewer pixels are merged into the nearest kept group.
        semantic_mask: optional ``(H, W)`` bool foreground; background becomes label 0.
        merge_tol: grid cell for merging near-coincident points (0: exact merging only).
        stop_tol: early stop once no point moves further than this in a loop.
        max_points: shift at most this many distinct points (a uniform sample, seeded so
            results are reproducible) and let the rest vote; ``None`` shifts every pixel.

    Returns:
        An :class:`InstanceGrouping` with ``labels (H, W)`` int64 in 0..K-1 and per-group
        ``scores (K,)``, ``centers (K, D)`` and ``areas (K,)``.

    Cost: O(Σ_t M_t²·D) for the loops (M_0 <= min(N, max_points) distinct pixels,
    shrinking as they collapse), O(N·S·(D + K)) for the vote when sampled and O(N·K·D) for
    the grouping; memory O(N·(D + K)).

    Example:
        >>> emb = torch.zeros(3, 8, 8); emb[0, :, :4] = 1; emb[1, :, 4:] = 1
        >>> group_pixels(emb, min_area=1).labels.unique().tolist()
        [0, 1]
    """
    embedding = check_tensor(embedding, "embedding")
    check_rank(embedding, (3,), "embedding", "(D, H, W)")
    if not embedding.is_floating_point():
        raise TypeError(f"embedding must be a floating-point tensor, got dtype {embedding.dtype}")
    d, h, w = embedding.shape
    if min(d, h, w) == 0:
        raise ValueError(f"embedding must have D, H, W >= 1, got {tuple(embedding.shape)}")
    check_finite(embedding, "embedding")
    bandwidth = check_bandwidth(bandwidth)
    num_iters = check_non_negative_int(num_iters, "num_iters")
    min_area = check_non_negative_int(min_area, "min_area")
    if max_points is not None:
        max_points = check_int(max_points, "max_points (or None)", minimum=1)
    merge_tol = check_finite_number(merge_tol, "merge_tol", minimum=0.0)
    if threshold is None:  # 1 − δ², and −1 (everything) once δ >= √2
        tau = max(1.0 - bandwidth**2, -1.0)
    else:
        tau = check_in_range(threshold, "threshold (a cosine)", -1.0, 1.0)

    compute = torch.float64 if embedding.dtype == torch.float64 else torch.float32
    with torch.no_grad(), no_autocast(embedding.device):
        x = embedding.detach().to(compute).flatten(1).T  # (N, D)
        check_unit_rows(x, "embedding", what="vectors along dim 0 (D) of (D, H, W)")
        fg = None if semantic_mask is None else _check_mask(semantic_mask, (h, w), x.device)
        fg = None if fg is None else fg.flatten()
        labels = torch.zeros(h * w, dtype=torch.int64, device=x.device)
        done = 0
        if fg is None or bool(fg.any()):
            pts = x if fg is None else x[fg]
            distinct, weights, pixel_index = merge_coincident(
                pts, pts.new_ones(len(pts)), merge_tol
            )
            sample = _uniform_sample(len(distinct), max_points, distinct.device)
            shifted = merged_mean_shift(
                distinct[sample],
                bandwidth,
                num_iters,
                weights=weights[sample],
                merge_tol=merge_tol,
                stop_tol=stop_tol,
            )
            group = _seed_groups(shifted.points, shifted.log_density, tau)[shifted.index]
            if len(sample) < len(distinct):  # the points left out of the sample vote
                rest = torch.ones(len(distinct), dtype=torch.bool, device=x.device)
                rest[sample] = False
                sampled, group = group, torch.empty_like(rest, dtype=torch.int64)
                group[sample] = sampled
                group[rest] = _vote(
                    distinct[rest], distinct[sample], weights[sample], sampled, bandwidth
                )
            group = _absorb_small(group[pixel_index], pts, min_area)
            pixel_group = _relabel_by_area(group)
            done = shifted.num_iters
            if fg is None:
                labels = pixel_group
            else:
                labels[fg] = pixel_group + int(not bool(fg.all()))
        background = None if fg is None or bool(fg.all()) else 0

        num = int(labels.max()) + 1
        areas = torch.bincount(labels, minlength=num)
        sums = x.new_zeros(num, d).index_add_(0, labels, x)
        centers = sums / sums.norm(dim=1, keepdim=True).clamp_min(1e-12)
        cos = (x * centers[labels]).sum(dim=1)
        # rows may be slightly longer than 1 (bfloat16 rounding): keep the score in [0, 1]
        mean_cos = (x.new_zeros(num).index_add_(0, labels, cos) / areas).clamp(-1.0, 1.0)
        scores = (0.5 * (1.0 + mean_cos)).float()
    return InstanceGrouping(
        labels=labels.reshape(h, w),
        scores=scores,
        centers=centers.to(embedding.dtype),
        areas=areas,
        background=background,
        num_iters=done,
    )
