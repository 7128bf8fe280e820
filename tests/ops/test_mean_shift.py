import numpy as np
import pytest
import scipy.io
import torch

from pixelgroup.ops import RecurrentMeanShift, gbms_step, normalize_to_sphere, recurrent_mean_shift
from tests._reference import clustered_sphere, gbms_step_reference, random_sphere

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
