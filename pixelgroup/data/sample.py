"""The sample every instance dataset yields, and batching it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["InstanceSample", "collate_instances"]


@dataclass(frozen=True)
class InstanceSample:
    """An image with instance (and optional semantic) ground truth.

    Attributes:
        image: ``(C, H, W)`` float32 in [0, 1] (or ``(B, C, H, W)`` once batched).
        instance: ``(H, W)`` int64, 0 = background, 1..K instances (``(B, H, W)`` batched).
        semantic: ``(H, W)`` int64 class ids, 0 = background (``(B, H, W)`` batched).
    """

    image: torch.Tensor
    instance: torch.Tensor
    semantic: torch.Tensor


def collate_instances(samples: Sequence[InstanceSample]) -> InstanceSample:
    """Stack samples of one size into a batch ``(B, C, H, W)`` / ``(B, H, W)``."""
    shapes = {tuple(s.image.shape) for s in samples}
    if len(shapes) != 1:
        raise ValueError(f"cannot batch images of different shapes {sorted(shapes)}; use batch 1")
    return InstanceSample(
        image=torch.stack([s.image for s in samples]),
        instance=torch.stack([s.instance for s in samples]),
        semantic=torch.stack([s.semantic for s in samples]),
    )
