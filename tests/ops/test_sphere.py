import torch

from pixelgroup.ops import calibrated_similarity, normalize_to_sphere


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
