import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pixelgroup.ops.spatial import fourier_frequencies, pixel_positions, spatial_embedding


def _reference(votes: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Per pixel, by a loop: sqrt(1/M) [cos(w_k . v) for k, sin(w_k . v) for k]."""
    b, _, h, wd = votes.shape
    m = w.shape[0]
    out = votes.new_zeros(b, 2 * m, h, wd)
    for n in range(b):
        for i in range(h):
            for j in range(wd):
                v = votes[n, :, i, j]
                for k in range(m):
                    phase = w[k, 0] * v[0] + w[k, 1] * v[1]
                    out[n, k, i, j] = math.cos(phase) / math.sqrt(m)
                    out[n, m + k, i, j] = math.sin(phase) / math.sqrt(m)
    return out


def test_spatial_embedding_matches_the_loop(device):
    w = fourier_frequencies(5, 3.0).to(device)
    votes = torch.randn(2, 2, 3, 4, dtype=torch.float64, device=device) * 10
    out = spatial_embedding(votes, w)
    assert out.shape == (2, 10, 3, 4) and out.dtype == votes.dtype and out.device == votes.device
    torch.testing.assert_close(out, _reference(votes.cpu(), w.cpu()).to(device))


def test_spatial_embedding_gradcheck():
    w = fourier_frequencies(4, 2.0)
    votes = torch.randn(1, 2, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: spatial_embedding(v, w), (votes,))


@settings(max_examples=40, deadline=None)
@given(y=st.floats(-500, 500), x=st.floats(-500, 500), dy=st.floats(-40, 40), dx=st.floats(-40, 40))
def test_cosine_depends_only_on_the_distance_and_is_unit(y, x, dy, dx):
    w = fourier_frequencies(16, 6.0)
    u = torch.tensor([y, x], dtype=torch.float64).view(1, 2, 1, 1)
    d = torch.tensor([dy, dx], dtype=torch.float64).view(1, 2, 1, 1)
    a, b = spatial_embedding(u, w), spatial_embedding(u + d, w)
    origin = spatial_embedding(torch.zeros_like(u), w)
    torch.testing.assert_close(a.norm(dim=1), torch.ones(1, 1, 1, dtype=torch.float64))
    # translation-invariant: the same as the cosine of the origin and the offset alone
    torch.testing.assert_close((a * b).sum(1), (origin * spatial_embedding(d, w)).sum(1))


def test_kernel_is_near_gaussian_with_small_side_lobes():
    scale = 6.0
    w = fourier_frequencies(16, scale)
    angles = torch.linspace(0, 2 * math.pi, 64, dtype=torch.float64)
    for distance in (3.0, 6.0, 12.0, 24.0, 60.0, 200.0):
        d = distance * torch.stack([angles.sin(), angles.cos()])
        cos = torch.cos(w @ d).mean(0)  # (64,) cosines at this distance
        gaussian = math.exp(-(distance**2) / (2 * scale**2))
        assert abs(float(cos.mean()) - gaussian) < 0.03, distance
        if distance >= 24:  # neighbouring nuclei and beyond: far below the grouping's tau 0.96
            assert float(cos.abs().max()) < 0.6, distance


def test_frequencies_and_positions_are_checked_and_exact():
    with pytest.raises(ValueError, match="scale"):
        fourier_frequencies(4, 0.0)
    with pytest.raises(ValueError, match="count"):
        fourier_frequencies(0, 1.0)
    assert pixel_positions(torch.zeros(3, 2, 1), stride=4)[:, :, 0].tolist() == [
        [1.5, 5.5],
        [1.5, 1.5],
    ]
    with pytest.raises(ValueError, match="2 channels"):
        spatial_embedding(torch.zeros(1, 3, 2, 2), fourier_frequencies(2, 1.0))
