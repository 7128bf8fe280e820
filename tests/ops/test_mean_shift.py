import numpy as np
import pytest
import scipy.io
import torch

from pixelgroup.ops import RecurrentMeanShift, gbms_step, normalize_to_sphere, recurrent_mean_shift
from tests._reference import (
    clustered_sphere,
    gbms_step_lse,
    gbms_step_reference,
    gbms_step_tolerance,
    random_sphere,
)

IMPLS = ["auto", "tiled", "sdpa", "dense"]


# The default fused path checks all 30 images; the other paths (equal to it to 1e-6 in the
# reference tests below) check every 10th image to keep the suite fast.
@pytest.mark.parametrize(("impl", "every"), [("sdpa", 1), ("tiled", 10), ("dense", 10)])
def test_matches_original_implementation(shared_data, impl, every):
    """Loop k -> k+1 of the original MATLAB code (δ = 0.2) on the toy images, all 4 steps."""
    mat = scipy.io.loadmat(shared_data / "toy-gbms" / "loops_bandwidth0.2.mat", squeeze_me=True)
    loops = [np.asarray(a, dtype=np.float64)[..., ::every] for a in mat["predInstanceMaskMat"]]
    assert len(loops) == 5 and loops[0].shape == (64, 64, 3, 30 // every)
    for k in range(4):
        x = torch.from_numpy(loops[k]).permute(3, 0, 1, 2).reshape(-1, 4096, 3)
        expected = torch.from_numpy(loops[k + 1]).permute(3, 0, 1, 2).reshape(-1, 4096, 3)
        got = gbms_step(x.float(), 0.2, impl=impl).double()
        assert (got - expected).abs().max() < 1e-4


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_reference(impl, seed):
    x = random_sphere(2, 40, 5, seed=seed)
    torch.testing.assert_close(gbms_step(x, 0.4, impl=impl), gbms_step_reference(x, 0.4))


@pytest.mark.parametrize("impl", IMPLS)
def test_gradcheck_through_three_loops(impl):
    x = random_sphere(1, 12, 3, seed=3).requires_grad_()
    weights = random_sphere(1, 12, 3, seed=4)

    def fn(x):
        iterates = recurrent_mean_shift(x, 0.5, 3, impl=impl)
        return sum((it * weights).sum() * (t + 1) for t, it in enumerate(iterates))

    assert torch.autograd.gradcheck(fn, (x,))


def test_gradient_flows_through_kernel_weights():
    """With values detached, the kernel-weight path alone still gives a non-zero gradient."""
    x = random_sphere(1, 10, 3, seed=5).requires_grad_()
    kernel = torch.exp((x @ x.transpose(1, 2) - 1) / 0.5**2)
    y = (kernel / kernel.sum(2, keepdim=True)) @ x.detach()
    (y * random_sphere(1, 10, 3, seed=6)).sum().backward()
    assert x.grad.abs().sum() > 1e-6
    x2 = x.detach().clone().requires_grad_()
    full = gbms_step(x2, 0.5, impl="dense")
    assert torch.autograd.grad(full.sum(), x2)[0].abs().sum() > 0


@pytest.mark.parametrize("impl", IMPLS)
def test_iterates_stay_on_sphere_and_keep_layout(impl, device):
    x = random_sphere(3, 50, 4, seed=1, dtype=torch.float32).to(device)
    iterates = recurrent_mean_shift(x, 0.2, 4, impl=impl)
    assert len(iterates) == 5 and iterates[0] is x
    for it in iterates:
        assert it.shape == x.shape and it.dtype == x.dtype and it.device == x.device
        torch.testing.assert_close(
            it.norm(dim=-1), torch.ones(3, 50, device=device), atol=1e-4, rtol=0
        )


@pytest.mark.parametrize("impl", IMPLS)
def test_permutation_equivariance(impl):
    x = random_sphere(1, 30, 3, seed=2)
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        gbms_step(x[:, perm], 0.3, impl=impl), gbms_step(x, 0.3, impl=impl)[:, perm]
    )


@pytest.mark.parametrize("impl", IMPLS)
def test_single_cluster_is_fixed_point(impl):
    point = random_sphere(1, 1, 6, seed=7)
    x = point.expand(1, 20, 6).contiguous()
    torch.testing.assert_close(gbms_step(x, 0.1, impl=impl), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("impl", IMPLS)
def test_far_clusters_stay_apart_and_contract(impl):
    x, labels = clustered_sphere(2, 25, 3, spread=0.05, seed=0)
    x[0, 25:] = -x[0, :25]  # antipodal copies: the clusters are as far apart as possible
    out = recurrent_mean_shift(x, 0.2, 10, impl=impl)[-1][0]
    cos = out @ out.T
    same = labels[0][:, None] == labels[0][None, :]
    assert cos[same].min() > 0.999
    assert cos[~same].max() < -0.9


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("impl", IMPLS)
def test_half_precision_is_finite_at_small_bandwidth(dtype, impl):
    x = random_sphere(1, 64, 4, seed=8, dtype=torch.float32)
    x[0, 32:] = -x[0, :32]  # opposite points: exponent reaches -200 at δ = 0.1
    out = gbms_step(x.to(dtype), 0.1, impl=impl)
    assert out.dtype == dtype and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), gbms_step(x, 0.1, impl="dense"), atol=2e-2, rtol=0)


def test_module_dense_map_layout_and_repr():
    layer = RecurrentMeanShift(bandwidth=0.3, num_iters=2)
    z = normalize_to_sphere(torch.randn(2, 3, 5, 7))
    iterates = layer(z)
    assert len(iterates) == 3 and all(it.shape == (2, 3, 5, 7) for it in iterates)
    points = z.flatten(2).transpose(1, 2)
    torch.testing.assert_close(iterates[2].flatten(2).transpose(1, 2), layer(points)[2])
    assert "bandwidth=0.3" in repr(layer) and "num_iters=2" in repr(layer)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: gbms_step(torch.zeros(4, 3), 0.1), ValueError, r"\(B, N, D\)"),
        (lambda: gbms_step(random_sphere(1, 4, 3), 0.0), ValueError, "bandwidth"),
        (lambda: gbms_step(random_sphere(1, 4, 3), -1.0), ValueError, "bandwidth"),
        (lambda: gbms_step([[1.0]], 0.1), TypeError, "torch.Tensor"),
        (lambda: gbms_step(torch.ones(1, 4, 3, dtype=torch.long), 0.1), TypeError, "floating"),
        (lambda: gbms_step(torch.full((1, 4, 3), float("nan")), 0.1), ValueError, "non-finite"),
        (lambda: gbms_step(3 * random_sphere(1, 4, 3), 0.1), ValueError, "unit-norm"),
        (lambda: gbms_step(random_sphere(1, 4, 3), 0.1, impl="magic"), ValueError, "impl"),
        (lambda: recurrent_mean_shift(random_sphere(1, 4, 3), 0.1, -1), ValueError, "num_iters"),
        (lambda: RecurrentMeanShift(0.1, -2), ValueError, "num_iters"),
        (lambda: RecurrentMeanShift(0.1, 2)(torch.zeros(3, 4)), ValueError, r"\(B, D, H, W\)"),
    ],
)
def test_bad_input_names_the_problem(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_small_bandwidth_moves_isolated_points_by_almost_nothing():
    """Issue 14: at δ = 1e-4 every point sees only itself; the tiled layer used to put every
    point on the global mean (a move of 1.87)."""
    x = normalize_to_sphere(torch.randn(1, 50, 3, generator=torch.Generator().manual_seed(0)), -1)
    for impl in IMPLS:
        out = gbms_step(x, 1e-4, impl=impl)
        assert float((out - x).abs().max()) < 1e-4, impl
        torch.testing.assert_close(out.double(), gbms_step_lse(x, 1e-4), rtol=0, atol=1e-6)


def _accepted_rows(case: str) -> torch.Tensor:
    """Rows that pass the unit-norm check (norm <= 1.01) but broke an implementation."""
    g = torch.Generator().manual_seed(11)
    z = torch.randn(1, 200, 3, generator=g, dtype=torch.float64)
    if case == "bfloat16":
        return normalize_to_sphere(z.bfloat16(), dim=-1)  # norms up to 1.004
    if case == "float16":
        return normalize_to_sphere(z.half(), dim=-1)
    if case == "float32 exact":
        z = z.float()
        return z / z.norm(dim=-1, keepdim=True)
    if case == "float64":
        return normalize_to_sphere(z, dim=-1)  # norms 1 − 1e-5/|z|: far below 1 for short z
    x = z / z.norm(dim=-1, keepdim=True)
    if case == "norm 1.009":
        x[0, 0] *= 1.009
    elif case == "short rows":
        x[0, :50] *= torch.linspace(0, 0.99, 50, dtype=torch.float64)[:, None]
    return x


@pytest.mark.parametrize(
    ("case", "bandwidth"),
    [
        ("bfloat16", 0.005),
        ("float16", 0.002),
        ("float32 exact", 3e-5),
        ("float32 exact", 1e-5),
        ("norm 1.009", 0.01),
        ("float64", 5e-4),
        ("float64", 1e-5),
        ("short rows", 0.01),
        ("short rows", 1e-3),
    ],
)
@pytest.mark.parametrize("impl", IMPLS)
def test_rows_the_check_accepts_give_the_reference_answer(case, bandwidth, impl):
    """Issue 14: NaN (tiled, dense) or a wrong answer for rows that pass the unit-norm check."""
    x = _accepted_rows(case).requires_grad_()
    out = gbms_step(x, bandwidth, impl=impl)
    assert bool(torch.isfinite(out).all())
    bound, _ = gbms_step_tolerance(x.detach(), bandwidth, x.dtype)
    err = (out.double() - gbms_step_lse(x.detach(), bandwidth)).norm(dim=-1)
    assert bool((err <= 2 * bound).all()), float((err - 2 * bound).max())
    (grad,) = torch.autograd.grad((out.float() * torch.linspace(-1, 1, 3)).sum(), x)
    assert bool(torch.isfinite(grad).all())


def test_empty_batch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"x must have B >= 1.*got shape \(0, 5, 3\)"):
        gbms_step(torch.zeros(0, 5, 3), 0.1)
    with pytest.raises(ValueError, match=r"B >= 1"):
        recurrent_mean_shift(torch.zeros(0, 5, 3), 0.1, 2)


@pytest.mark.parametrize(
    ("bandwidth", "num_iters"),
    [
        (np.float32(0.25), np.int64(2)),
        (np.float64(0.25), np.int32(2)),
        (torch.tensor(0.25), torch.tensor(2)),
        (1, 2),
    ],
)
def test_numpy_and_zero_dim_tensor_scalars_are_accepted(bandwidth, num_iters):
    x = random_sphere(1, 20, 3, seed=0)
    bw = float(bandwidth)
    expected = recurrent_mean_shift(x, bw, 2)
    got = recurrent_mean_shift(x, bandwidth, num_iters)
    assert len(got) == 3
    torch.testing.assert_close(got[-1], expected[-1])
    torch.testing.assert_close(gbms_step(x, bandwidth), expected[1])
    layer = RecurrentMeanShift(bandwidth, num_iters)
    assert layer.bandwidth == bw and layer.num_iters == 2 and type(layer.num_iters) is int
    torch.testing.assert_close(layer(x)[-1], expected[-1])


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: gbms_step(random_sphere(1, 4, 3), 0.0),
            ValueError,
            r"bandwidth must be a finite number > 0, got 0\.0",
        ),
        (
            lambda: gbms_step(random_sphere(1, 4, 3), -1),
            ValueError,
            r"bandwidth must be a finite number > 0, got -1",
        ),
        (
            lambda: gbms_step(random_sphere(1, 4, 3), float("nan")),
            ValueError,
            r"bandwidth must be a finite number > 0, got nan",
        ),
        (
            lambda: gbms_step(random_sphere(1, 4, 3), float("inf")),
            ValueError,
            r"bandwidth must be a finite number > 0, got inf",
        ),
        (
            lambda: gbms_step(random_sphere(1, 4, 3), 1e-9),
            ValueError,
            r"bandwidth must be >= 1e-08.*got 1e-09",
        ),
        (
            lambda: gbms_step(random_sphere(1, 4, 3), True),
            TypeError,
            r"bandwidth must be a number, got bool",
        ),
        (
            lambda: gbms_step(random_sphere(1, 4, 3), "0.1"),
            TypeError,
            r"bandwidth must be a number, got str",
        ),
        (
            lambda: gbms_step(random_sphere(1, 4, 3), torch.tensor([0.1, 0.2])),
            TypeError,
            r"bandwidth must be a number, got a tensor of shape \(2,\)",
        ),
        (
            lambda: recurrent_mean_shift(random_sphere(1, 4, 3), 0.1, 2.0),
            TypeError,
            r"num_iters must be an int, got float 2\.0",
        ),
        (
            lambda: recurrent_mean_shift(random_sphere(1, 4, 3), 0.1, np.float64(2)),
            TypeError,
            r"num_iters must be an int, got float64",
        ),
        (
            lambda: recurrent_mean_shift(random_sphere(1, 4, 3), 0.1, -1),
            ValueError,
            r"num_iters must be >= 0, got -1",
        ),
        (
            lambda: RecurrentMeanShift(0.0),
            ValueError,
            r"bandwidth must be a finite number > 0, got 0\.0",
        ),
        (
            lambda: RecurrentMeanShift(0.1, 2.0),
            TypeError,
            r"num_iters must be an int, got float 2\.0",
        ),
        (
            lambda: RecurrentMeanShift(0.1, 2, impl="magic"),
            ValueError,
            r"impl must be one of .*got 'magic'",
        ),
    ],
)
def test_bad_scalars_name_the_argument_and_the_value(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_dense_layout_errors_speak_of_the_dense_layout():
    """Issue 14: errors for a (B, D, H, W) map cited the last dim and an internal (2, 0, 4)."""
    layer = RecurrentMeanShift(0.1, 1)
    with pytest.raises(ValueError, match=r"\(B, D, H, W\).*got shape \(2, 4, 0, 5\)") as info:
        layer(torch.zeros(2, 4, 0, 5))
    assert "(2, 0, 4)" not in str(info.value)
    z = 3 * normalize_to_sphere(torch.randn(2, 4, 3, 5))
    with pytest.raises(ValueError, match=r"unit-norm vectors along dim 1 \(D\)") as info:
        layer(z)
    assert "last dim" not in str(info.value)
    with pytest.raises(TypeError, match="floating"):
        layer(torch.ones(2, 4, 3, 5, dtype=torch.long))


@pytest.mark.parametrize("impl", IMPLS)
def test_autocast_does_not_lower_the_kernel_precision(impl):
    """A bfloat16 autocast region used to break the tiled products (dtype mismatch) and round
    the sdpa / dense logits to bfloat16 (errors of 5e-3); the step now runs with autocast off."""
    x, _ = clustered_sphere(5, 40, 8, spread=0.1, seed=3)
    x = x.float().requires_grad_()
    expected = gbms_step(x, 0.1, impl=impl)
    (g_expected,) = torch.autograd.grad(expected.sum(), x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = gbms_step(x, 0.1, impl=impl)
    (g_got,) = torch.autograd.grad(got.sum(), x)  # backward outside autocast, as recommended
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(g_got, g_expected)
