"""The centre-vote loss of a spatial embedding: every pixel of an object votes for its centroid.

For votes ``v_p`` (the (y, x) position each pixel names as its object's centre,
:class:`pixelgroup.models.heads.SpatialEmbeddingHead`) and the ground truth's instance
centroids ``c_k`` (in input pixels, from the full-resolution label map)::

    L = mean over instances k of  mean over pixels p of k  of  |v_p - c_k| / scale

instance-aware like the pair loss: a small object weighs as much as a large one. The distance
is Euclidean (an L1-like pull: the same force at any distance, so far-off votes are not
ignored as they are by the pair loss once the spatial kernel's cosine is ~0). Background (0)
and ignored pixels take no part. Volumes: ``(z, y, x)`` votes and centroids in physical units
(voxel positions times the voxel ``spacing``, :func:`~pixelgroup.ops.spatial.voxel_positions`).
"""

from __future__ import annotations

import torch

from pixelgroup._checks import check_rank, check_tensor
from pixelgroup.ops.labels import resize_labels
from pixelgroup.ops.spatial import pixel_positions, voxel_positions

__all__ = ["center_vote_loss"]


def _object_keys(
    labels: torch.Tensor, span: int, ignore_index: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One key per (image, instance) of ``labels (B, H, W)`` (or ``(B, Z, Y, X)``): the image
    index times ``span`` (largest id + 1) plus the id, and the mask of object pixels (id > 0,
    not ``ignore_index``) of the labels' shape."""
    keep = labels > 0 if ignore_index is None else (labels > 0) & (labels != ignore_index)
    image = torch.arange(labels.shape[0], device=labels.device).view(-1, *[1] * (labels.dim() - 1))
    return image * span + labels, keep


def center_vote_loss(
    votes: torch.Tensor,
    labels: torch.Tensor,
    scale: float,
    ignore_index: int | None = 255,
    *,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> torch.Tensor:
    """Mean distance in units of ``scale`` pixels between votes and their instance's centroid.

    Args:
        votes: ``(B, 2, h, w)`` (y, x) in input pixels, the map at stride ``H / h``; or of a
            volume ``(B, 3, Z, Y, X)`` (z, y, x) in physical units, at the labels' resolution.
        labels: ``(B, H, W)`` (or ``(B, Z, Y, X)``) integer instance ids, 0 background;
            ``ignore_index`` skipped.
        scale: > 0, the unit of the loss in pixels (physical units for a volume).
        spacing: a volume's voxel size ``(sz, sy, sx)`` in the votes' units.

    Returns:
        ``()`` tensor in the votes' dtype: the mean over the batch's instances (each the mean
        over its pixels at the votes' resolution); 0 (with a gradient path) when there is none.

    Example:
        >>> labels = torch.zeros(1, 4, 4, dtype=torch.long); labels[0, :2, :2] = 1
        >>> votes = torch.zeros(1, 2, 4, 4); votes[0, :, :2, :2] = 0.5  # the centroid
        >>> round(float(center_vote_loss(votes, labels, 1.0)), 4)
        0.0
    """
    votes = check_tensor(votes, "votes")
    check_rank(votes, (4, 5), "votes", "(B, 2, h, w) or (B, 3, Z, Y, X)")
    labels = check_tensor(labels, "labels")
    volume = votes.dim() == 5
    check_rank(labels, (votes.dim() - 1,), "labels", "(B, Z, Y, X)" if volume else "(B, H, W)")
    if volume and tuple(votes.shape[2:]) != tuple(labels.shape[1:]):
        raise ValueError(
            f"votes (B, 3, Z, Y, X) must be at the labels' resolution {tuple(labels.shape[1:])}, "
            f"got {tuple(votes.shape)}"
        )
    b, dims = int(votes.shape[0]), int(votes.shape[1])
    grid, big = tuple(votes.shape[2:]), tuple(labels.shape[1:])
    labels = labels.to(votes.device)
    span = int(labels.max()) + 1
    keys, keep = _object_keys(labels, span, ignore_index)
    if not bool(keep.any()):
        return votes.sum() * 0.0
    ids, inverse = torch.unique(keys[keep], return_inverse=True)
    if volume:
        positions = voxel_positions(labels, spacing, dtype=votes.dtype)
    else:
        positions = pixel_positions(labels, dtype=votes.dtype)
    last = (0, *range(2, dims + 2), 1)  # channels last
    points = positions[None].expand(b, *positions.shape).permute(last)[keep]  # (N, dims)
    sums = votes.new_zeros(len(ids), dims).index_add_(0, inverse, points)
    counts = torch.bincount(inverse, minlength=len(ids)).to(votes.dtype)
    centroids = sums / counts[:, None]
    # votes at their own resolution, labelled by the nearest-resized map
    small = resize_labels(labels, grid) if grid != big else labels
    small_keys, small_keep = _object_keys(small, span, ignore_index)
    slot = torch.searchsorted(ids, small_keys[small_keep])
    found = (slot < len(ids)) & (ids[slot.clamp_max(len(ids) - 1)] == small_keys[small_keep])
    slot = slot[found]
    v = votes.permute(last)[small_keep][found]  # (n, dims)
    if len(slot) == 0:
        return votes.sum() * 0.0
    distance = ((v - centroids[slot]) ** 2).sum(1).add(1e-12).sqrt() / scale
    per_instance = votes.new_zeros(len(ids)).index_add_(0, slot, distance)
    pixels = torch.bincount(slot, minlength=len(ids)).to(votes.dtype)
    present = pixels > 0
    return (per_instance[present] / pixels[present]).mean()
