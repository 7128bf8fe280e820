"""How much two label maps agree as partitions of the pixels, whatever their ids."""

from __future__ import annotations

import torch

__all__ = ["partition_agreement"]


def partition_agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fraction of the pixels of two ``(H, W)`` integer label maps on which they agree as
    partitions: a pixel agrees when its region in ``a`` and its region in ``b`` are each
    other's largest overlap (ids need not match; background is a region like the others).
    1.0 exactly when the partitions are equal. Cost O(H·W) plus the distinct pairs.

    Example:
        >>> a = torch.tensor([[1, 1, 2, 2]]); b = torch.tensor([[7, 7, 3, 5]])
        >>> partition_agreement(a, b)
        0.75
    """
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(
            f"a and b must be (H, W) label maps of one shape, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )
    pairs, counts = torch.unique(torch.stack([a.flatten(), b.flatten()]), dim=1, return_counts=True)
    if counts.numel() == 0:
        return 1.0
    agree = torch.ones(len(counts), dtype=torch.bool)
    for side in (0, 1):  # each pair must be its region's largest overlap on both sides
        _, region = torch.unique(pairs[side], return_inverse=True)
        best = torch.zeros(int(region.max()) + 1, dtype=counts.dtype).scatter_reduce(
            0, region, counts, reduce="amax"
        )
        agree &= counts == best[region]
    # ties: keep one pair per region on each side, so no pixel is counted twice
    for side in (0, 1):
        _, region = torch.unique(pairs[side], return_inverse=True)
        first = torch.full((int(region.max()) + 1,), len(counts), dtype=torch.int64)
        index = torch.where(agree, torch.arange(len(counts)), len(counts))
        first = first.scatter_reduce(0, region, index, reduce="amin")
        agree &= first[region] == torch.arange(len(counts))
    return float(counts[agree].sum()) / a.numel()
