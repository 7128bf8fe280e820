import shutil

import pytest
import torch

import pixelgroup.ops.tiled_gbms as tiled_gbms
from pixelgroup.ops import gbms_step, normalize_to_sphere, recurrent_mean_shift
from pixelgroup.ops.mean_shift import _blur_dense
from pixelgroup.ops.tiled_gbms import small_dim_kernels, tiled_blur
from tests._reference import (
    clustered_sphere,
    gbms_blur_lse,
    gbms_step_lse,
    peak_cpu_bytes,
    random_sphere,
)


@pytest.fixture(autouse=True, params=["fused", "products"])
def symmetric_pass(request, monkeypatch):
    """Every test runs through both symmetric passes: the fused kernels (float32 / float64 on
    the CPU at D <= 8) and the torch products (every other case, or without a compiler)."""
    if request.param == "products":
        monkeypatch.setattr(tiled_gbms, "_native_kernels", lambda x: None)
    elif shutil.which("c++") is None:
        pytest.skip("no C++ compiler: the fused kernels cannot be built here")
    else:
        assert small_dim_kernels() is not None, "a compiler is here but the kernels did not build"
    return request.param


def _assert_forward_and_gradient_match(x, weights, got, expected):
    """float64 ``got`` and its gradient wrt ``x`` (through ``<got, weights>``) equal the
    reference's to rounding."""
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    (g_got,) = torch.autograd.grad((got * weights).sum(), x)
    (g_exp,) = torch.autograd.grad((expected * weights).sum(), x)
    torch.testing.assert_close(g_got, g_exp, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("tile", [4, 7, 64])  # several tile pairs with ragged edges, one tile
@pytest.mark.parametrize("bandwidth", [0.1, 0.5])
def test_forward_and_gradient_match_dense(tile, bandwidth):
    x = random_sphere(2, 23, 5, seed=tile).requires_grad_()
    weights = random_sphere(2, 23, 5, seed=99)
    _assert_forward_and_gradient_match(
        x, weights, tiled_blur(x, bandwidth, tile), _blur_dense(x, bandwidth)
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_gradcheck_multi_tile(seed):
    x = random_sphere(2, 11, 3, seed=seed).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: tiled_blur(x, 0.4, 4), (x,))


@pytest.mark.parametrize("dim", [1, 2, 3, 8])  # operands narrower than 4 are zero-padded
@pytest.mark.parametrize("tile", [4, 7, 256])  # 37 rows: blocks in chunks of 16 / 28 rows, one
def test_small_dims_match_the_float64_reference(dim, tile):
    """The chunked, transposed accumulation at the widths the small-D speed-up is for: forward
    and gradient against the float64 log-sum-exp blur, with blocks that meet several chunks
    (ragged at both ends) and one block that is a single chunk."""
    x = random_sphere(1, 37, dim, seed=dim).requires_grad_()
    weights = random_sphere(1, 37, dim, seed=50 + dim)
    _assert_forward_and_gradient_match(
        x, weights, tiled_blur(x, 0.3, tile), gbms_blur_lse(x, 0.3)[0]
    )


@pytest.mark.parametrize("dim", [1, 3])
def test_gradcheck_small_dims_across_chunks(dim):
    x = random_sphere(1, 21, dim, seed=dim).requires_grad_()  # tile 4: chunks of 16 rows
    assert torch.autograd.gradcheck(lambda x: tiled_blur(x, 0.4, 4), (x,))


def test_float32_small_dim_at_the_default_tile_matches_float64():
    """D = 3 (the toy's width), 2500 rows: the default 256-row blocks meet chunks of 1024
    rows; float32 forward and gradient against the float64 reference."""
    x = random_sphere(1, 2500, 3, seed=8)
    weights = random_sphere(1, 2500, 3, seed=9)
    x32 = x.float().requires_grad_()
    got = tiled_blur(x32, 0.2)
    (grad,) = torch.autograd.grad((got * weights.float()).sum(), x32)
    x64 = x.clone().requires_grad_()
    expected = gbms_blur_lse(x64, 0.2)[0]
    (ref_grad,) = torch.autograd.grad((expected * weights).sum(), x64)
    # measured 4e-7 and 5e-6 (the 512-tile layout before: 3e-7 and 5e-6)
    torch.testing.assert_close(got.double(), expected, rtol=0, atol=2e-6)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=0, atol=5e-5)


def test_gradient_of_clustered_points_matches_dense_through_loops():
    """Collapsed clusters: kernel entries span e^0 .. below the e^-80 floor."""
    x, _ = clustered_sphere(3, 20, 4, spread=0.05, seed=2)
    x = x.requires_grad_()
    weights = random_sphere(1, 60, 4, seed=3)
    grads = []
    for impl in ("tiled", "dense"):
        out = recurrent_mean_shift(x, 0.1, 4, impl=impl)
        grads.append(torch.autograd.grad(sum((it * weights).sum() for it in out), x)[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_dtypes_and_devices_match_float64_dense(dtype, device):
    x = random_sphere(2, 40, 6, seed=4)
    weights = random_sphere(2, 40, 6, seed=5)
    xd = x.to(device, dtype).requires_grad_()
    out = gbms_step(xd, 0.3, impl="tiled")
    assert out.dtype == dtype and out.device == xd.device
    (grad,) = torch.autograd.grad((out * weights.to(device, dtype)).sum(), xd)
    assert grad.dtype == dtype
    x64 = x.clone().requires_grad_()
    ref = gbms_step(x64, 0.3, impl="dense")
    (ref_grad,) = torch.autograd.grad((ref * weights).sum(), x64)
    tol = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 5e-2}[dtype]
    torch.testing.assert_close(out.double().cpu(), ref, rtol=tol, atol=tol)
    torch.testing.assert_close(grad.double().cpu(), ref_grad, rtol=tol, atol=tol * 10)


@pytest.mark.parametrize(("impl", "holds_n_by_n"), [("tiled", False), ("dense", True)])
def test_forward_and_backward_never_hold_an_n_by_n_matrix(impl, holds_n_by_n):
    n = 4096  # N x N float32 = 64 MiB; the 512 x 512 tiles are 1 MiB
    x = random_sphere(1, n, 4, seed=6, dtype=torch.float32).requires_grad_()

    def run():
        out = recurrent_mean_shift(x, 0.2, 1, impl=impl)[-1]
        out.sum().backward()

    assert (peak_cpu_bytes(run) > n * n * 4 / 4) == holds_n_by_n


@pytest.mark.parametrize(("dim", "grad"), [(3, True), (32, True), (32, False)])
def test_auto_picks_tiled_on_cpu(monkeypatch, dim, grad):
    import pixelgroup.ops.mean_shift as ms

    used = []

    def recording(name):
        blur = ms._BLURS[name]

        def wrapper(*args):
            used.append(name)
            return blur(*args)

        return wrapper

    monkeypatch.setattr(ms, "_BLURS", {name: recording(name) for name in ms._BLURS})
    gbms_step(random_sphere(1, 8, dim, seed=0).requires_grad_(grad), 0.5)
    assert used == ["tiled"]


def _uneven_rows(n: int, dim: int, seed: int) -> torch.Tensor:
    """Unit rows with every fourth row shortened (one to zero): the checks accept them."""
    x = random_sphere(1, n, dim, seed=seed)
    x[0, ::4] *= torch.linspace(0.0, 0.99, len(range(0, n, 4)), dtype=torch.float64)[:, None]
    return x


@pytest.mark.parametrize("tile", [4, 16, 512])
@pytest.mark.parametrize("bandwidth", [1e-3, 0.05, 0.3])
def test_rows_of_unequal_norm_match_the_reference(tile, bandwidth):
    """Rows far shorter than the longest: the fixed shift κ·max|x|² leaves their kernel sums
    below the floor, so they are recomputed with their own largest logit."""
    x = _uneven_rows(37, 4, seed=tile).requires_grad_()
    weights = random_sphere(1, 37, 4, seed=1)
    got = normalize_to_sphere(tiled_blur(x, bandwidth, tile), dim=-1)
    expected = gbms_step_lse(x, bandwidth)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
    (g_got,) = torch.autograd.grad((got * weights).sum(), x)
    (g_exp,) = torch.autograd.grad((expected * weights).sum(), x)
    torch.testing.assert_close(g_got, g_exp, rtol=1e-7, atol=1e-7 / bandwidth**2)


@pytest.mark.parametrize("seed", [0])
def test_gradcheck_with_recomputed_rows(seed):
    x = _uneven_rows(11, 3, seed=seed).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: tiled_blur(x, 0.1, 4), (x,))


def test_rows_longer_than_one_do_not_overflow():
    """A row of norm 1.009 (accepted) at δ = 0.01: its logits exceed κ, which the old fixed
    shift κ did not allow for (exp overflowed to inf, then NaN)."""
    x = random_sphere(1, 30, 3, seed=2, dtype=torch.float32)
    x[0, 0] *= 1.009
    got = tiled_blur(x, 0.01)
    assert bool(torch.isfinite(got).all())
    y = gbms_blur_lse(x, 0.01)[0]
    torch.testing.assert_close(got.double(), y, rtol=0, atol=1e-4)


@pytest.mark.parametrize("dim", range(1, 9))
@pytest.mark.parametrize("n", [1, 16, 17, 300, 1300])  # one row; whole / ragged vectors; chunks
def test_small_dims_match_the_float64_reference_at_every_width(dim, n):
    """Each width the fused kernels are built for, with row counts that end inside a vector,
    span several 256-row blocks, 256-column chunks and 16-row sub-blocks."""
    x = random_sphere(1, n, dim, seed=n + dim).requires_grad_()
    weights = random_sphere(1, n, dim, seed=7)
    _assert_forward_and_gradient_match(x, weights, tiled_blur(x, 0.3), gbms_blur_lse(x, 0.3)[0])


def test_two_threads_give_the_one_thread_result():
    """4100 rows: the fused pass splits them between two threads (own sums, added after)."""
    x = random_sphere(1, 4100, 3, seed=3).requires_grad_()
    weights = random_sphere(1, 4100, 3, seed=4)
    previous = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            y = tiled_blur(x, 0.2)
            results.append((y, *torch.autograd.grad((y * weights).sum(), x)))
    finally:
        torch.set_num_threads(previous)
    for one, two in zip(*results, strict=True):
        torch.testing.assert_close(one, two, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_nan_row_is_not_hidden(dtype):
    """A NaN coordinate makes its row NaN (the exponent floor must not turn it into a
    number)."""
    x = random_sphere(1, 40, 3, seed=5, dtype=dtype)
    x[0, 7, 1] = float("nan")
    assert bool(torch.isnan(tiled_blur(x, 0.3)[0, 7]).all())
