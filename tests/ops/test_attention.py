import pytest
import torch

from pixelgroup.ops.attention import fused_attention
from pixelgroup.ops.weighted_mean_shift import weighted_gbms_step
from tests._reference import peak_cpu_bytes, random_sphere


@pytest.mark.parametrize(("dq", "dv"), [(5, 5), (3, 9), (9, 2)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_softmax_reference(device, dq, dv, dtype):
    g = torch.Generator().manual_seed(dq * 10 + dv)
    q, k = torch.randn(40, dq, generator=g), torch.randn(25, dq, generator=g)
    v = torch.randn(25, dv, generator=g)
    expected = torch.softmax(2.5 * q.double() @ k.double().T, dim=1) @ v.double()
    got = fused_attention(*(t.to(device, dtype) for t in (q, k, v)), scale=2.5)
    assert got.shape == (40, dv) and got.dtype == dtype and got.device.type == device.type
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(got.cpu().double(), expected, rtol=tol, atol=tol)


def test_key_log_weights_act_like_repeated_keys(device):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(n, 4, generator=g, dtype=torch.float64) for n in (30, 12, 12))
    weights = torch.randint(1, 4, (12,), generator=g).double()
    k_rep, v_rep = (t.repeat_interleave(weights.long(), dim=0) for t in (k, v))
    expected = torch.softmax(1.5 * q @ k_rep.T, dim=1) @ v_rep
    got = fused_attention(*(t.to(device) for t in (q, k, v)), 1.5, weights.log().to(device))
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("widths", [(4, 4), (4, 12)])
def test_never_holds_the_n_by_m_matrix(widths):
    """Different Q and V widths would send torch to its math path (an N x M matrix)."""
    n = 4096  # N x N float32 = 64 MiB
    x = random_sphere(1, n, widths[0], seed=0, dtype=torch.float32)[0]
    v = torch.randn(n, widths[1])
    assert peak_cpu_bytes(lambda: fused_attention(x, x, v, scale=5.0)) < n * n * 4 / 4
    naive = peak_cpu_bytes(lambda: torch.softmax(5.0 * x @ x.T, dim=1) @ v)
    assert naive > n * n * 4 / 4  # the probe does see an N x N matrix


def test_weighted_step_never_holds_an_m_by_m_matrix():
    n = 4096
    x = random_sphere(1, n, 3, seed=1, dtype=torch.float32)[0]
    weights = torch.rand(n) + 1
    assert peak_cpu_bytes(lambda: weighted_gbms_step(x, weights, 0.2)) < n * n * 4 / 4
