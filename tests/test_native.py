"""C++ built at first use (pixelgroup._native): the GBMS kernels and the BSDS solver."""

import shutil
import warnings

import numpy as np
import pytest
import torch

import pixelgroup._native as native
from pixelgroup.metrics._bsds_match import GroundTruthMatcher, assignment_library
from pixelgroup.ops.tiled_gbms import small_dim_kernels, tiled_blur
from tests._reference import correspond_pixels_reference, gbms_blur_lse, random_sphere


@pytest.fixture
def fresh_build(monkeypatch, tmp_path):
    """An empty kernel cache and no memoised library; the memo is cleared again after."""
    monkeypatch.setenv("PIXELGROUP_CACHE_DIR", str(tmp_path))
    native.compiled_library.cache_clear()
    yield tmp_path
    native.compiled_library.cache_clear()


def test_disabled_by_the_environment_the_layer_runs_its_torch_path(fresh_build, monkeypatch):
    monkeypatch.setenv("PIXELGROUP_NATIVE", "0")
    assert small_dim_kernels() is None
    x = random_sphere(1, 30, 3, seed=1)
    torch.testing.assert_close(tiled_blur(x, 0.3), gbms_blur_lse(x, 0.3)[0], rtol=0, atol=1e-12)
    assert list(fresh_build.iterdir()) == []


def test_a_failing_compiler_warns_in_one_line_and_falls_back(fresh_build, monkeypatch):
    monkeypatch.setenv("CXX", shutil.which("false") or "false")
    with pytest.warns(RuntimeWarning, match="could not be built") as record:
        assert small_dim_kernels() is None
    assert len(record) == 1 and "\n" not in str(record[0].message)
    assert list(fresh_build.iterdir()) == []  # no half-written library left behind
    x = random_sphere(1, 30, 3, seed=1)
    torch.testing.assert_close(tiled_blur(x, 0.3), gbms_blur_lse(x, 0.3)[0], rtol=0, atol=1e-12)


def test_a_missing_compiler_falls_back_silently(fresh_build, monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler-pixelgroup")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert small_dim_kernels() is None


@pytest.mark.skipif(shutil.which("c++") is None, reason="no C++ compiler")
def test_built_once_then_reused_in_the_temporary_folder_when_the_cache_is_not_writable(
    fresh_build, monkeypatch
):
    blocker = fresh_build / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("PIXELGROUP_CACHE_DIR", str(blocker / "cache"))  # cannot be created
    monkeypatch.setattr(native.tempfile, "gettempdir", lambda: str(fresh_build / "tmp"))
    assert small_dim_kernels() is not None
    (built,) = (fresh_build / "tmp").glob("*/gbms_small_dim_*.so")
    stamp = built.stat().st_mtime_ns
    native.compiled_library.cache_clear()
    assert small_dim_kernels() is not None
    assert list(built.parent.iterdir()) == [built]  # reused: no second file, no temporaries
    assert built.stat().st_mtime_ns == stamp


def test_a_failing_compiler_leaves_the_bsds_matcher_on_lapjvsp(fresh_build, monkeypatch):
    monkeypatch.setenv("CXX", shutil.which("false") or "false")
    with pytest.warns(RuntimeWarning, match="BSDS assignment solver could not be built") as record:
        assert assignment_library() is None
    assert len(record) == 1 and "LAPJVsp" in str(record[0].message)
    rng = np.random.default_rng(3)
    pred, gt = rng.random((30, 40)) < 0.2, rng.random((30, 40)) < 0.2
    ref_pred, _, _ = correspond_pixels_reference(pred, gt, 0.05)
    a, _ = GroundTruthMatcher(gt, 0.05 * np.hypot(30, 40)).match(pred)
    assert len(a) == int(ref_pred.sum())


@pytest.mark.skipif(shutil.which("c++") is None, reason="no C++ compiler")
def test_each_source_gets_its_own_library(fresh_build):
    assert small_dim_kernels() is not None and assignment_library() is not None
    names = sorted(p.name.rsplit("_", 1)[0] for p in fresh_build.glob("*.so"))
    assert names == ["bsds_assign", "gbms_small_dim"]


@pytest.mark.skipif(
    shutil.which("c++") is None or "avx2" not in native._cpu_flags().split(),
    reason="needs a C++ compiler and an x86 CPU with AVX2",
)
def test_the_avx2_build_matches_the_reference_at_every_width(fresh_build, monkeypatch):
    """The kernels as an AVX2-only CPU builds them (``x86-64-v3``: 16 vector registers, its own
    split of the backward into passes), on any CPU with AVX2: forward and gradient in float64
    against the log-sum-exp reference, over blocks, chunks and sub-blocks."""
    monkeypatch.setenv("PIXELGROUP_NATIVE_ARCH", "x86-64-v3")
    assert small_dim_kernels() is not None
    for dim in range(1, 9):
        for n in (17, 1300):
            x = random_sphere(1, n, dim, seed=n + dim).requires_grad_()
            weights = random_sphere(1, n, dim, seed=7)
            got, expected = tiled_blur(x, 0.3), gbms_blur_lse(x, 0.3)[0]
            torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
            (g_got,) = torch.autograd.grad((got * weights).sum(), x)
            (g_exp,) = torch.autograd.grad((expected * weights).sum(), x)
            torch.testing.assert_close(g_got, g_exp, rtol=1e-10, atol=1e-10)


def _flushes() -> bool:
    """Whether this thread flushes subnormal float32 results to zero."""
    return (torch.tensor([2.0**-126]) * 0.5).item() == 0.0


@pytest.mark.parametrize("caller_flushes", [False, True])
def test_the_kernels_flush_subnormals_only_for_their_duration(caller_flushes):
    """The kernels set FTZ/DAZ for themselves and leave the caller's MXCSR as it was."""
    if small_dim_kernels() is None or not torch.set_flush_denormal(caller_flushes):
        pytest.skip("no compiled kernels or no flush-to-zero on this CPU")
    try:
        x = random_sphere(1, 300, 3, seed=2).float().requires_grad_()
        tiled_blur(x, 0.05).backward(torch.full((1, 300, 3), 1e-30))
        assert _flushes() == caller_flushes
        assert torch.isfinite(x.grad).all()
    finally:
        torch.set_flush_denormal(False)


def test_the_torch_paths_lift_is_undone_exactly(monkeypatch):
    """The torch path lifts the backward's factors by a power of two chosen from their largest
    entry and scales back: a gradient 2^-100 times another (another power) gives 2^-100 times
    its result."""
    monkeypatch.setattr("pixelgroup.ops.tiled_gbms._native_kernels", lambda x: None)
    x = random_sphere(1, 200, 16, seed=3).float().requires_grad_()
    weights = torch.randn(1, 200, 16, generator=torch.Generator().manual_seed(0))
    grads = []
    for scale in (1.0, 2.0**-100):
        x.grad = None
        tiled_blur(x, 0.1).backward(weights * scale)
        grads.append(x.grad.clone())
    torch.testing.assert_close(grads[1], grads[0] * 2.0**-100, rtol=1e-6, atol=0)
