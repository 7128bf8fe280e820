"""Label maps at the embedding's resolution."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["resize_labels"]


def resize_labels(labels: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Nearest-neighbour resize of integer label maps ``(B, H, W)`` to ``(B, h, w)`` (label
    volumes ``(B, Z, Y, X)`` to ``size = (z, y, x)`` alike).

    Labels are never interpolated (no new ids appear); a map already of ``size`` is returned
    unchanged. The original down-samples instance GT x1/4 by nearest neighbour
    (docs/method.md, "Embedding").
    """
    if tuple(labels.shape[1:]) == tuple(size):
        return labels
    resized = F.interpolate(labels[:, None].double(), size=size, mode="nearest-exact")
    return resized[:, 0].to(labels.dtype)
