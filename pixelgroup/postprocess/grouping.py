"""Instances from one unit embedding: GBMS to near-convergence, then density-seeded grouping.

The original release withheld its extraction code (docs/method.md, "Inference"); this is our design:

1. **Shift.** Up to T GBMS loops (the training layer's update) on the pixels, merging
   coincident points into weighted points after every loop and stopping early once no point
   moves (:func:`pixelgroup.ops.weighted_mean_shift.merged_mean_shift`). Never holds an N x N
   matrix; late loops cost O(M²·D) with M distinct points left, M ≪ N. When more than
   ``max_points`` distinct points remain after merging coincident pixels, only a seeded
   uniform sample of ``max_points`` of them (each weighted by its pixel count) is shifted:
   those whose first pixel comes first in a fixed random order of the image's pixels, so
   that the sample depends on the pixels' positions, not on how many distinct points there
   are (a small change of the embedding, e.g. from tiles, leaves it nearly the same).
2. **Seed from density.** Visit the distinct points by decreasing kernel density; an
   unassigned point becomes a seed and takes every unassigned point whose cosine to it is at
   least ``threshold`` τ. O(M·K) for K groups.
3. **Vote** (only when sampled). Every point left out of the sample takes the group with
   the largest kernel mass ``sum_{s in group} w_s exp(x·x_s/δ²)`` over the sample's input
   embeddings (w_s: pixel counts), the kernel density classifier of the same kernel, in
   O(N·S·D) at worst; sampled points keep their own group. The sums are taken only for
   the points that cheap bounds leave undecided: the sample is split into caps around a
   few pivots (about K + S/64), and a point takes a group when the groups whose upper
   bound (Cauchy-Schwarz over each cap) reaches the mass its nearest pivot alone gives are
   that one group, in O(N·P·D) for P pivots; in a crowd nearly every point is decided so
   (:func:`_vote`). The result is the kernel vote's, up to rounding at exact ties. A
   point is *covered* when some sample
   point lies within cosine ``1 − 2δ²`` of it (an angle of about 2δ). The points no sample
   covers (in a crowd: the small objects the sample missed) do not vote: they go to the next
   **round**, steps 1–3 on a fresh sample of them alone, whose seeds join an earlier group
   when its mean embedding is within the same cosine (an object two rounds sampled stays one
   group), until every point is covered (at most 64 rounds; the last one's vote takes every
   point left). Each round shifts at least its sample, so a round never repeats. Points left
   with fewer than ``min_area`` pixels in all could only make groups that step 4 drops: they
   get no round of their own, each joins the group whose mean is nearest, as step 4 would
   (a few stray pixels, common, no longer cost a round of T loops).
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

Numerics: the loops are softmax attention and the vote a tiled kernel sum, each with each
row's largest logit subtracted (:mod:`pixelgroup.ops.weighted_mean_shift`), seeds are ordered
by log-density
(finite for every accepted input, where the density itself under- or overflows at small δ),
and everything runs in float32 (float64 for float64 input) with autocast off.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

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
from pixelgroup.ops.attention import no_autocast
from pixelgroup.ops.weighted_mean_shift import merge_coincident, merged_mean_shift

__all__ = ["InstanceGrouping", "group_pixels"]

_VOTE_TILE = 1 << 18  # logits of one tile of the vote: 1 MB in float32, cache-resident
_BOUND_TILE = 1 << 17  # the bounds' two tiles, 0.5 MB each in float32
_MAX_ROUNDS = 64  # rounds of sampling; the last one's vote takes every point left
_NORM_TOL = 1e-2  # check_unit_rows' default tolerance
_PIVOT_SPAN = 64  # sample points per pivot of a group in the vote's bounds


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


def _seed_groups(
    points: torch.Tensor, log_density: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Group ``(M, D)`` points: density-ordered seeds take unassigned points with cos >= τ.
    Returns the ``(M,)`` group of each point and the ``(K,)`` index of each group's seed."""
    group = torch.full((points.shape[0],), -1, dtype=torch.int64, device=points.device)
    order = torch.argsort(log_density, descending=True, stable=True)
    seeds: list[int] = []
    for seed in order.tolist():
        if group[seed] >= 0:
            continue
        take = (points @ points[seed] >= threshold) & (group < 0)
        take[seed] = True
        group[take] = len(seeds)
        seeds.append(seed)
    return group, torch.tensor(seeds, dtype=torch.int64, device=points.device)


def _kernel_vote(
    x: torch.Tensor,
    sample: torch.Tensor,
    weights: torch.Tensor,
    group: torch.Tensor,
    bandwidth: float,
    cover: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each of the ``(N, D)`` points takes the group of the ``(S, D)`` sample points (weights
    and groups ``(S,)``) with the largest kernel mass ``sum_s w_s exp(x·x_s/δ²)`` at it.

    Returns ``(N,)`` groups and ``(N,)`` bool *covered*: some sample point lies at a cosine of
    at least ``cover`` to the point. Row tiles of the ``N x S`` cosines (each row's largest
    subtracted before the exponential), summed per group by index: O(N·S·D) time, O(S·T + K·T)
    memory for tiles of T points, whatever the number K of groups."""
    kappa = 1.0 / bandwidth**2
    num = int(group.max()) + 1
    keys, log_w = kappa * sample, weights.log()[:, None]
    winner = torch.empty(len(x), dtype=torch.int64, device=x.device)
    covered = torch.empty(len(x), dtype=torch.bool, device=x.device)
    step = max(1, _VOTE_TILE // len(sample))
    for r0 in range(0, len(x), step):
        logits = keys @ x[r0 : r0 + step].T  # (S, T): the group sums below add whole rows
        best = logits.amax(dim=0)
        # floored at e^-80 (a normal float32): denormal results make exp ~10x slower
        mass = logits.sub_(best).clamp_min_(-80.0).add_(log_w).exp_()
        votes = mass.new_zeros(num, mass.shape[1]).index_add_(0, group, mass)
        winner[r0 : r0 + step] = votes.argmax(dim=0)
        covered[r0 : r0 + step] = best >= kappa * cover
    return winner, covered


def _pivots(
    sample: torch.Tensor, weights: torch.Tensor, group: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Caps over the ``(S, D)`` sample points (weights, groups ``(S,)``), P of them: every
    ``_PIVOT_SPAN``-th point of each group (in sample order) is a pivot, every point joins the
    nearest pivot of its group. Returns the ``(P,)`` index of each pivot in the sample, the
    ``(P,)`` radius of its cap (largest distance ``|x_s − pivot|`` of its points) and the
    ``(P,)`` log of its group's total weight. O(S·P·D)."""
    order = torch.argsort(group, stable=True)
    counts = torch.bincount(group)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=order.device) - starts[group[order]]
    pivot = torch.nonzero(rank % _PIVOT_SPAN == 0).squeeze(1)
    near = sample @ sample[pivot].T
    near.masked_fill_(group[:, None] != group[pivot][None, :], -torch.inf)
    cap = near.argmax(dim=1)
    dist = (sample - sample[pivot][cap]).norm(dim=1)
    radius = dist.new_zeros(len(pivot)).scatter_reduce_(0, cap, dist, "amax")
    group_weight = weights.new_zeros(len(counts)).index_add_(0, group, weights)
    return pivot, radius, group_weight.log()[group[pivot]]


def _vote(
    x: torch.Tensor,
    sample: torch.Tensor,
    weights: torch.Tensor,
    group: torch.Tensor,
    bandwidth: float,
    cover: float,
    *,
    every: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_kernel_vote`'s ``(N,)`` groups and covered flags, the kernel sums taken only
    for the points that bounds over a few caps of sample points (:func:`_pivots`) leave
    undecided; ``every=False``: the group of a point found not covered is left arbitrary
    (it votes in a later round).

    For a pivot p with cap radius r, every sample point s of its cap has ``x·x_s <= x·p +
    |x|·r`` (Cauchy-Schwarz), so a group's log mass is at most ``log W_k + κ max_p (x·p +
    |x|·r)`` over its caps (``W_k`` its total weight, κ = 1/δ²) and at least ``log w_p +
    κ x·p`` for each of its pivots. A point is decided when one group's lower bound beats
    every other group's upper bound, and covered (not covered) when a pivot lies within
    ``cover`` of it (no cap reaches ``cover``), each by a margin above the rounding of both
    computations; in a crowd most points are (one group dominates, far from the others).
    Cost O(N·P·D) for the P pivots (about K + S/64) plus :func:`_kernel_vote` on the
    undecided points."""
    pivot, radius, log_group_w = _pivots(sample, weights, group)
    if 2 * len(pivot) > len(sample) or len(pivot) >= 1 << 22:  # nothing to save
        return _kernel_vote(x, sample, weights, group, bandwidth, cover)
    kappa = 1.0 / bandwidth**2
    eps = torch.finfo(x.dtype).eps
    # bounds on the rounding of a dot product of D terms (norms <= 1.01) in either vote, and
    # of the kernel sums over S terms (log units)
    dot_error = kappa * 4 * (x.shape[1] + 2) * eps
    margin = 2 * dot_error + 4 * len(sample) * eps
    keys = kappa * sample[pivot]
    reach = kappa * radius[:, None]
    log_group_w = log_group_w[:, None]
    log_least_w = float(weights.min().log())
    pivot_group = group[pivot].to(x.dtype)[:, None]  # exact: K < 2^22
    span = float(pivot_group.max()) + 1  # > any group id: unreachable caps drop below 0
    decided = torch.empty(len(x), dtype=torch.bool, device=x.device)
    winner = torch.empty(len(x), dtype=x.dtype, device=x.device)
    covered = torch.empty(len(x), dtype=torch.bool, device=x.device)
    step = max(1, _BOUND_TILE // len(pivot))
    # (P, T) buffers, each op in place: a fresh MB-sized tensor per op costs page faults
    near = x.new_empty(len(pivot), step)
    top = x.new_empty(len(pivot), step)
    for r0 in range(0, len(x), step):
        rows = x[r0 : r0 + step]
        n, part = len(rows), slice(r0, r0 + len(rows))
        cos, bound = near[:, :n], top[:, :n]
        torch.mm(keys, rows.T, out=cos)  # κ x·p
        # >= κ x·x_s for every s in the cap of p
        torch.add(cos, reach, alpha=float(rows.norm(dim=1).max()), out=bound)
        outside = bound.amax(dim=0) < kappa * cover - dot_error
        best = cos.amax(dim=0)
        inside = best >= kappa * cover + dot_error
        # the nearest pivot alone gives its group at least this log mass, so the winner is
        # among the groups of the caps whose upper bound reaches it: sure when there is one
        low = best + (log_least_w - margin)
        reached = bound.add_(log_group_w).sub_(low).clamp_(max=0.0).sign_()  # 0 or -1
        high = torch.add(pivot_group, reached, alpha=span, out=cos).amax(dim=0)
        sure = torch.add(pivot_group, reached, alpha=-span, out=bound).amin(dim=0) == high
        winner[part] = high
        covered[part] = inside
        decided[part] = sure & (inside | outside) if every else sure & inside | outside
    winner = winner.long()
    rest = torch.nonzero(~decided).squeeze(1)
    if len(rest):
        winner[rest], covered[rest] = _kernel_vote(
            x[rest], sample, weights, group, bandwidth, cover
        )
    return winner, covered


def _join_groups(seeds: torch.Tensor, sums: torch.Tensor, cover: float) -> torch.Tensor:
    """``(G,)`` global id of each of a round's ``(G, D)`` seed points: the earlier group
    (``(K, D)`` sums of its points) whose mean is most similar to it when that cosine is at
    least ``cover``, else a new id K, K+1.. (so an object that two rounds sampled stays one
    group)."""
    ids = torch.arange(len(sums), len(sums) + len(seeds), device=seeds.device)
    if len(sums):
        best = _mean_cosines(seeds, sums).max(dim=1)
        joined = best.values >= cover
        ids[joined] = best.indices[joined]
        ids[~joined] = len(sums) + torch.arange(int((~joined).sum()), device=seeds.device)
    return ids


def _group_points(
    points: torch.Tensor,
    weights: torch.Tensor,
    priority: torch.Tensor | None,
    *,
    bandwidth: float,
    num_iters: int,
    threshold: float,
    merge_tol: float,
    stop_tol: float,
    max_points: int | None,
    min_area: int,
) -> tuple[torch.Tensor, int]:
    """``(M,)`` group of each distinct ``(M, D)`` point (weights ``(M,)``) and the most GBMS
    loops a round ran: rounds of shift (a sample of the points left: the ``max_points`` of
    smallest ``priority (M,)``, given whenever M > ``max_points``), seed and vote until the
    samples cover every point (see the module doc)."""
    group = torch.full((len(points),), -1, dtype=torch.int64, device=points.device)
    sums = points.new_zeros(0, points.shape[1])  # weighted sum of each group's points
    weighted = None  # the points times their weights, once a second round needs sums
    cover = max(1.0 - 2.0 * bandwidth**2, -1.0)
    left = torch.arange(len(points), device=points.device)
    done = 0
    for round_ in range(_MAX_ROUNDS):
        sample = _sample(left, priority, max_points)
        sample_points, sample_weights = points[sample], weights[sample]
        shifted = merged_mean_shift(
            sample_points,
            bandwidth,
            num_iters,
            weights=sample_weights,
            merge_tol=merge_tol,
            stop_tol=stop_tol,
        )
        done = max(done, shifted.num_iters)
        local, seeds = _seed_groups(shifted.points, shifted.log_density, threshold)
        ids = _join_groups(shifted.points[seeds], sums, cover)
        sample_group = local[shifted.index]
        group[sample] = ids[sample_group]
        left = left[group[left] < 0]  # the points this round did not shift
        if len(left):
            last = round_ == _MAX_ROUNDS - 1
            winner, covered = _vote(
                points[left],
                sample_points,
                sample_weights,
                sample_group,
                bandwidth,
                cover,
                every=last,
            )
            if last:
                covered[:] = True
            group[left[covered]] = ids[winner[covered]]
            left = left[~covered]
        if len(left) == 0:
            break
        if weighted is None:
            weighted = points * weights[:, None]
        num = max(len(sums), int(ids.max()) + 1)  # new groups' ids follow the earlier ones
        # the points not grouped yet land in row ``num``, dropped
        sums = points.new_zeros(num + 1, points.shape[1]).index_add_(
            0, torch.where(group < 0, num, group), weighted
        )[:num]
        if float(weights[left].sum()) < min_area:
            # too few pixels left for a group that min_area keeps: each point joins the
            # group whose mean is nearest, as the pixels of a tiny group would (step 4)
            group[left] = _mean_cosines(points[left], sums).argmax(dim=1)
            break
    return group, done


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
    group[small] = kept_ids[_mean_cosines(x[small], sums[kept_ids]).argmax(dim=1)]
    return group


def _mean_cosines(x: torch.Tensor, sums: torch.Tensor) -> torch.Tensor:
    """``(N, K)`` cosine of each of the ``(N, D)`` unit points to the mean of each group,
    given the ``(K, D)`` sums of the groups' points."""
    return x @ sums.T / sums.norm(dim=1).clamp_min(1e-12)


def _sample(left: torch.Tensor, priority: torch.Tensor | None, size: int | None) -> torch.Tensor:
    """The sorted ``(min(L, size),)`` points of ``left (L,)`` of smallest ``priority (M,)``
    (all of them when ``size`` is None)."""
    if size is None or len(left) <= size:
        return left
    if priority is None:
        raise ValueError("a sample of the points needs their priority")
    first = torch.topk(priority[left], size, largest=False, sorted=False).indices
    return left[first].sort().values


def _pixel_priority(size: int, pixels: torch.Tensor, pixel_index: torch.Tensor) -> torch.Tensor:
    """``(M,)`` priority of each distinct point, the sample's order: the rank, in a fixed
    random permutation of the ``size`` pixels of the image (seed 0), of the first of its
    pixels (``pixels (N,)``: each point's flat pixel, ``pixel_index (N,)``: its distinct
    point). A pixel's rank depends on its position alone, so a point keeps its priority when
    small changes of the embedding merge or split other points."""
    rank = torch.empty(size, dtype=torch.int64)
    rank[torch.randperm(size, generator=torch.Generator().manual_seed(0))] = torch.arange(size)
    num = int(pixel_index.max()) + 1
    first = torch.full((num,), size, dtype=torch.int64, device=pixels.device)
    first.scatter_reduce_(0, pixel_index, pixels, "amin")
    return rank.to(pixels.device)[first]


def _relabel_by_area(labels: torch.Tensor) -> torch.Tensor:
    """Consecutive labels 0..K-1 ordered by decreasing area (ties: smaller old id first)."""
    counts = torch.bincount(labels)
    ids = torch.nonzero(counts).squeeze(1)
    rank = torch.empty_like(counts)
    rank[ids[torch.argsort(counts[ids], descending=True, stable=True)]] = torch.arange(
        len(ids), device=ids.device
    )
    return rank[labels]


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
        bandwidth: δ of the GBMS loops; use the training value (0.1 by default, as the
            original's toy training).
        num_iters: T, the most GBMS loops (the original's toy scripts unroll 5 in training and
            visualisation, 20 in ``main001_addMeanShift4Eval.m``); stops earlier once converged.
        threshold: cosine τ in [-1, 1] for joining a seed; default ``1 - bandwidth**2``,
            at least -1 (see module doc).
        min_area: groups with fewer pixels are merged into the nearest kept group.
        semantic_mask: optional ``(H, W)`` bool foreground; background becomes label 0.
        merge_tol: grid cell for merging near-coincident points (0: exact merging only).
        stop_tol: early stop once no point moves further than this in a loop.
        max_points: shift at most this many distinct points per round (a uniform sample,
            seeded so results are reproducible) and let the rest vote, the points that no
            sample point covers in further rounds; ``None`` shifts every pixel at once.

    Returns:
        An :class:`InstanceGrouping` with ``labels (H, W)`` int64 in 0..K-1 and per-group
        ``scores (K,)``, ``centers (K, D)`` and ``areas (K,)``.

    Cost per round: O(Σ_t M_t²·D) for the loops (M_0 <= min(N, max_points) distinct
    pixels, shrinking as they collapse), O(N_r·P·D) for the vote of the N_r points left
    (P pivots, about K + S/64, S = max_points) plus O(N_u·S·D) for the N_u points its
    bounds leave undecided (few in a crowd); then O(N·K·D) for the grouping; memory O(N·D)
    plus 1 MB vote tiles. One round
    unless a sample misses whole groups (crowds of small objects: a few rounds).

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
    compute = torch.float64 if embedding.dtype == torch.float64 else torch.float32
    x = embedding.detach().to(compute).flatten(1).T.contiguous()  # (N, D)
    # finite unit rows have a finite largest norm <= 1.01: one pass checks both (NaN fails)
    unit = float(x.norm(dim=1).max()) <= 1.0 + _NORM_TOL
    if not unit:
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

    with torch.no_grad(), no_autocast(embedding.device):
        if not unit:
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
            priority = None  # the sample's order, needed only when there is one to draw
            if max_points is not None and len(distinct) > max_points:
                pixels = torch.arange(h * w, device=x.device)
                pixels = pixels if fg is None else pixels[fg]
                priority = _pixel_priority(h * w, pixels, pixel_index)
            group, done = _group_points(
                distinct,
                weights,
                priority,
                bandwidth=bandwidth,
                num_iters=num_iters,
                threshold=tau,
                merge_tol=merge_tol,
                stop_tol=stop_tol,
                max_points=max_points,
                min_area=min_area,
            )
            group = _absorb_small(group[pixel_index], pts, min_area)
            pixel_group = _relabel_by_area(group)
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
