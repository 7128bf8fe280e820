"""Embedding heads and the model output contract.

Every embedding model returns an :class:`EmbeddingOutput` whose ``embedding`` is unit-norm
along dim 1, shape ``(B, D, H, W)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pixelgroup.ops.sphere import normalize_to_sphere

__all__ = ["EmbeddingOutput", "EmbeddingHead"]


@dataclass
class EmbeddingOutput:
    """What an embedding model returns.

    Attributes:
        embedding: ``(B, D, H, W)`` unit vectors along dim 1.
        raw: ``(B, D, H, W)`` the head's output before normalisation (its norm is a
            confidence some post-processing may use).
        semantic: ``(B, num_classes, H, W)`` class logits of an optional semantic head on the
            same features, or ``None`` for a model without one.
    """

    embedding: torch.Tensor
    raw: torch.Tensor
    semantic: torch.Tensor | None = None


class EmbeddingHead(nn.Module):
    """3 x 3 conv with bias ``C -> D`` followed by L2 normalisation (docs/method.md).

    Forward: features ``(B, C, H, W)`` -> :class:`EmbeddingOutput` with ``(B, D, H, W)``.
    """

    def __init__(self, in_channels: int, embedding_dim: int) -> None:
        super().__init__()
        if embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
        conv = nn.Conv2d(in_channels, embedding_dim, 3, padding=1, bias=True)
        nn.init.kaiming_normal_(conv.weight, nonlinearity="linear")
        nn.init.zeros_(conv.bias)  # type: ignore[arg-type]
        self.conv = conv

    def forward(self, features: torch.Tensor) -> EmbeddingOutput:
        raw = self.conv(features)
        return EmbeddingOutput(embedding=normalize_to_sphere(raw, dim=1), raw=raw)
