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

Volumes: votes are ``(z, y, x)`` positions in physical units (one unit: the YX voxel side, so
``z`` is scaled by the voxel size's z / y ratio, :func:`voxel_positions`), and the frequencies
``(M, 3)`` sample a 3-D Gaussian (:func:`fourier_frequencies_3d`): the kernel is isotropic in
space however coarse the z sampling.
"""

from __future__ import annotations

import math

import torch

from pixelgroup._checks import check_int, check_positive, check_rank, check_tensor

__all__ = [
    "fourier_frequencies",
    "fourier_frequencies_3d",
    "pixel_positions",
    "voxel_positions",
    "spatial_embedding",
]


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


def fourier_frequencies_3d(count: int, scale: float) -> torch.Tensor:
    """``(count, 3)`` float64 (z, y, x) frequencies of a 3-D Gaussian kernel of length ``scale``:
    radius ``sqrt(2 P^-1(3/2, u_k)) / scale`` (the chi distribution's quantile, 3 degrees of
    freedom; P the regularised lower incomplete gamma function) at ``u_k = (k + 0.5) / count``,
    directions from a low-discrepancy (R2) sequence on the sphere decorrelated from the radii.

    Example:
        >>> tuple(fourier_frequencies_3d(16, 6.0).shape)
        (16, 3)
    """
    from scipy.special import gammaincinv

    count = check_int(count, "count", 1)
    scale = check_positive(scale, "scale")
    k = torch.arange(count, dtype=torch.float64)
    quantile = ((k + 0.5) / count).numpy()
    radius = torch.from_numpy(2.0 * gammaincinv(1.5, quantile)).sqrt() / scale
    g = 1.32471795724474602596  # the plastic number: R2 sequence constants 1/g, 1/g²
    u, v = torch.frac(0.5 + k / g), torch.frac(0.5 + k / g**2)
    cos_polar = 1.0 - 2.0 * u
    sin_polar = torch.sqrt((1.0 - cos_polar**2).clamp_min(0.0))
    turn = 2.0 * math.pi * v
    direction = torch.stack([cos_polar, sin_polar * torch.sin(turn), sin_polar * torch.cos(turn)])
    return (direction * radius).T.contiguous()


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


def voxel_positions(
    like: torch.Tensor,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``(3, Z, Y, X)`` (z, y, x) positions of the voxels of a volume ``like (..., Z, Y, X)``
    in physical units: voxel ``(i, j, k)`` at ``(i·sz, j·sy, k·sx)`` for ``spacing = (sz, sy,
    sx)``; on ``like``'s device.

    Example:
        >>> voxel_positions(torch.zeros(2, 1, 1), (2.0, 1.0, 1.0))[0].flatten().tolist()
        [0.0, 2.0]
    """
    check_rank(like, (3, 4, 5), "like", "(..., Z, Y, X)")
    z, y, x = (int(n) for n in like.shape[-3:])
    axes = [
        torch.arange(n, dtype=dtype, device=like.device) * float(s)
        for n, s in zip((z, y, x), spacing, strict=True)
    ]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"))


def spatial_embedding(votes: torch.Tensor, frequencies: torch.Tensor) -> torch.Tensor:
    """Unit vectors ``(B, 2M, H, W)`` of votes ``(B, 2, H, W)`` ((y, x) in pixels) for
    frequencies ``(M, 2)``: ``sqrt(1 / M) [cos(W v), sin(W v)]`` along dim 1 (module doc); of a
    volume, ``(B, 2M, Z, Y, X)`` from votes ``(B, 3, Z, Y, X)`` and frequencies ``(M, 3)``.

    Exactly unit norm (no projection needed), differentiable in ``votes``; the cosine of two
    outputs is ``mean_k cos(w_k . (u - v))``.

    Example:
        >>> w = fourier_frequencies(8, 4.0).float()
        >>> e = spatial_embedding(torch.zeros(1, 2, 3, 3), w)
        >>> tuple(e.shape), round(float(e.norm(dim=1).min()), 4)
        ((1, 16, 3, 3), 1.0)
    """
    votes = check_tensor(votes, "votes")
    check_rank(votes, (4, 5), "votes", "(B, 2, H, W) or (B, 3, Z, Y, X)")
    dims = votes.dim() - 2
    if votes.shape[1] != dims:
        axes = "(y, x)" if dims == 2 else "(z, y, x)"
        raise ValueError(f"votes must have {dims} channels {axes}, got {votes.shape[1]}")
    check_rank(frequencies, (2,), "frequencies", f"(M, {dims})")
    pattern = "md,bdhw->bmhw" if dims == 2 else "md,bdzyx->bmzyx"
    phase = torch.einsum(pattern, frequencies.to(votes.dtype), votes)
    norm = frequencies.shape[0] ** -0.5
    return torch.cat([torch.cos(phase), torch.sin(phase)], dim=1) * norm
