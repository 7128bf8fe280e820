"""Synthetic fluorescence microscopy: touching nuclei in 16-bit TIFFs, with instance masks.

A stand-in for a user's few annotated microscopy images, with what makes real ones hard:
nuclei are ellipses of varied size (about 12-40 px across) and orientation, packed so that
many touch and some overlap a little (the later one drawn on top owns the overlap, as in a
hand-drawn label map); each has its own brightness and a textured interior (chromatin) whose
edge fades over a pixel or two; the background is uneven (a smooth illumination gradient plus
autofluorescence); the optics blur the scene (Gaussian PSF) and the camera adds Poisson (shot)
and Gaussian (read) noise. Images are stored as ``uint16`` TIFFs in a low range: the brightest
nucleus near ``max_value`` (235 as the example in docs/own_data.md, 4095 for a 12-bit camera),
so that an 8-bit assumption or a /65535 scaling leaves almost nothing for a model to see.

:func:`draw_cells` draws one image; :func:`write_cells_folder` writes the ``folder`` dataset
layout (``ROOT/{train,test}/{images,masks}/NAME.tif``) that ``pixelgroup train --config cells``
reads. Every call draws from its own ``numpy.random.Generator(seed)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.ndimage as ndi

from pixelgroup.data.partial import UNANNOTATED, hidden_ids

__all__ = ["CellImage", "draw_cells", "write_cells_folder"]


@dataclass(frozen=True)
class CellImage:
    """One synthetic image: ``image (H, W)`` uint16 and ``instance (H, W)`` uint16 ids
    (0 background, 1..K nuclei)."""

    image: np.ndarray
    instance: np.ndarray


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise scaled to zero mean, unit standard deviation."""
    field = ndi.gaussian_filter(rng.standard_normal(shape), sigma)
    return (field - field.mean()) / (field.std() + 1e-12)


def _place(
    rng: np.random.Generator, size: tuple[int, int], count: int, diameter: tuple[float, float]
) -> list[tuple[float, float, float, float, float]]:
    """Up to ``count`` ellipses ``(y, x, a, b, angle)``, diameters around the middle of the
    ``diameter`` range; two thirds are placed against an earlier one (clumps). Centres are at
    least 0.8 of the sum of the mean radii apart: neighbours touch or overlap slightly."""
    h, w = size
    lo, hi = diameter
    out: list[tuple[float, float, float, float, float]] = []
    for _ in range(count * 40):
        if len(out) == count:
            break
        r = float(np.clip(rng.normal((lo + hi) / 2, (hi - lo) / 6), lo, hi)) / 2
        elong = rng.uniform(1.0, 1.6)
        a, b = r * np.sqrt(elong), r / np.sqrt(elong)
        if out and rng.random() < 2 / 3:  # against a neighbour, at 0.8-1.0 of contact distance
            q = out[int(rng.integers(len(out)))]
            d = rng.uniform(0.8, 1.0) * (r + (q[2] + q[3]) / 2)
            t = rng.uniform(0, 2 * np.pi)
            y, x = q[0] + d * np.sin(t), q[1] + d * np.cos(t)
        else:
            y, x = rng.uniform(-r / 2, h + r / 2), rng.uniform(-r / 2, w + r / 2)
        mean_r = (a + b) / 2
        if all(np.hypot(y - q[0], x - q[1]) >= 0.8 * (mean_r + (q[2] + q[3]) / 2) for q in out):
            out.append((y, x, a, b, rng.uniform(0, np.pi)))
    return out


def draw_cells(
    rng: np.random.Generator,
    size: tuple[int, int] = (256, 256),
    *,
    count: int = 60,
    diameter: tuple[float, float] = (12.0, 36.0),
    max_value: int = 235,
    blur: float = 1.2,
    photons: float = 40.0,
    read_noise: float = 0.02,
    brightness: tuple[float, float] = (0.35, 1.0),
    irregular: float = 0.0,
) -> CellImage:
    """One ``size = (H, W)`` image of up to ``count`` nuclei ``diameter`` px across.

    ``photons`` is the expected photon count of the brightest pixel (lower: noisier),
    ``read_noise`` the Gaussian camera noise as a fraction of the brightest level, and
    ``max_value`` the stored value of the brightest level (235: the low range of a 16-bit file
    in docs/own_data.md's example; 4095: 12-bit). Each nucleus' brightness is drawn
    uniformly from ``brightness = (lo, hi)`` (of the brightest level);
    ``irregular`` > 0 bends each outline by random 2-, 3- and 4-lobed harmonics of that
    relative amplitude (bean, kidney and lobed shapes; 0: ellipses). Returns a
    :class:`CellImage`.

    Example:
        >>> cells = draw_cells(np.random.default_rng(0), (64, 64), count=4, diameter=(12, 20))
        >>> cells.image.dtype, cells.instance.shape, int(cells.instance.max()) <= 4
        (dtype('uint16'), (64, 64), True)
    """
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    signal = np.zeros(size)
    instance = np.zeros(size, dtype=np.uint16)
    chromatin = _smooth_noise(rng, size, 1.5)
    for k, (y, x, a, b, angle) in enumerate(_place(rng, size, count, diameter), start=1):
        c, s = np.cos(angle), np.sin(angle)
        u, v = (xx - x) * c + (yy - y) * s, -(xx - x) * s + (yy - y) * c
        radius = np.sqrt((u / a) ** 2 + (v / b) ** 2)  # 1 on the outline
        if irregular > 0:
            theta = np.arctan2(v / b, u / a)
            amplitude, phase = rng.uniform(0, 1, 3), rng.uniform(0, 2 * np.pi, 3)
            bend = sum(
                a_k / k * np.cos(k * theta + p_k)
                for k, a_k, p_k in zip((2, 3, 4), amplitude, phase, strict=True)
            )
            radius = radius / (1.0 + irregular * bend)
        inside = radius <= 1.0
        if not inside.any():
            continue
        edge = np.clip((1.0 - radius) * min(a, b) / 1.5, 0.0, 1.0)  # ~1.5 px fade
        level = rng.uniform(*brightness)
        texture = 1.0 + rng.uniform(0.1, 0.3) * chromatin
        value = level * edge * texture
        signal = np.where(inside, value, signal)  # drawn on top: owns the overlap
        instance[inside] = k
    illumination = 1.0 + 0.35 * _smooth_noise(rng, size, min(h, w) / 4)
    background = 0.08 + 0.04 * _smooth_noise(rng, size, 6.0).clip(-2, 2)
    clean = ndi.gaussian_filter(signal * illumination.clip(0.4, None) + background, blur)
    noisy = rng.poisson(clean.clip(0, None) * photons) / photons
    noisy = noisy + rng.normal(0.0, read_noise, size)
    image = np.clip(np.round(noisy / max(noisy.max(), 1e-12) * max_value), 0, max_value)
    # relabel 1..K in reading order, dropping ids an overlap covered completely
    ids = np.unique(instance[instance > 0])
    remap = np.zeros(int(instance.max()) + 1, dtype=np.uint16)
    remap[ids] = np.arange(1, len(ids) + 1)
    return CellImage(image.astype(np.uint16), remap[instance])


def write_cells_folder(
    root: str | Path,
    *,
    splits: dict[str, int] | None = None,
    size: tuple[int, int] = (256, 256),
    max_value: int = 235,
    seed: int = 0,
    annotated_fraction: float = 1.0,
    **options: Any,
) -> Path:
    """Write ``splits`` (default ``{"train": 2, "test": 2}``) images of ``size`` as
    ``ROOT/SPLIT/images/cells_NNN.tif`` (uint16) and ``ROOT/SPLIT/masks/cells_NNN.tif``
    (uint16 ids); ``options`` go to :func:`draw_cells`. Returns ``root``.

    Each image is drawn from ``default_rng([seed, split index, image index])``, so adding a
    split or images never changes the others. ``annotated_fraction < 1`` leaves a seeded share
    of the nuclei of every ``train`` mask unannotated (mask value
    :data:`~pixelgroup.data.partial.UNANNOTATED`; the images are the same): partial labels.
    """
    import tifffile

    root = Path(root)
    for s, (split, n) in enumerate((splits or {"train": 2, "test": 2}).items()):
        for folder in ("images", "masks"):
            (root / split / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            cells = draw_cells(
                np.random.default_rng([seed, s, i]), size, max_value=max_value, **options
            )
            tifffile.imwrite(root / split / "images" / f"cells_{i:03d}.tif", cells.image)
            mask = cells.instance
            if split == "train" and annotated_fraction < 1.0:
                ids = np.unique(mask[mask > 0])
                hidden = hidden_ids(ids, annotated_fraction, [seed, s, i, 1])
                mask = np.where(np.isin(mask, hidden), UNANNOTATED, mask).astype(mask.dtype)
            tifffile.imwrite(root / split / "masks" / f"cells_{i:03d}.tif", mask)
    return root
