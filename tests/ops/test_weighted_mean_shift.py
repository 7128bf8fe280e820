import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pixelgroup.ops.weighted_mean_shift as wms
from pixelgroup.ops import normalize_to_sphere, recurrent_mean_shift
from pixelgroup.ops.weighted_mean_shift import (
    merge_coincident,
    merged_mean_shift,
    weighted_gbms_step,
)
from tests._reference import (
    UNIT_ROUNDOFF,
    clustered_sphere,
    gbms_blur_lse,
    gbms_logit_error,
    gbms_step_lse,
    gbms_step_reference,
    gbms_step_tolerance,
    random_sphere,
)


def test_weighted_step_equals_step_on_repeated_points():
    """Weight w on a point acts exactly like w copies of it."""
    x = random_sphere(12, 4, seed=0)
    weights = torch.tensor([1, 3, 2, 1, 1, 4, 1, 1, 2, 1, 1, 5], dtype=torch.float64)
    repeated = x.repeat_interleave(weights.long(), dim=0)
    expected = gbms_step_reference(repeated[None], 0.4)[0]
    got, log_density = weighted_gbms_step(x, weights, 0.4)
    torch.testing.assert_close(got.repeat_interleave(weights.long(), dim=0), expected)
    kernel = torch.exp((x @ repeated.T - 1) / 0.4**2)
    torch.testing.assert_close(log_density, kernel.sum(1).log())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weighted_step_matches_dense_reference(dtype):
    """Fractional and large weights, a small bandwidth: moved points and densities."""
    x = random_sphere(60, 5, seed=1).to(dtype)
    weights = torch.rand(60, generator=torch.Generator().manual_seed(0), dtype=dtype) + 0.01
    weights[:3] = 1e4
    kernel = torch.exp((x @ x.T - 1) / 0.15**2) * weights
    mean = kernel @ x / kernel.sum(1, keepdim=True)
    expected = mean / (mean.norm(dim=1, keepdim=True) + 1e-5)  # gbms_step's re-projection
    moved, log_density = weighted_gbms_step(x, weights, 0.15)
    assert moved.dtype == log_density.dtype == dtype
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(moved, expected, rtol=tol, atol=tol)
    torch.testing.assert_close(log_density, kernel.sum(1).log(), rtol=0, atol=tol)


def test_exact_merging_reproduces_recurrent_mean_shift():
    base = random_sphere(30, 3, seed=2)
    x = base[torch.randint(0, 30, (200,), generator=torch.Generator().manual_seed(1))]
    out = merged_mean_shift(x, 0.3, 6, merge_tol=0.0, stop_tol=0.0)
    expected = recurrent_mean_shift(x[None], 0.3, 6, impl="dense")[-1][0]
    assert out.num_iters == 6 and out.points.shape[0] <= 30
    assert out.weights.sum() == 200
    torch.testing.assert_close(out.points[out.index], expected, rtol=0, atol=1e-12)


def test_tolerant_merging_stays_within_stated_bound():
    x, _ = clustered_sphere(3, 100, 3, spread=0.1, seed=3)
    x = x[0]
    exact = recurrent_mean_shift(x[None], 0.2, 10, impl="dense")[-1][0]
    out = merged_mean_shift(x, 0.2, 10, merge_tol=1e-3, stop_tol=0.0)
    assert out.points.shape[0] < 30  # collapsed onto a handful of weighted points
    assert (out.points[out.index] - exact).norm(dim=1).max() < 1e-2


def test_merge_coincident_groups_cells():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0004], [0.0, 1.0], [0.0004, 1.0]])
    pts, weights, index = merge_coincident(x, torch.tensor([1.0, 3.0, 1.0, 1.0]), 1e-3)
    assert pts.shape == (2, 2) and weights[index[0]] == 4.0 and weights[index[2]] == 2.0
    torch.testing.assert_close(pts[index[1]], torch.tensor([1.0, 0.0003]))
    assert index[0] == index[1] and index[2] == index[3] and index[0] != index[2]


@pytest.mark.parametrize("project", [True, False])
def test_merge_coincident_matches_row_unique(monkeypatch, project):
    """Same partition as ``torch.unique(dim=0)`` on the grid keys, also when every row's
    projection collides (the fallback path)."""
    x = torch.nn.functional.normalize(
        torch.randn(500, 3, generator=torch.Generator().manual_seed(0)), dim=1
    )
    x = torch.cat([x, x[:100], x[:50] + 1e-5])  # exact and near duplicates
    if not project:
        monkeypatch.setattr(wms, "_projection", lambda keys: keys.new_zeros(keys.shape[1]))
    _, weights, index = merge_coincident(x, torch.ones(len(x)), 1e-3)
    _, expected = torch.unique(torch.round(x.double() / 1e-3), dim=0, return_inverse=True)
    pairs = torch.unique(torch.stack([index, expected]), dim=1)
    assert pairs.shape[1] == len(index.unique()) == len(expected.unique())
    assert weights.sum() == len(x)


def _merge_reference(x, weights, merge_tol):
    """Slow merge: one Python dict of grid cells, each cell's weighted mean; cells numbered in
    the order of ``torch.unique`` of their keys' projections (as merge_coincident numbers
    them)."""
    keys = x.double() if merge_tol < 2.0**-60 else torch.round(x.double() / merge_tol)
    cells: dict[tuple, list[int]] = {}
    for i, row in enumerate(keys.tolist()):
        cells.setdefault(tuple(row), []).append(i)
    direction = wms._projection(keys)
    order = sorted(cells, key=lambda cell: float(torch.tensor(cell).double() @ direction))
    index = torch.empty(len(x), dtype=torch.int64)
    points, merged = [], []
    for k, cell in enumerate(order):
        rows = torch.tensor(cells[cell])
        index[rows] = k
        merged.append(weights[rows].sum())
        points.append((x[rows] * weights[rows, None]).sum(0) / merged[-1])
    return torch.stack(points), torch.stack(merged), index


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    rows=st.integers(1, 200),
    repeats=st.integers(0, 3),
    merge_tol=st.sampled_from([0.0, 1e-3, 0.3]),
    unit_weights=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_merge_coincident_matches_a_slow_reference(
    seed, rows, repeats, merge_tol, unit_weights, dtype
):
    """Property: cells, weights and weighted means as a dict of grid cells gives them, with
    exact duplicates (several copies), near duplicates and none at all (the permutation
    path)."""
    g = torch.Generator().manual_seed(seed)
    x = normalize_to_sphere(torch.randn(rows, 4, generator=g, dtype=dtype), dim=1)
    x = torch.cat([x] + [x[: rows // (k + 2)] for k in range(repeats)])
    x = x[torch.randperm(len(x), generator=g)]
    weights = (
        torch.ones(len(x), dtype=dtype)
        if unit_weights
        else torch.rand(len(x), generator=g, dtype=dtype) + 0.5
    )
    points, merged, index = merge_coincident(x, weights, merge_tol)
    ref_points, ref_merged, ref_index = _merge_reference(x, weights, merge_tol)
    assert torch.equal(index, ref_index)
    torch.testing.assert_close(merged, ref_merged)
    torch.testing.assert_close(points, ref_points)


def test_initial_weights_act_like_repeated_points():
    x = random_sphere(20, 3, seed=5)
    weights = torch.arange(1, 21, dtype=torch.float64) % 4 + 1
    weighted = merged_mean_shift(x, 0.3, 5, weights=weights, merge_tol=0.0, stop_tol=0.0)
    repeated = merged_mean_shift(
        x.repeat_interleave(weights.long(), dim=0), 0.3, 5, merge_tol=0.0, stop_tol=0.0
    )
    torch.testing.assert_close(
        weighted.points[weighted.index].repeat_interleave(weights.long(), dim=0),
        repeated.points[repeated.index],
    )
    with pytest.raises(ValueError, match="weights must be"):
        merged_mean_shift(x, 0.3, 5, weights=-weights)
    with pytest.raises(ValueError, match="weights must be"):
        merged_mean_shift(x, 0.3, 5, weights=weights[:3])


def test_early_stop_and_density():
    x, _ = clustered_sphere(2, 40, 4, spread=0.01, seed=4)
    out = merged_mean_shift(x[0], 0.2, 50)
    assert out.num_iters < 50 and out.points.shape[0] == 2
    assert sorted(out.weights.tolist()) == [40.0, 40.0]
    assert torch.allclose(out.density, out.weights.to(out.density.dtype), rtol=1e-3)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((torch.ones(1, 2, 3), 0.1, 2), {}, ValueError, r"\(N, D\)"),
        ((torch.ones(2, 3, dtype=torch.long), 0.1, 2), {}, TypeError, "floating"),
        ((3 * random_sphere(4, 3), 0.1, 2), {}, ValueError, "unit-norm"),
        ((random_sphere(4, 3), 0.0, 2), {}, ValueError, "bandwidth"),
        ((random_sphere(4, 3), 0.1, -1), {}, ValueError, "num_iters"),
        ((random_sphere(4, 3), 0.1, 2), {"merge_tol": -1.0}, ValueError, "merge_tol"),
        ((random_sphere(4, 3), 0.1, 2), {"stop_tol": -1.0}, ValueError, "stop_tol"),
    ],
)
def test_bad_input_names_the_problem(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        merged_mean_shift(*args, **kwargs)


@pytest.mark.parametrize("bandwidth", [1e-5, 1e-4, 3e-3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weighted_step_at_small_bandwidth_is_finite_and_exact(bandwidth, dtype):
    """Issue 14: the density sentinel (weight of the smallest point, logit 0) outweighed every
    point once κ(|x|² − 1) < log(ε): moved points became NaN or wrong (1 − s cancelled)."""
    x = normalize_to_sphere(random_sphere(40, 3, seed=3).to(dtype), dim=-1)  # norm 1 − 1e-5
    x[:5] *= 0.5  # shorter rows: their own logit is far below κ
    weights = torch.arange(1, 41, dtype=dtype)
    moved, log_density = weighted_gbms_step(x, weights, bandwidth)
    assert bool(torch.isfinite(moved).all()) and bool(torch.isfinite(log_density).all())
    log_w = weights.double().log()[None]
    expected = gbms_step_lse(x[None], bandwidth, log_w)[0]
    bound = gbms_step_tolerance(x[None], bandwidth, dtype, log_w)[0][0]
    assert bool(((moved.double() - expected).norm(dim=1) <= 2 * bound).all())
    ref_log_density = gbms_blur_lse(x[None], bandwidth, log_w)[2][0]
    u_c = UNIT_ROUNDOFF[dtype]
    tol = 2 * (gbms_logit_error(x, bandwidth, dtype, log_w) + 48 * u_c)
    tol += 2 * u_c * (1 / bandwidth**2 + float(ref_log_density.abs().max()))
    assert float((log_density.double() - ref_log_density).abs().max()) <= tol


def test_density_is_the_exponential_of_the_log_density():
    x, _ = clustered_sphere(2, 40, 4, spread=0.01, seed=4)
    out = merged_mean_shift(x[0], 0.2, 50)
    torch.testing.assert_close(out.density, out.log_density.exp())


def test_merged_mean_shift_accepts_numpy_scalars():
    x = random_sphere(30, 3, seed=6)
    expected = merged_mean_shift(x, 0.3, 4, merge_tol=1e-3, stop_tol=1e-4)
    got = merged_mean_shift(
        x, np.float32(0.3), np.int64(4), merge_tol=np.float64(1e-3), stop_tol=torch.tensor(1e-4)
    )
    assert got.num_iters == expected.num_iters
    torch.testing.assert_close(got.points[got.index], expected.points[expected.index])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"merge_tol": float("nan")}, ValueError, r"merge_tol must be finite, got nan"),
        ({"stop_tol": -1.0}, ValueError, r"stop_tol must be >= 0, got -1\.0"),
        ({"weights": torch.tensor([1.0, float("nan"), 1.0, 1.0])}, ValueError, "weights"),
        ({"weights": torch.ones(4, dtype=torch.long)}, TypeError, "weights must be a floating"),
        ({"num_iters": 2.0}, TypeError, r"num_iters must be an int, got float 2\.0"),
    ],
)
def test_more_bad_input_names_the_problem(kwargs, error, match):
    args = {"x": random_sphere(4, 3), "bandwidth": 0.1, "num_iters": 2} | kwargs
    with pytest.raises(error, match=match):
        merged_mean_shift(args.pop("x"), args.pop("bandwidth"), args.pop("num_iters"), **args)
