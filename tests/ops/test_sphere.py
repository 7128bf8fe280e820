import pytest
import torch

from pixelgroup.ops import calibrated_similarity, normalize_to_sphere
from pixelgroup.ops.sphere import pool_to_sphere


def test_normalize_to_sphere_matches_formula_and_keeps_dtype(device):
    z = torch.randn(2, 4, 3, 3, device=device, dtype=torch.float64)
    x = normalize_to_sphere(z)
    torch.testing.assert_close(x, z / (z.norm(dim=1, keepdim=True) + 1e-5))
    assert x.dtype == z.dtype and x.device == z.device


def test_zero_vector_maps_to_zero_with_finite_gradient():
    z = torch.zeros(1, 3, 1, 1, requires_grad=True)
    normalize_to_sphere(z).sum().backward()
    assert torch.isfinite(z.grad).all()


def test_normalize_gradcheck():
    z = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: normalize_to_sphere(z, dim=-1), (z,))


def test_calibrated_similarity_range():
    x = normalize_to_sphere(torch.randn(10, 4), dim=-1)
    s = calibrated_similarity(x)
    assert s.shape == (10, 10) and s.min() >= -1e-6 and s.max() <= 1 + 1e-6
    torch.testing.assert_close(s.diagonal(), torch.ones(10), atol=1e-4, rtol=0)


def _pool_reference(x: torch.Tensor, s: int) -> torch.Tensor:
    """Each s x s cell (partial at the bottom / right edge) averaged by a loop, then unit."""
    b, d, h, w = x.shape
    out = x.new_zeros(b, d, -(-h // s), -(-w // s))
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            out[:, :, i, j] = x[:, :, i * s : (i + 1) * s, j * s : (j + 1) * s].mean((2, 3))
    return out / (out.norm(dim=1, keepdim=True) + 1e-5)


@pytest.mark.parametrize("size", [(5, 7), (4, 6), (1, 3)])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_pool_to_sphere_matches_reference_on_odd_sizes(size, stride):
    x = normalize_to_sphere(torch.randn(2, 3, *size, dtype=torch.float64))
    got = pool_to_sphere(x, stride)
    want = x if stride == 1 else _pool_reference(x, stride)
    torch.testing.assert_close(got, want)
    assert got.dtype == x.dtype


def test_pool_to_sphere_gradcheck():
    x = normalize_to_sphere(torch.randn(1, 3, 5, 5, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: pool_to_sphere(x, 2), (x,))


def test_pool_to_sphere_errors():
    with pytest.raises(ValueError, match=r"stride must be >= 1, got 0"):
        pool_to_sphere(torch.zeros(1, 3, 4, 4), 0)
    with pytest.raises(TypeError, match="stride must be an int"):
        pool_to_sphere(torch.zeros(1, 3, 4, 4), 2.0)
    with pytest.raises(ValueError, match=r"x must have shape \(B, D, H, W\)"):
        pool_to_sphere(torch.zeros(3, 4, 4), 2)
