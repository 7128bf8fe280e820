"""Instances of one volume's embedding: grouping on pooled voxels, labels at full resolution."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pixelgroup._checks import check_count, check_rank, check_tensor
from pixelgroup.errors import InputError
from pixelgroup.ops.sphere import normalize_to_sphere
from pixelgroup.postprocess.grouping import group_pixels
from pixelgroup.postprocess.instances import connected_parts

__all__ = ["extract_volume_instances"]

_CHUNK = 1 << 22  # elements of one block of centre cosines (16 MB in float32)


def _nearest_center(centers: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """``(N,)`` index of the ``(K, D)`` centre of largest cosine to each ``(N, D)`` point, in
    blocks of points (memory O(K·block))."""
    out = torch.empty(len(points), dtype=torch.int64, device=points.device)
    step = max(1, _CHUNK // max(1, len(centers)))
    for i in range(0, len(points), step):
        out[i : i + step] = (points[i : i + step] @ centers.T).argmax(1)
    return out


def extract_volume_instances(
    embedding: torch.Tensor,
    *,
    bandwidth: float = 0.1,
    num_iters: int = 10,
    threshold: float | None = None,
    min_area: int = 16,
    stride: int = 1,
    max_points: int | None = 1024,
    foreground: torch.Tensor | None = None,
    split_components: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One ``(D, Z, Y, X)`` unit embedding -> ``labels (Z, Y, X)`` int64 (0 background, 1..K)
    and ``scores (K,)``, the volume version of
    :func:`~pixelgroup.postprocess.extract_instances`.

    :func:`~pixelgroup.postprocess.group_pixels` groups the voxels (the ``bandwidth``,
    ``num_iters``, ``threshold`` and ``max_points`` there; the grouping is dimension-free);
    with ``stride`` s > 1 it runs on the 1 x s x s average-pooled (re-normalised) embedding
    (YX only: z is usually the coarse axis) and every voxel then takes the group whose centre
    is nearest in cosine to its own embedding. ``foreground``: a ``(Z, Y, X)`` probability (or
    bool mask); voxels where it is <= 0.5 are background and only the others are grouped.
    Without it the largest group is the background. ``min_area`` is in voxels of the volume:
    smaller groups join the nearest kept group. ``split_components``: every instance is split
    into its 6-connected components, those under ``min_area`` voxels becoming background.

    Example:
        >>> emb = torch.zeros(3, 4, 8, 8); emb[0] = 1; emb[0, :2, :4, :4] = 0
        >>> emb[1, :2, :4, :4] = 1
        >>> labels, scores = extract_volume_instances(emb, num_iters=0, min_area=1)
        >>> labels.unique().tolist(), tuple(labels.shape), scores.shape
        ([0, 1], (4, 8, 8), torch.Size([1]))
    """
    stride = check_count(stride, "stride")
    embedding = check_tensor(embedding, "embedding")
    check_rank(embedding, (4,), "embedding", "(D, Z, Y, X)")
    d, z, y, x = (int(n) for n in embedding.shape)
    fg = None
    if foreground is not None:
        foreground = check_tensor(foreground, "foreground")
        if tuple(foreground.shape) != (z, y, x):
            raise InputError(
                f"foreground must be (Z, Y, X) = {(z, y, x)} like the embedding, "
                f"got {tuple(foreground.shape)}"
            )
        fg = foreground.to(embedding.device, embedding.dtype).clamp(0.0, 1.0)
    small, small_fg = embedding, fg
    if stride > 1:
        pooled = F.avg_pool3d(embedding[None], (1, stride, stride), ceil_mode=True)
        small = normalize_to_sphere(pooled, dim=1)[0]
        if fg is not None:
            small_fg = F.avg_pool3d(fg[None, None], (1, stride, stride), ceil_mode=True)[0, 0]
    grid = tuple(int(n) for n in small.shape[1:])
    scale = grid[0] * grid[1] * grid[2] / (z * y * x)
    grouping = group_pixels(
        small.reshape(d, grid[0], grid[1] * grid[2]),
        bandwidth=bandwidth,
        num_iters=num_iters,
        threshold=threshold,
        min_area=max(1, round(min_area * scale)),
        semantic_mask=None if small_fg is None else small_fg.reshape(grid[0], -1) > 0.5,
        max_points=max_points,
    )
    num = len(grouping.scores)
    # background: the largest group without a foreground map (label 0), the non-foreground else
    background = 0 if fg is None else grouping.background
    group = grouping.labels.reshape(grid)
    if stride > 1:
        allowed = torch.ones(num, dtype=torch.bool, device=embedding.device)
        if background is not None:
            allowed[background] = False
        group = torch.full((z, y, x), -1 if fg is not None else 0, dtype=torch.int64)
        group = group.to(embedding.device)
        mask = (
            torch.ones(z, y, x, dtype=torch.bool, device=embedding.device)
            if fg is None
            else fg > 0.5
        )
        ids = torch.nonzero(allowed).flatten()
        if len(ids):
            points = embedding.flatten(1).T[mask.flatten()]
            centers = grouping.centers.to(embedding.device, embedding.dtype)[ids]
            if fg is None:  # the background group competes too
                ids = torch.arange(num, device=embedding.device)
                centers = grouping.centers.to(embedding.device, embedding.dtype)
            group[mask] = ids[_nearest_center(centers, points)]
    # background (and "not foreground", -1) -> 0; the instance groups present -> 1..K
    remap = torch.zeros(num + 1, dtype=torch.int64, device=group.device)
    present = torch.bincount(group.flatten() + 1, minlength=num + 1) > 0
    present[0] = False
    if background is not None:
        present[background + 1] = False
    kept = torch.nonzero(present).flatten()
    remap[kept] = torch.arange(1, len(kept) + 1, device=group.device)
    labels = remap[group + 1]
    scores = grouping.scores[(kept - 1).to(grouping.scores.device)]
    if split_components:
        return connected_parts(labels, scores, min_area)
    return labels, scores
