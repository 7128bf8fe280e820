"""How many groups an embedding of dimension D can separate with margin α (docs/studies.md).

Different groups must have calibrated similarity ``s = (1 + cos) / 2 <= α``, i.e. pairwise
cosine ``<= t = 2α − 1``. The largest number of unit vectors in R^D with pairwise cosine <= t
is a spherical-code problem:

* ``t < 0`` (α < 0.5): exactly ``min(D + 1, floor(1 − 1/t))``. ``||Σ x_i||² >= 0`` gives a mean
  pairwise cosine ``>= −1/(n − 1)``, so ``n <= 1 − 1/t`` in any dimension; more than D + 1 vectors
  cannot all be pairwise negative; the regular simplex (cosine ``−1/(n − 1)``) reaches both.
  Equivalently the smallest feasible margin for n groups is ``(n − 2) / (2 (n − 1))``.
* ``t = 0`` (α = 0.5): exactly 2D (the vectors ``±e_k``).
* ``t > 0`` (α > 0.5): exact only for D = 2 (``floor(2π / arccos t)`` points on a circle) and a
  few Tammes cases; in general we give upper bounds and the constructive lower bound 2D:

  - the linear-programming bound with the degree-2 polynomial ``(x + 1)(x − t)``
    (Delsarte, Goethals & Seidel 1977; it is Levenshtein's bound L_2, Levenshtein 1979):
    ``n <= 2D (1 − t) / (1 − D t)`` for ``0 <= t < 1/D``;
  - the cap-packing (volume) bound: caps of angular radius ``θ/2`` (``θ = arccos t``) around
    the points are disjoint, so ``n <= 1 / σ(θ/2)`` with ``σ(φ) = ½ I_{sin²φ}((D−1)/2, ½)``
    the fraction of the sphere a cap covers.

  Asymptotically the count grows exponentially in D (Kabatiansky & Levenshtein 1978 bound the
  rate from above); those asymptotic bounds are not evaluated here.

The empirical answer comes from :func:`pack_sphere`, a projected-gradient minimisation of a
soft maximum of the pairwise cosines with several restarts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from scipy.special import betainc
from tqdm import tqdm

from pixelgroup._checks import check_count, check_int, check_positive, check_real
from pixelgroup.errors import InputError
from pixelgroup.ops import normalize_to_sphere

__all__ = [
    "margin_to_cosine",
    "min_feasible_margin",
    "exact_max_groups",
    "lp_upper_bound",
    "cap_packing_upper_bound",
    "upper_bound",
    "PackingResult",
    "pack_sphere",
    "empirical_max_groups",
    "CapacityRow",
    "capacity_row",
    "capacity_table",
    "kernel_weight_at_margin",
]

_EPS = 1e-9  # float slack so that e.g. α = 0.25 (t = −0.5) admits exactly 3 groups


def _check_dim(dim: int) -> int:
    dim = check_int(dim, "dim")
    if dim < 1:
        raise InputError(f"dim (embedding dimension D) must be >= 1, got {dim}")
    return dim


def _check_groups(groups: int) -> int:
    groups = check_int(groups, "groups")
    if groups < 2:
        raise InputError(f"groups (number of groups n) must be >= 2, got {groups}")
    return groups


def margin_to_cosine(margin: float) -> float:
    """Calibrated margin α in [0, 1] → largest allowed cosine ``t = 2α − 1`` in [−1, 1]."""
    margin = check_real(margin, "margin")
    if not 0.0 <= margin <= 1.0:
        raise InputError(f"margin (calibrated α) must be in [0, 1], got {margin}")
    return 2.0 * float(margin) - 1.0


def min_feasible_margin(groups: int, dim: int | None = None) -> float:
    """Smallest α with which ``groups`` groups can all be pairwise separated.

    ``(n − 2) / (2 (n − 1))`` from the mean-cosine bound, reached by the regular simplex when
    ``n <= D + 1`` (or for any n when ``dim`` is None, i.e. D large enough). For
    ``D + 1 < n <= 2D`` the answer is exactly 0.5. For ``n > 2D`` it is above 0.5 and unknown in
    closed form: ``math.nan`` (use :func:`pack_sphere`).
    """
    n = _check_groups(groups)
    if dim is None or n <= _check_dim(dim) + 1:
        return (n - 2) / (2 * (n - 1))
    return 0.5 if n <= 2 * dim else math.nan


def exact_max_groups(dim: int, margin: float) -> int | None:
    """Largest number of groups separable in R^D with margin α where known exactly, else None.

    Exact for α < 0.5, α = 0.5 and D = 1, 2 (any α < 1); α = 1 puts no constraint (None).
    """
    dim = _check_dim(dim)
    t = margin_to_cosine(margin)
    if t < 0:
        return min(dim + 1, math.floor(1.0 - 1.0 / t + _EPS))
    if t == 0:
        return 2 * dim
    if t >= 1:
        return None
    if dim == 1:
        return 2
    if dim == 2:
        return math.floor(2 * math.pi / math.acos(t) + _EPS)
    return None


def lp_upper_bound(dim: int, margin: float) -> float:
    """Degree-2 LP (Levenshtein L_2) bound ``2D (1 − t)/(1 − D t)`` for ``0 <= t < 1/D``.

    inf outside that range (the bound does not apply there).
    """
    dim = _check_dim(dim)
    t = margin_to_cosine(margin)
    if 0 <= t < 1.0 / dim:
        return 2 * dim * (1 - t) / (1 - dim * t)
    return math.inf


def cap_packing_upper_bound(dim: int, margin: float) -> float:
    """Volume bound ``1 / σ(θ/2)``, ``θ = arccos t``; inf when t = 1 or D = 1."""
    dim = _check_dim(dim)
    t = margin_to_cosine(margin)
    if t >= 1 or dim == 1:
        return math.inf
    half = 0.5 * math.acos(t)  # <= π/2, where the formula below holds
    return 1.0 / (0.5 * float(betainc((dim - 1) / 2, 0.5, math.sin(half) ** 2)))


def upper_bound(dim: int, margin: float) -> float:
    """Best upper bound on the number of groups: the exact value where known, else the min bound."""
    exact = exact_max_groups(dim, margin)
    if exact is not None:
        return float(exact)
    return min(lp_upper_bound(dim, margin), cap_packing_upper_bound(dim, margin))


@dataclass(frozen=True)
class PackingResult:
    """The best of several packings of n points on the sphere in R^D.

    Attributes:
        points: ``(n, D)`` unit vectors.
        max_cosine: largest pairwise cosine t (achieved calibrated margin ``(1 + t)/2``).
        min_angle_deg: smallest pairwise angle ``arccos t`` in degrees.
    """

    points: torch.Tensor
    max_cosine: float

    @property
    def min_angle_deg(self) -> float:
        return math.degrees(math.acos(max(-1.0, min(1.0, self.max_cosine))))

    @property
    def margin(self) -> float:
        return (1.0 + self.max_cosine) / 2.0


def pack_sphere(
    groups: int,
    dim: int,
    *,
    restarts: int = 4,
    steps: int = 400,
    lr: float = 0.02,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> PackingResult:
    """Spread ``groups`` unit vectors in R^D so that their largest pairwise cosine is small.

    Minimises the soft maximum ``logsumexp(β c_ij) / β`` over pairs i < j with Adam on raw
    vectors re-projected by :func:`normalize_to_sphere` after every step, β annealed geometrically
    from 10 to 1000 (smooth early, close to the true max late) and the step size cosine-annealed
    to 0; ``restarts`` random starts run as one batch and
    the best is kept. Cost O(restarts · steps · n² · D).

    Returns:
        :class:`PackingResult` with ``points`` ``(n, D)``.
    """
    n, dim = _check_groups(groups), _check_dim(dim)
    restarts, steps = check_count(restarts, "restarts"), check_count(steps, "steps")
    check_positive(lr, "lr")
    z = torch.randn(restarts, n, dim, generator=generator, dtype=dtype).to(device)
    z.requires_grad_(True)
    pairs = torch.triu_indices(n, n, offset=1, device=z.device)
    optimizer = torch.optim.Adam([z], lr=lr)

    def pair_cosines(raw: torch.Tensor) -> torch.Tensor:
        x = normalize_to_sphere(raw, dim=-1, eps=0.0)
        return (x @ x.transpose(1, 2))[:, pairs[0], pairs[1]]  # (restarts, n(n-1)/2)

    for step in range(steps):
        progress = step / max(steps - 1, 1)
        beta = 10.0 * 100.0**progress
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * progress))
        loss = (torch.logsumexp(beta * pair_cosines(z), dim=1) / beta).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():  # the projection of projected gradient: keeps Adam's scale fixed
            z.copy_(normalize_to_sphere(z, dim=-1, eps=0.0))
    with torch.no_grad():
        worst = pair_cosines(z).max(dim=1).values
        best = int(worst.argmin())
        points = normalize_to_sphere(z[best], dim=-1, eps=0.0)
    return PackingResult(points=points.detach(), max_cosine=float(worst[best]))


def empirical_max_groups(
    dim: int,
    margin: float,
    *,
    max_groups: int = 256,
    tol: float = 1e-3,
    restarts: int = 4,
    steps: int = 400,
    generator: torch.Generator | None = None,
) -> tuple[int, PackingResult]:
    """Largest n <= ``max_groups`` that :func:`pack_sphere` separates with margin α (+ ``tol``).

    Doubles n from 2 until a packing fails (or n passes ``max_groups`` or the upper bound), then
    bisects. Every accepted n is witnessed by a packing, so the answer is a lower bound on the
    true maximum (the optimiser can miss a packing, never invent one). O(log n) packings.

    Returns:
        ``(n, packing)``: the count and the packing that achieved it (``n = 1`` and the best
        2-point packing when even two groups fail, i.e. α < 0 + ``tol`` is impossible).
    """
    dim = _check_dim(dim)
    t = margin_to_cosine(margin)
    cap = int(min(check_count(max_groups, "max_groups"), upper_bound(dim, margin) + _EPS))

    def attempt(n: int) -> PackingResult:
        return pack_sphere(n, dim, restarts=restarts, steps=steps, generator=generator)

    first = attempt(2)
    if first.max_cosine > t + tol:
        return 1, first
    good, best, bad = 2, first, None
    while bad is None and good < cap:
        n = min(2 * good, cap)
        packing = attempt(n)
        if packing.max_cosine <= t + tol:
            good, best = n, packing
        else:
            bad = n
    while bad is not None and bad - good > 1:
        n = (good + bad) // 2
        packing = attempt(n)
        if packing.max_cosine <= t + tol:
            good, best = n, packing
        else:
            bad = n
    return good, best


@dataclass(frozen=True)
class CapacityRow:
    """Everything known here about (D, α): one row of the capacity table.

    Attributes:
        dim, margin: D and α; ``cosine = 2α − 1``.
        exact: the exact maximum number of groups, or None when unknown.
        upper: best upper bound (== exact when known; inf when none applies).
        empirical: largest n packed by :func:`empirical_max_groups` (a lower bound; equal to
            ``max_groups`` when the search was capped).
        min_angle_deg: smallest pairwise angle of that packing.
    """

    dim: int
    margin: float
    exact: int | None
    upper: float
    empirical: int
    min_angle_deg: float

    @property
    def cosine(self) -> float:
        return 2.0 * self.margin - 1.0


def capacity_row(
    dim: int,
    margin: float,
    *,
    max_groups: int = 256,
    restarts: int = 4,
    steps: int = 400,
    generator: torch.Generator | None = None,
) -> CapacityRow:
    """Exact answer, upper bound and empirical packing for one (D, α)."""
    n, packing = empirical_max_groups(
        dim, margin, max_groups=max_groups, restarts=restarts, steps=steps, generator=generator
    )
    return CapacityRow(
        dim=dim,
        margin=float(margin),
        exact=exact_max_groups(dim, margin),
        upper=upper_bound(dim, margin),
        empirical=n,
        min_angle_deg=packing.min_angle_deg,
    )


def capacity_table(
    dims: Sequence[int],
    margins: Sequence[float],
    *,
    max_groups: int = 256,
    restarts: int = 4,
    steps: int = 400,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> list[CapacityRow]:
    """:func:`capacity_row` for every (D, α) of ``dims`` x ``margins``, every argument checked
    before the first packing. Cost: O(log n) packings per row."""
    for dim in dims:
        _check_dim(dim)
    for margin in margins:
        margin_to_cosine(margin)
    check_count(max_groups, "max_groups")
    check_count(restarts, "restarts")
    check_count(steps, "steps")
    combos = [(d, a) for d in dims for a in margins]
    return [
        capacity_row(
            d, a, max_groups=max_groups, restarts=restarts, steps=steps, generator=generator
        )
        for d, a in tqdm(combos, desc="packing", disable=not progress)
    ]


def kernel_weight_at_margin(margin: float, bandwidth: float) -> float:
    """GBMS kernel weight between two groups that sit exactly at the margin.

    ``exp((t − 1)/δ²) = exp(−2(1 − α)/δ²)`` with ``t = 2α − 1`` (the vMF kernel of
    :func:`pixelgroup.ops.gbms_step`); 1 is the weight of a point on itself.
    """
    t = margin_to_cosine(margin)
    return math.exp((t - 1.0) / check_positive(bandwidth, "bandwidth") ** 2)
