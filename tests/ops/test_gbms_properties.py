"""Property tests: every GBMS implementation, for every input the checks accept, is finite and
agrees with the float64 log-sum-exp reference within the per-dtype bound of
:func:`tests._reference.gbms_step_tolerance` (forward) and
:func:`tests._reference.gbms_grad_tolerance` (gradients, float64 and float32).

Inputs span bandwidth 1e-5 … 4, D 1 … 64, N 1 … 2000, B 1 … 3, the four float dtypes, rows
normalised in the input dtype (``normalize_to_sphere`` or an exact normalisation), clustered
or uniform points, and rows shortened by up to 100 % (zero rows included: the checks accept
every norm <= 1.01). Set ``PIXELGROUP_HYPOTHESIS_SCALE`` to run more examples.
"""

from __future__ import annotations

import math
import os

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pixelgroup.ops import gbms_step, normalize_to_sphere, recurrent_mean_shift
from pixelgroup.ops.tiled_gbms import tiled_blur
from pixelgroup.ops.weighted_mean_shift import merged_mean_shift, weighted_gbms_step
from tests._reference import (
    UNIT_ROUNDOFF,
    compute_dtype,
    gbms_blur_lse,
    gbms_grad_tolerance,
    gbms_logit_error,
    gbms_step_lse,
    gbms_step_tolerance,
)

DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]
IMPLS = ["tiled", "sdpa", "dense"]
_SCALE = float(os.environ.get("PIXELGROUP_HYPOTHESIS_SCALE", "1"))


def _settings(examples: int):
    return settings(
        max_examples=max(1, round(examples * _SCALE)),
        deadline=None,
        database=None,  # no .hypothesis/ folder in the checkout
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def make_points(
    batch: int,
    n: int,
    dim: int,
    dtype: torch.dtype,
    *,
    clusters: int,
    spread: float,
    exact: bool,
    shorten: float,
    seed: int,
) -> torch.Tensor:
    """``(B, N, D)`` rows normalised in ``dtype``: around ``clusters`` random centres with
    ``spread`` (0 clusters: uniform), by ``normalize_to_sphere`` (norm 1 − 1e-5) or an exact
    division, then a fraction ``shorten`` of the rows scaled by a factor in [0, 1] (a tenth of
    those to zero)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, n, dim, generator=g, dtype=torch.float64)
    if clusters:
        centers = torch.randn(batch, clusters, dim, generator=g, dtype=torch.float64)
        centers = centers / centers.norm(dim=-1, keepdim=True)
        pick = torch.randint(0, clusters, (batch, n), generator=g)
        z = torch.gather(centers, 1, pick[..., None].expand(batch, n, dim)) + spread * z
    z = z.to(dtype)
    if exact:
        x = z / z.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    else:
        x = normalize_to_sphere(z, dim=-1)
    if shorten:
        factor = torch.rand(batch, n, 1, generator=g, dtype=torch.float64)
        factor[torch.rand(batch, n, 1, generator=g) < 0.1] = 0.0
        keep = torch.rand(batch, n, 1, generator=g) >= shorten
        x = torch.where(keep, x, (x.double() * factor).to(dtype))
    return x


@st.composite
def point_sets(draw, dtypes=DTYPES, max_n: int = 2000, max_batch: int = 3):
    """``(x, bandwidth)`` over the ranges of the module docstring."""
    n = draw(st.one_of(st.integers(1, 40), st.integers(1, max_n)))
    x = make_points(
        draw(st.integers(1, max_batch)),
        n,
        draw(st.integers(1, 64)),
        draw(st.sampled_from(dtypes)),
        clusters=draw(st.sampled_from([0, 1, 2, 5])),
        spread=10 ** draw(st.floats(-5, -0.5)),
        exact=draw(st.booleans()),
        shorten=draw(st.sampled_from([0.0, 0.0, 0.3, 1.0])),
        seed=draw(st.integers(0, 2**16)),
    )
    bandwidth = 10 ** draw(st.floats(-5, math.log10(4)))
    return x, bandwidth


def _describe(x: torch.Tensor, bandwidth: float) -> str:
    norms = x.double().norm(dim=-1)
    return (
        f"dtype {x.dtype}, shape {tuple(x.shape)}, bandwidth {bandwidth:.3g}, "
        f"norms {float(norms.min()):.6g}..{float(norms.max()):.6g}"
    )


def _assert_within(got: torch.Tensor, x: torch.Tensor, bandwidth: float, what: str) -> None:
    expected = gbms_step_lse(x, bandwidth)
    bound, _ = gbms_step_tolerance(x, bandwidth, x.dtype)
    err = (got.double() - expected).norm(dim=-1)
    worst = int((err - 2 * bound).flatten().argmax())
    assert bool((err <= 2 * bound).all()), (
        f"{what}: row error {float(err.flatten()[worst]):.3g} > 2 x bound "
        f"{float(bound.flatten()[worst]):.3g} ({_describe(x, bandwidth)})"
    )


def _corner(dtype, bandwidth, *, n=50, exact=False, shorten=0.0):
    points = make_points(
        1, n, 3, dtype, clusters=0, spread=0.0, exact=exact, shorten=shorten, seed=11
    )
    return points, bandwidth


@_settings(20)
@given(point_sets(), st.sampled_from([16, 100, 512]))
# the corners of issue 14: points collapsed onto the mean (tiled, δ = 1e-4), NaN for half
# precision unit rows, exactly normalised float32 rows at a tiny δ, and shorter rows
@example(_corner(torch.float32, 1e-4), 512)
@example(_corner(torch.bfloat16, 0.005, n=200), 512)
@example(_corner(torch.float16, 0.002, n=200), 512)
@example(_corner(torch.float32, 3e-5, exact=True), 16)
@example(_corner(torch.float64, 0.01, shorten=0.3), 16)
def test_one_step_is_finite_and_within_the_bound(points, tile):
    x, bandwidth = points
    for impl in IMPLS:
        out = gbms_step(x, bandwidth, impl=impl)
        assert out.dtype == x.dtype and out.shape == x.shape
        assert bool(torch.isfinite(out).all()), f"{impl}: non-finite output"
        _assert_within(out, x, bandwidth, impl)
    blurred = tiled_blur(x, bandwidth, tile)
    assert bool(torch.isfinite(blurred).all()), f"tiled (tile {tile}): non-finite output"
    _assert_within(normalize_to_sphere(blurred, dim=-1), x, bandwidth, f"tiled (tile {tile})")


@_settings(15)
@given(point_sets(max_n=300), st.integers(0, 2**16))
def test_gradients_are_finite_and_within_the_bound(points, seed):
    x, bandwidth = points
    out_grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    ref_x = x.double().clone().requires_grad_()
    (expected,) = torch.autograd.grad((gbms_step_lse(ref_x, bandwidth) * out_grad).sum(), ref_x)
    precise = x.dtype in (torch.float64, torch.float32)
    tol = gbms_grad_tolerance(x, bandwidth, x.dtype, out_grad) if precise else None
    for impl in IMPLS:

        def loss(xi, impl=impl):
            out = gbms_step(xi, bandwidth, impl=impl)
            return (out * out_grad).sum(), [out]

        grad = _finite_gradient(loss, x, bandwidth, impl)
        if tol is not None:
            err = float((grad.double() - expected).abs().max())
            assert err <= tol, (
                f"{impl}: gradient error {err:.3g} > bound {tol:.3g} ({_describe(x, bandwidth)})"
            )


@_settings(10)
@given(point_sets(max_n=400), st.integers(1, 4))
def test_recurrent_iterates_stay_finite_on_the_sphere(points, num_iters):
    x, bandwidth = points
    weights = torch.randn((num_iters + 1, *x.shape), generator=torch.Generator().manual_seed(0))
    for impl in IMPLS:
        iterates = recurrent_mean_shift(x, bandwidth, num_iters, impl=impl)
        for it in iterates[1:]:
            assert bool(torch.isfinite(it).all()), f"{impl}: non-finite iterate"
            assert float(it.double().norm(dim=-1).max()) <= 1.0 + 4 * 2.0**-8

        def loss(xi, impl=impl):
            iterates = recurrent_mean_shift(xi, bandwidth, num_iters, impl=impl)
            value = sum((it * w).sum() for it, w in zip(iterates, weights, strict=True))
            return value, iterates[1:]

        _finite_gradient(loss, x, bandwidth, f"{impl} through {num_iters} loops")


def _finite_gradient(loss, x: torch.Tensor, bandwidth: float, what: str) -> torch.Tensor:
    """``∂loss/∂x`` for ``loss(x) -> (value, iterates)``, asserted finite. In half precision
    a gradient may overflow (inf, or NaN once an inf meets a zero) where the true one, or
    the one reaching an iterate, is beyond the dtype's range (κ-sized entries: a zero row at
    δ = 1e-4 has gradients of ~1e8; re-projecting a zero vector, 1e5). That is judged on the
    same loss at the float32 input, whose gradients must be finite."""
    xi = x.clone().requires_grad_()
    grad = torch.autograd.grad(loss(xi)[0], xi)[0]
    if bool(torch.isfinite(grad).all()):
        return grad
    where = _describe(x, bandwidth)
    assert x.dtype in (torch.float16, torch.bfloat16), f"{what}: non-finite gradient ({where})"
    wide = x.float().requires_grad_()
    value, iterates = loss(wide)
    for it in iterates:
        it.retain_grad()
    value.backward()
    grads = [wide.grad] + [it.grad for it in iterates if it.grad is not None]
    assert all(bool(torch.isfinite(g).all()) for g in grads), f"{what}: float32 not finite"
    largest = max(float(g.abs().max()) for g in grads)
    assert largest > torch.finfo(x.dtype).max / 8, (
        f"{what}: non-finite gradient where float32 has at most {largest:.3g} ({where})"
    )
    return grad


@_settings(20)
@given(point_sets(max_batch=1), st.sampled_from(["ones", "counts", "spread"]), st.integers(0, 99))
def test_weighted_step_is_finite_and_within_the_bound(points, kind, seed):
    """The weighted step of ``group_pixels``: moved points and log-densities."""
    x, bandwidth = points
    x = x[0]
    g = torch.Generator().manual_seed(seed)
    weights = {
        "ones": torch.ones(len(x)),
        "counts": torch.randint(1, 50, (len(x),), generator=g).float(),
        "spread": 10 ** (4 * torch.rand(len(x), generator=g) - 2),
    }[kind].to(compute_dtype(x.dtype))
    moved, log_density = weighted_gbms_step(x, weights, bandwidth)
    assert moved.dtype == x.dtype and moved.shape == x.shape
    assert bool(torch.isfinite(moved).all()), "moved: non-finite"
    log_w = weights.double().log()[None]
    expected = gbms_step_lse(x[None], bandwidth, log_w)[0]
    bound, _ = gbms_step_tolerance(x[None], bandwidth, x.dtype, log_w)
    err = (moved.double() - expected).norm(dim=-1)
    assert bool((err <= 2 * bound[0]).all()), (
        f"moved: error {float(err.max()):.3g} ({kind}, {_describe(x[None], bandwidth)})"
    )
    assert bool(torch.isfinite(log_density).all()), "log-density: non-finite"
    # log d_i = logsumexp_j(κ x_i·x_j + log w_j) − κ: the logit error, N summands' rounding
    # and the rounding of the subtraction of κ, all in the compute dtype
    _, _, ref_log_density = gbms_blur_lse(x[None], bandwidth, log_w)
    u_c = UNIT_ROUNDOFF[compute_dtype(x.dtype)]
    tol = 2 * (gbms_logit_error(x, bandwidth, x.dtype, log_w) + (len(x) + 8) * u_c)
    tol += 2 * u_c * (1 / bandwidth**2 + float(ref_log_density.abs().max()))
    dens_err = float((log_density.double() - ref_log_density[0]).abs().max())
    assert dens_err <= tol, (
        f"log-density: error {dens_err:.3g} > {tol:.3g} ({kind}, {_describe(x[None], bandwidth)})"
    )


@_settings(10)
@given(point_sets(dtypes=[torch.float64, torch.float32], max_batch=1, max_n=600))
def test_exact_merging_is_finite_and_matches_one_step(points):
    x, bandwidth = points
    out = merged_mean_shift(x[0], bandwidth, 1, merge_tol=0.0, stop_tol=0.0)
    moved = out.points[out.index]
    assert bool(torch.isfinite(moved).all())
    _assert_within(moved[None], x, bandwidth, "merged_mean_shift")
    assert bool(torch.isfinite(out.log_density).all())


@pytest.mark.parametrize("bandwidth", [1e-4, 0.03])
def test_larger_point_sets_agree_with_the_reference(bandwidth):
    """N = 2600 (six tile rows, a ragged last tile), clustered and shortened rows: at δ = 0.03
    the shortened rows are recomputed and the rest not, at 1e-4 every row is."""
    x = make_points(
        1, 2600, 3, torch.float32, clusters=3, spread=0.1, exact=False, shorten=0.2, seed=1
    )
    expected = gbms_step_lse(x, bandwidth)
    bound, _ = gbms_step_tolerance(x, bandwidth, x.dtype)
    for impl in IMPLS:
        out = gbms_step(x, bandwidth, impl=impl)
        assert bool(torch.isfinite(out).all()), impl
        err = (out.double() - expected).norm(dim=-1)
        assert bool((err <= 2 * bound).all()), f"{impl}: {float((err - 2 * bound).max()):.3g}"
