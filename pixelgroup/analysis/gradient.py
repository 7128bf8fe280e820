"""The 1-D study of the gradient through recurrent mean shift (docs/studies.md).

Three Gaussian clusters of scalars (means 3, 4, 5; std 0.2, 0.3, 0.1) get class 1 below 3.5 and
class 2 above, so the middle cluster is class 2 except for its left tail. A fixed regressor
``ŷ = 0.5 x − 0.5`` maps the class targets 1 and 2 to the positions 3 and 5. The *points
themselves* are the parameters: each update back-propagates a squared regression error through
K loops of Euclidean Gaussian-blurring mean shift (GBMS, no sphere) into the points,

    L = Σ_{t ∈ sites} Σ_i (ŷ(x_i^{(t)}) − y_i)² / (N + 1),     x ← x − lr · N · ∂L/∂x,

with the loss sites ``t = 1..K`` (every loop output, weight 1 each, as in the original) or
``t = 0`` (the raw points: plain per-point regression) when K = 0. Because the K sites add up,
the effective step grows with K; the *control* (``through_gbms=False``) keeps the K sites but puts
them all on the raw points, which separates the effect of the grouping from that of the step.

Measured conclusion (see :class:`GradientStudyResult`): after the updates the points are
clustered without supervision (5 GBMS steps, δ = 0.2) and we count the modes and the points whose
mode the regressor maps to their own label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm import tqdm

from pixelgroup._checks import (
    check_int,
    check_non_negative_int,
    check_positive,
    check_rank,
    check_tensor,
)

__all__ = [
    "CLUSTER_MEANS",
    "CLUSTER_STDS",
    "CLASS_SPLIT",
    "GradientStudyResult",
    "make_mixture",
    "regressor",
    "euclidean_gbms",
    "supervised_updates",
    "find_modes",
    "run_gradient_study",
    "run_gradient_studies",
]

CLUSTER_MEANS = (3.0, 4.0, 5.0)
CLUSTER_STDS = (0.2, 0.3, 0.1)
CLASS_SPLIT = 3.5
WEIGHT, BIAS = 0.5, -0.5  # the fixed regressor: targets 1 and 2 sit at x = 3 and x = 5


def make_mixture(
    points_per_cluster: int = 1000,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The three-Gaussian data set and its labels.

    Returns:
        ``x`` ``(N,)`` with ``N = 3 * points_per_cluster`` (clusters in order 3, 4, 5) and
        ``labels`` ``(N,)`` of the same dtype: 1 where ``x < 3.5``, else 2.
    """
    points_per_cluster = check_int(points_per_cluster, "points_per_cluster", minimum=1)
    noise = torch.randn(3, points_per_cluster, generator=generator, dtype=dtype)
    means = torch.tensor(CLUSTER_MEANS, dtype=dtype)[:, None]
    stds = torch.tensor(CLUSTER_STDS, dtype=dtype)[:, None]
    x = (means + stds * noise).reshape(-1).to(device)
    return x, torch.where(x < CLASS_SPLIT, 1.0, 2.0).to(x.dtype)


def regressor(x: torch.Tensor) -> torch.Tensor:
    """The fixed regressor ``ŷ = 0.5 x − 0.5``; any shape in, same shape out."""
    return WEIGHT * x + BIAS


def euclidean_gbms(x: torch.Tensor, bandwidth: float, num_iters: int) -> torch.Tensor:
    """Euclidean 1-D Gaussian-blurring mean shift, all iterates (differentiable).

    Each step moves every point to ``Σ_j k_ij x_j / Σ_j k_ij`` with the Gaussian kernel
    ``k_ij = exp(−(x_i − x_j)² / (2 δ²))``; the moved points are the next step's data.
    Cost O(N²) time and memory per step.

    Args:
        x: ``(N,)`` points.
        bandwidth: δ > 0.
        num_iters: T >= 0 steps.

    Returns:
        ``(T + 1, N)``: row t is the data after t steps (row 0 is ``x``).
    """
    x = check_tensor(x, "x")
    check_rank(x, (1,), "x", "(N,)")
    check_positive(bandwidth, "bandwidth")
    check_non_negative_int(num_iters, "num_iters")
    iterates = [x]
    for _ in range(num_iters):
        diff = x[:, None] - x[None, :]
        kernel = torch.exp(-(diff * diff) / (2.0 * bandwidth**2))
        x = kernel @ x / kernel.sum(dim=1)
        iterates.append(x)
    return torch.stack(iterates)


def supervised_updates(
    x: torch.Tensor,
    labels: torch.Tensor,
    num_loops: int,
    *,
    bandwidth: float = 0.1,
    steps: int = 30,
    lr: float = 0.1,
    through_gbms: bool = True,
    progress: bool = False,
) -> torch.Tensor:
    """Gradient descent on the points through ``num_loops`` GBMS loops (module docstring).

    Args:
        x: ``(N,)`` initial points.
        labels: ``(N,)`` class targets (1 or 2), same dtype as ``x``.
        num_loops: K >= 0; K = 0 is plain per-point regression (no mean shift).
        bandwidth: δ of the loops (0.1 in the original).
        steps: number of updates S.
        lr: step size; the update is ``x − lr · N · ∂L/∂x``.
        through_gbms: False runs the control: K loss sites on the raw points, no mean shift.

    Returns:
        ``(S + 1, N)`` trajectory: row s is the points after s updates.
    """
    check_non_negative_int(num_loops, "num_loops")
    check_non_negative_int(steps, "steps")
    check_positive(lr, "lr")
    if labels.shape != x.shape:
        raise ValueError(f"labels must have shape {tuple(x.shape)}, got {tuple(labels.shape)}")
    n = x.shape[0]
    trajectory = [x.detach()]
    current = x.detach()
    for _ in tqdm(range(steps), desc=f"updates K={num_loops}", disable=not progress, leave=False):
        current = current.clone().requires_grad_(True)
        if through_gbms and num_loops > 0:
            sites = euclidean_gbms(current, bandwidth, num_loops)[1:]
        else:
            sites = current.expand(max(num_loops, 1), n)
        loss = ((regressor(sites) - labels) ** 2).sum() / (n + 1)
        (grad,) = torch.autograd.grad(loss, current)
        current = (current - lr * n * grad).detach()
        trajectory.append(current)
    return torch.stack(trajectory)


def find_modes(clustered: torch.Tensor, tol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Group clustered 1-D values: sorted neighbours closer than ``tol`` share a mode.

    Args:
        clustered: ``(N,)`` values after mean shift.
        tol: largest gap inside one mode.

    Returns:
        ``modes`` ``(M,)`` (mean value of each group, ascending) and ``assignment`` ``(N,)``
        (index into ``modes`` of each point).
    """
    order = torch.argsort(clustered)
    starts = torch.cat([clustered.new_zeros(1, dtype=torch.bool), clustered[order].diff() > tol])
    group_sorted = torch.cumsum(starts.long(), 0)
    assignment = torch.empty_like(group_sorted)
    assignment[order] = group_sorted
    num = int(group_sorted[-1]) + 1
    sums = clustered.new_zeros(num).index_add_(0, assignment, clustered)
    counts = clustered.new_zeros(num).index_add_(0, assignment, torch.ones_like(clustered))
    return sums / counts, assignment


@dataclass(frozen=True)
class GradientStudyResult:
    """One run of the study for one K (tensors on the CPU).

    Attributes:
        num_loops: K (0 = no mean shift in the loop).
        labels: ``(N,)`` class targets.
        trajectory: ``(S + 1, N)`` points over the supervised updates.
        clustered: ``(N,)`` final points after unsupervised GBMS (``cluster_iters`` steps of
            bandwidth ``cluster_bandwidth``).
        modes: ``(M,)`` the distinct values of ``clustered`` (gaps > ``cluster_bandwidth / 4``
            separate modes). ``num_modes = M``.
        correct_fraction: fraction of points whose mode m has the right label, i.e. the class
            nearest to ``ŷ(m)`` (1 if ``ŷ(m) < 1.5`` else 2) equals the point's label.
        on_target_fraction: fraction of points whose mode m lands on their label,
            ``|ŷ(m) − y_i| <= target_tol`` (0.025 by default: the mode within 0.05 of the class
            position 3 or 5).
        group_std: std of the final positions of the middle cluster's class-2 points (does the
            group move as a whole, keeping its shape, or collapse point by point?).
        settled_shift: mean ``|x_final − x_initial|`` over the cluster at 5, which is already
            right (does the gradient leave it alone?).
    """

    num_loops: int
    through_gbms: bool
    labels: torch.Tensor
    trajectory: torch.Tensor
    clustered: torch.Tensor
    modes: torch.Tensor
    correct_fraction: float
    on_target_fraction: float
    group_std: float
    settled_shift: float

    @property
    def num_modes(self) -> int:
        return int(self.modes.numel())


def run_gradient_study(
    num_loops: int,
    *,
    points_per_cluster: int = 1000,
    bandwidth: float = 0.1,
    steps: int = 30,
    lr: float = 0.1,
    cluster_bandwidth: float = 0.2,
    cluster_iters: int = 5,
    target_tol: float = 0.025,
    seed: int = 0,
    through_gbms: bool = True,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> GradientStudyResult:
    """Run the study for one K: data (seeded), supervised updates, clustering, measures.

    Cost: ``steps · K`` GBMS steps on N = 3 · ``points_per_cluster`` points, each O(N²).
    """
    check_positive(cluster_bandwidth, "cluster_bandwidth")
    check_positive(target_tol, "target_tol")
    generator = torch.Generator().manual_seed(seed)
    x, labels = make_mixture(points_per_cluster, generator=generator, dtype=dtype, device=device)
    trajectory = supervised_updates(
        x,
        labels,
        num_loops,
        bandwidth=bandwidth,
        steps=steps,
        lr=lr,
        through_gbms=through_gbms,
        progress=progress,
    )
    n = points_per_cluster
    final = trajectory[-1]
    with torch.no_grad():
        clustered = euclidean_gbms(final, cluster_bandwidth, cluster_iters)[-1]
        modes, assignment = find_modes(clustered, cluster_bandwidth / 4)
        predicted = regressor(modes)[assignment]
        mode_class = torch.where(predicted < 1.5, 1.0, 2.0).to(labels.dtype)
        correct = float((mode_class == labels).double().mean())
        on_target = float(((predicted - labels).abs() <= target_tol).double().mean())
        middle = final[n : 2 * n][labels[n : 2 * n] == 2]
        group_std = float(middle.std()) if middle.numel() > 1 else 0.0
        settled_shift = float((final[2 * n :] - x[2 * n :]).abs().mean())
    return GradientStudyResult(
        num_loops=num_loops,
        through_gbms=through_gbms,
        labels=labels.cpu(),
        trajectory=trajectory.cpu(),
        clustered=clustered.cpu(),
        modes=modes.cpu(),
        correct_fraction=correct,
        on_target_fraction=on_target,
        group_std=group_std,
        settled_shift=settled_shift,
    )


def run_gradient_studies(
    runs: Sequence[tuple[int, bool]],
    *,
    points_per_cluster: int = 1000,
    bandwidth: float = 0.1,
    steps: int = 30,
    lr: float = 0.1,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> dict[tuple[int, bool], GradientStudyResult]:
    """:func:`run_gradient_study` for each ``(K, through_gbms)`` of ``runs``, every argument
    checked before the first study (a bad K is an error at once, not after the others).

    Cost: the sum of the studies'.
    """
    for k, _ in runs:
        check_non_negative_int(k, "num_loops")
    check_int(points_per_cluster, "points_per_cluster", minimum=1)
    check_positive(bandwidth, "bandwidth")
    check_non_negative_int(steps, "steps")
    check_positive(lr, "lr")
    return {
        (k, through): run_gradient_study(
            k,
            points_per_cluster=points_per_cluster,
            bandwidth=bandwidth,
            steps=steps,
            lr=lr,
            seed=seed,
            through_gbms=through,
            device=device,
            progress=progress,
        )
        for k, through in tqdm(runs, desc="gradient study", disable=not progress)
    }
