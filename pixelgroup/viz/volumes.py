"""A volume's instances in three orthogonal slices (XY, XZ, YZ through the volume's centre)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pixelgroup.viz.colors import overlay
from pixelgroup.viz.figures import pyplot, save_figure

__all__ = ["orthogonal_slices"]


def _grey(plane: np.ndarray) -> np.ndarray:
    return np.repeat(np.clip(plane, 0.0, 1.0)[..., None], 3, axis=2)


def orthogonal_slices(
    image: np.ndarray,
    labels: np.ndarray | Sequence[np.ndarray],
    path: str | Path,
    *,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    titles: Sequence[str] = ("predicted",),
    title: str = "",
    center: Sequence[int] | None = None,
) -> Path:
    """PNG of ``image (Z, Y, X)`` in [0, 1] with each label stack of ``labels`` (one ``(Z, Y,
    X)`` array, or several: one row each, named by ``titles``) over it, in the XY, XZ and YZ
    planes through ``center`` (default the middle voxel); z drawn ``voxel_size[0] /
    voxel_size[1]`` times taller than a YX voxel, so shapes look as they are. Returns ``path``.
    """
    image = np.asarray(image, dtype=np.float64)
    stacks = [np.asarray(labels)] if np.ndim(labels[0]) == 2 else [np.asarray(s) for s in labels]
    if image.ndim != 3 or any(s.shape != image.shape for s in stacks):
        raise ValueError(
            f"image and labels must be (Z, Y, X) of one shape, got {image.shape} and "
            f"{[s.shape for s in stacks]}"
        )
    if len(titles) != len(stacks):
        raise ValueError(f"need one title per label stack: {len(stacks)}, got {len(titles)}")
    z, y, x = center if center is not None else [n // 2 for n in image.shape]
    aspect = float(voxel_size[0]) / float(voxel_size[1])
    plt = pyplot()
    depth, height, width = image.shape
    ratios = [width, width, height]
    fig, axes = plt.subplots(
        len(stacks),
        3,
        figsize=(2.5 * sum(ratios) / width, 2.6 * len(stacks) * (height / width)),
        squeeze=False,
        gridspec_kw={"width_ratios": ratios},
    )
    for r, (stack, name) in enumerate(zip(stacks, titles, strict=True)):
        planes = [
            (image[z], stack[z], f"XY (z={z})", 1.0),
            (image[:, y], stack[:, y], f"XZ (y={y})", aspect),
            (image[:, :, x], stack[:, :, x], f"YZ (x={x})", aspect),
        ]
        for c, (plane, lab, label, ratio) in enumerate(planes):
            ax = axes[r, c]
            ax.imshow(overlay(_grey(plane), lab), interpolation="nearest", aspect=ratio)
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"{name}: {label}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=8)
    return save_figure(fig, path)
