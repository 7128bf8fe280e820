"""Slow, obviously correct oracles for the fast ops (float64, explicit loops), and a peak
allocation probe."""

from __future__ import annotations

import torch


def gbms_step_reference(x: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """METHOD.md §3.1 column by column: q_j = 1/(sum_i G_ij), Y_j = sum_i G_ij q_j x_i."""
    out = torch.empty_like(x)
    for b in range(x.shape[0]):
        pts = x[b]
        for j in range(pts.shape[0]):
            g = torch.exp((pts @ pts[j] - 1.0) / bandwidth**2)
            y = (g[:, None] * pts).sum(0) / g.sum()
            out[b, j] = y / (y.norm() + 1e-5)
    return out


def pair_loss_reference(x, y, margin, pos_weight=1.0, neg_weight=1.0, kind="linear"):
    """Double loop over all ordered pixel pairs of one image ``x (N, D)``, ``y (N,)``."""
    y = y.tolist()
    counts = {k: y.count(k) for k in set(y)}
    big_k = len(counts)
    pos = neg = x.new_zeros(())
    for i in range(len(y)):
        for j in range(len(y)):
            w = 1.0 / (counts[y[i]] * counts[y[j]] * big_k**2)
            cos = x[i] @ x[j]
            s = (1 + cos) / 2
            if kind == "logistic":
                p = (cos + 1.1) / 2.2
                cost_pos, cost_neg = -torch.log(p), -torch.log(1 - p)
            else:
                power = 1 if kind == "linear" else 2
                cost_pos, cost_neg = (1 - s) ** power, torch.clamp(s - margin, min=0) ** power
            if y[i] == y[j]:
                pos = pos + w * cost_pos
            else:
                neg = neg + w * cost_neg
    return pos, neg, pos_weight * pos + neg_weight * neg


def random_sphere(*shape: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(*shape, generator=g, dtype=dtype)
    return z / z.norm(dim=-1, keepdim=True)


def clustered_sphere(num_clusters, per_cluster, dim, spread, seed=0, dtype=torch.float64):
    """``(1, K*n, D)`` points around K random centres and their ``(1, K*n)`` labels."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_clusters, dim, generator=g, dtype=dtype)
    centers = centers / centers.norm(dim=-1, keepdim=True)
    labels = torch.arange(num_clusters).repeat_interleave(per_cluster)
    pts = centers[labels] + spread * torch.randn(len(labels), dim, generator=g, dtype=dtype)
    return (pts / pts.norm(dim=-1, keepdim=True))[None], labels[None]


def peak_cpu_bytes(fn) -> int:
    """Peak of live CPU allocations made inside ``fn`` (torch.profiler memory events)."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=activities, profile_memory=True) as prof:
        fn()
    changes = sorted(
        (
            e.time_range.start,
            e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage,
        )
        for e in prof.events()
    )
    live = peak = 0
    for _, change in changes:
        live += change
        peak = max(peak, live)
    return peak
