"""Boundary NMS: one pixel wide on synthetic step edges, equal to the toolbox, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from pixelgroup.postprocess.boundary_nms import (
    boundary_nms,
    boundary_orientation,
    triangle_smooth,
)


def _step_edge(theta, size=48, offset=0.3):
    """Edge strength of a straight boundary through the centre with normal angle ``theta``:
    a Gaussian ridge (sigma 1.5 px) across it, and each pixel's distance to the true line."""
    ys, xs = np.mgrid[0:size, 0:size] - (size - 1) / 2 + offset
    signed = xs * np.cos(theta) + ys * np.sin(theta)
    return np.exp(-(signed**2) / (2 * 1.5**2)), np.abs(signed)


@pytest.mark.parametrize("theta", np.linspace(0, np.pi, 16, endpoint=False))
@pytest.mark.parametrize("offset", [0.0, 0.3])
def test_step_edge_becomes_one_pixel_wide(theta, offset):
    edges, dist = _step_edge(theta, offset=offset)
    assert (edges > 0.5).sum() > 2.5 * 48  # the input ridge is ~3 px thick
    line = boundary_nms(edges) > 0.5
    # one pixel wide: every survivor lies on the digital line of the true edge (the pixels
    # within (|cos| + |sin|) / 2 of it, one per row or column away from the diagonals)
    half_width = (abs(np.cos(theta)) + abs(np.sin(theta))) / 2
    assert dist[line].max() <= half_width + 1e-6
    # and the line is kept: a survivor in (almost) every row / column it crosses
    inner = line[8:-8, 8:-8]
    crossed = inner.any(axis=0) if abs(np.sin(theta)) > abs(np.cos(theta)) else inner.any(axis=1)
    assert crossed.mean() >= 0.9


def test_orientation_is_the_normal():
    for theta in (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4):
        edges, _ = _step_edge(theta)
        o = boundary_orientation(edges)[24, 24]
        diff = abs((o - theta + np.pi / 2) % np.pi - np.pi / 2)
        assert diff < 0.1


def test_triangle_kernel_and_border():
    x = np.zeros((15, 15))
    x[7, 7] = 25.0 * 25.0
    k = np.array([1, 2, 3, 4, 5, 4, 3, 2, 1.0])
    np.testing.assert_allclose(triangle_smooth(x, 4)[3:12, 3:12], np.outer(k, k))
    flat = boundary_nms(np.ones((20, 30)), np.zeros((20, 30)))
    np.testing.assert_allclose(flat[10, :6], [0, 0.2, 0.4, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(flat[:6, 15], [0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert flat[10, -1] == 0 and flat[-1, 10] == 0


def test_matches_pyedgeeval_nms(shared_data):
    ref = pytest.importorskip("pyEdgeEval._lib", reason="pyEdgeEval (extra bsds-reference)")
    import scipy.io as sio
    from skimage import color, filters

    m = sio.loadmat(shared_data / "bsds" / "130066.mat", squeeze_me=True)
    pb = filters.sobel(color.rgb2gray(m["im"]))[:120, :150]
    pb /= pb.max()
    o = boundary_orientation(pb)
    np.testing.assert_allclose(boundary_nms(pb, o), ref.nms(pb, o, 1, 5, 1.01), atol=1e-12)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"edges must be an \(H, W\) map"):
        boundary_nms(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="non-finite"):
        boundary_nms(np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="orientation must match edges"):
        boundary_nms(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="radius must be an int >= 1"):
        boundary_nms(np.zeros((4, 4)), radius=0)
    with pytest.raises(ValueError, match="border must be an int >= 0"):
        boundary_nms(np.zeros((4, 4)), border=-1)
