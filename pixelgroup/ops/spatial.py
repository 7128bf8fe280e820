"""A spatial embedding: image positions mapped onto the unit sphere by Fourier features.

Each pixel votes for a position ``v`` (its own position plus a learned offset: where it
thinks its object's centre is) and the vote becomes the unit vector
``phi(v) = sqrt(1 / M) [cos(W v), sin(W v)]`` of ``D = 2M`` dimensions, with ``M`` fixed
frequencies ``W (M, 2)``. Since ``cos a cos b + sin a sin b = cos(a - b)``, the cosine of two
such vectors depends only on the distance between the votes::

    phi(u) . phi(v) = (1 / M) sum_k cos(w_k . (u - v))  ~  exp(-|u - v|^2 / (2 l^2))

for frequencies drawn from a Gaussian of scale ``1 / l`` (random Fourier features, Rahimi and
Recht 2007). :func:`fourier_frequencies` places them deterministically (Rayleigh quantiles for
the radii, golden-angle turns for the directions), so the kernel is the same for every model
and the largest side lobe stays near 0.25 for M = 16. Two pixels voting for the same centre
have cosine 1, pixels of objects whose centres lie 3 l or more apart have cosine near 0: the
sphere's mean shift groups objects by where they are as well as by what they look like.
"""

from __future__ import annotations

import math

import torch

from pixelgroup._checks import check_int, check_positive, check_rank, check_tensor

__all__ = ["fourier_frequencies", "pixel_positions", "spatial_embedding"]


def fourier_frequencies(count: int, scale: float) -> torch.Tensor:
    """``(count, 2)`` float64 frequencies (radians per pixel) of a Gaussian kernel of length
    ``scale`` pixels: radius ``sqrt(-2 ln(1 - u_k)) / scale`` at quantile ``u_k = (k + 0.5) /
    count`` and angle ``k`` times the golden angle.

    Example:
        >>> tuple(fourier_frequencies(16, 6.0).shape)
        (16, 2)
    """
    count = check_int(count, "count", 1)
    scale = check_positive(scale, "scale")
    k = torch.arange(count, dtype=torch.float64)
    radius = torch.sqrt(-2.0 * torch.log1p(-(k + 0.5) / count)) / scale
    angle = k * math.pi * (3.0 - math.sqrt(5.0))
    return torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)


def pixel_positions(
    like: torch.Tensor, stride: int = 1, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``(2, H, W)`` (y, x) positions in input pixels of the cell centres of a map ``like``
    ``(..., H, W)`` at ``stride``: cell (i, j) covers input pixels ``i*s .. i*s + s - 1``,
    centre ``i*s + (s - 1) / 2``; on ``like``'s device.

    Built by cumulative sums over the map, not from its sizes as Python numbers, so a traced or
    exported graph keeps H and W dynamic.

    Example:
        >>> pixel_positions(torch.zeros(1, 2), stride=2)[:, 0].tolist()
        [[0.5, 0.5], [0.5, 2.5]]
    """
    s = check_int(stride, "stride", 1)
    ones = torch.ones_like(like.flatten(0, -3)[0] if like.dim() > 2 else like, dtype=dtype)
    cells = torch.stack([ones.cumsum(0), ones.cumsum(1)]) - 1
    return cells * s + (s - 1) / 2


def spatial_embedding(votes: torch.Tensor, frequencies: torch.Tensor) -> torch.Tensor:
    """Unit vectors ``(B, 2M, H, W)`` of votes ``(B, 2, H, W)`` ((y, x) in pixels) for
    frequencies ``(M, 2)``: ``sqrt(1 / M) [cos(W v), sin(W v)]`` along dim 1 (module doc).

    Exactly unit norm (no projection needed), differentiable in ``votes``; the cosine of two
    outputs is ``mean_k cos(w_k . (u - v))``.

    Example:
        >>> w = fourier_frequencies(8, 4.0).float()
        >>> e = spatial_embedding(torch.zeros(1, 2, 3, 3), w)
        >>> tuple(e.shape), round(float(e.norm(dim=1).min()), 4)
        ((1, 16, 3, 3), 1.0)
    """
    votes = check_tensor(votes, "votes")
    check_rank(votes, (4,), "votes", "(B, 2, H, W)")
    if votes.shape[1] != 2:
        raise ValueError(f"votes must have 2 channels (y, x), got {votes.shape[1]}")
    check_rank(frequencies, (2,), "frequencies", "(M, 2)")
    phase = torch.einsum("md,bdhw->bmhw", frequencies.to(votes.dtype), votes)
    norm = frequencies.shape[0] ** -0.5
    return torch.cat([torch.cos(phase), torch.sin(phase)], dim=1) * norm
