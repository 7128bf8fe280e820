"""Synthetic 3-D nuclei: touching, occluding ellipsoids in an anisotropic stack, with labels.

The 3-D toy (``data.name: toy3d``, ``pixelgroup demo --config toy3d``): a light-sheet or
confocal stack in miniature. Nuclei are ellipsoids of varied size, elongation and orientation
(turned about z), packed so that many touch and some overlap (the later one drawn owns the
overlap, as a hand-drawn label volume); each has its own brightness and a textured interior
whose edge fades; the background is uneven; the optics blur the scene (a Gaussian PSF twice as
long in z) and the camera adds Poisson and Gaussian noise. Sizes are physical: a voxel is
``spacing = (sz, sy, sx)`` long (z coarser than YX by default), so the same nuclei sampled at
another spacing stay the same nuclei.

:func:`draw_nuclei_volume` draws one volume; :class:`ToyVolumes` is the dataset, volume ``i``
of a split drawn from ``numpy.random.default_rng([seed, split index, i])`` on every access
(no files, the same volume on every call, with any number of workers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi
import torch
from torch.utils.data import Dataset

from pixelgroup._config_io import option
from pixelgroup.data.sample import InstanceSample

__all__ = ["Toy3DOptions", "NucleiVolume", "draw_nuclei_volume", "ToyVolumes", "TOY3D_SPLITS"]

TOY3D_SPLITS = ("train", "val", "test")
"""The splits of :class:`ToyVolumes` (each its own random stream)."""


@dataclass(frozen=True)
class Toy3DOptions:
    """``data.name: toy3d`` (:class:`ToyVolumes`): synthetic nuclei stacks drawn on the fly,
    ``length`` for the training split, ``eval_length`` else; ``shape: [Z, Y, X]`` voxels
    (``train_shape`` for the training split, default ``shape``), ``voxel_size: [z, y, x]``, up
    to ``count`` nuclei ``diameter: [lo, hi]`` units across."""

    length: int = option(2000, min=1)
    eval_length: int = option(8, min=1)
    seed: int = option(0, min=0)
    shape: tuple[int, ...] = option((16, 64, 64), min=1)
    train_shape: tuple[int, ...] | None = option(None, min=1)
    voxel_size: tuple[float, ...] = option((2.0, 1.0, 1.0), above=0)
    count: int = option(14, min=1)
    diameter: tuple[float, ...] = option((10.0, 18.0), above=0)


@dataclass(frozen=True)
class NucleiVolume:
    """One synthetic stack: ``image (Z, Y, X)`` float32 in [0, 1] and ``instance (Z, Y, X)``
    int64 ids (0 background, 1..K nuclei)."""

    image: np.ndarray
    instance: np.ndarray


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: tuple) -> np.ndarray:
    """Gaussian-filtered white noise scaled to zero mean, unit standard deviation."""
    field = ndi.gaussian_filter(rng.standard_normal(shape), sigma)
    return (field - field.mean()) / (field.std() + 1e-12)


def _place(
    rng: np.random.Generator,
    extent: np.ndarray,
    count: int,
    diameter: tuple[float, float],
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Up to ``count`` ellipsoids ``(centre (3,), semi-axes (3,), angle)`` in a box of physical
    ``extent (3,)``; two thirds placed against an earlier one (clumps), centres at least 0.8 of
    the sum of the mean radii apart: neighbours touch or overlap a little."""
    lo, hi = diameter
    out: list[tuple[np.ndarray, np.ndarray, float]] = []
    for _ in range(count * 40):
        if len(out) == count:
            break
        r = float(np.clip(rng.normal((lo + hi) / 2, (hi - lo) / 6), lo, hi)) / 2
        axes = r * rng.uniform(0.8, 1.25, 3)
        if out and rng.random() < 2 / 3:
            q = out[int(rng.integers(len(out)))]
            direction = rng.standard_normal(3)
            direction /= np.linalg.norm(direction) + 1e-12
            centre = q[0] + rng.uniform(0.8, 1.0) * (r + q[1].mean()) * direction
        else:
            centre = rng.uniform(-r / 2, extent + r / 2)
        if all(np.linalg.norm(centre - q[0]) >= 0.8 * (axes.mean() + q[1].mean()) for q in out):
            out.append((centre, axes, float(rng.uniform(0, np.pi))))
    return out


def draw_nuclei_volume(
    rng: np.random.Generator,
    shape: tuple[int, int, int] = (16, 64, 64),
    *,
    spacing: tuple[float, float, float] = (2.0, 1.0, 1.0),
    count: int = 14,
    diameter: tuple[float, float] = (10.0, 18.0),
    blur: float = 1.0,
    photons: float = 30.0,
    read_noise: float = 0.03,
) -> NucleiVolume:
    """One ``shape = (Z, Y, X)`` stack of up to ``count`` nuclei ``diameter`` physical units
    across, voxels ``spacing = (sz, sy, sx)`` units long; ``blur`` the PSF's sigma in YX units
    (twice that along z), ``photons`` the expected count of the brightest voxel (lower:
    noisier), ``read_noise`` the Gaussian noise as a fraction of the brightest level.

    Example:
        >>> v = draw_nuclei_volume(np.random.default_rng(0), (8, 32, 32), count=4)
        >>> v.image.shape, v.instance.dtype, int(v.instance.max()) <= 4
        ((8, 32, 32), dtype('int64'), True)
    """
    spacing_arr = np.asarray(spacing, dtype=np.float64)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1) * spacing_arr
    signal = np.zeros(shape)
    instance = np.zeros(shape, dtype=np.int64)
    nuclei = _place(rng, np.asarray(shape) * spacing_arr, count, diameter)  # physical box
    texture_field = _smooth_noise(rng, shape, tuple(1.5 / spacing_arr))
    for k, (centre, axes, angle) in enumerate(nuclei, start=1):
        d = grid - centre
        c, s = np.cos(angle), np.sin(angle)
        u = d[..., 2] * c + d[..., 1] * s  # turned about z
        v = -d[..., 2] * s + d[..., 1] * c
        radius = np.sqrt((d[..., 0] / axes[0]) ** 2 + (v / axes[1]) ** 2 + (u / axes[2]) ** 2)
        inside = radius <= 1.0
        if not inside.any():
            continue
        edge = np.clip((1.0 - radius) * axes.min() / 1.5, 0.0, 1.0)
        value = rng.uniform(0.35, 1.0) * edge * (1.0 + rng.uniform(0.1, 0.3) * texture_field)
        signal = np.where(inside, value, signal)  # drawn on top: owns the overlap
        instance[inside] = k
    background = 0.08 + 0.04 * _smooth_noise(rng, shape, tuple(6.0 / spacing_arr)).clip(-2, 2)
    sigma = blur * np.array([2.0, 1.0, 1.0]) / spacing_arr
    clean = ndi.gaussian_filter(signal + background, sigma)
    noisy = rng.poisson(clean.clip(0, None) * photons) / photons
    noisy = noisy + rng.normal(0.0, read_noise, shape)
    image = np.clip(noisy / max(noisy.max(), 1e-12), 0.0, 1.0).astype(np.float32)
    ids = np.unique(instance[instance > 0])  # relabel 1..K, dropping fully covered ids
    remap = np.zeros(int(instance.max()) + 1, dtype=np.int64)
    remap[ids] = np.arange(1, len(ids) + 1)
    return NucleiVolume(image, remap[instance])


class ToyVolumes(Dataset):
    """``length`` synthetic stacks of one split (:func:`draw_nuclei_volume`), drawn on access.

    Items are :class:`~pixelgroup.data.InstanceSample` with ``image (1, Z, Y, X)`` float32 in
    [0, 1], ``instance (Z, Y, X)`` int64 and ``semantic (Z, Y, X)`` (1 on nuclei). ``options``
    go to :func:`draw_nuclei_volume`.
    """

    def __init__(self, split: str, length: int, *, seed: int = 0, **options) -> None:
        if split not in TOY3D_SPLITS:
            raise ValueError(f"toy3d splits are {', '.join(TOY3D_SPLITS)}, got {split!r}")
        self.split_index = TOY3D_SPLITS.index(split)
        self.length = length
        self.seed = seed
        self.options = options

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> InstanceSample:
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, self.split_index, index])
        volume = draw_nuclei_volume(rng, **self.options)
        instance = torch.from_numpy(volume.instance)
        return InstanceSample(
            image=torch.from_numpy(volume.image)[None],
            instance=instance,
            semantic=(instance > 0).long(),
        )
