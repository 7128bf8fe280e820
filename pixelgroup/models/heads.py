"""Embedding heads and the model output contract.

Every embedding model returns an :class:`EmbeddingOutput` whose ``embedding`` is unit-norm
along dim 1, shape ``(B, D, H, W)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pixelgroup.ops.spatial import fourier_frequencies, pixel_positions, spatial_embedding
from pixelgroup.ops.sphere import normalize_to_sphere

__all__ = ["EmbeddingOutput", "EmbeddingHead", "SpatialEmbeddingHead"]


@dataclass
class EmbeddingOutput:
    """What an embedding model returns.

    Attributes:
        embedding: ``(B, D, H, W)`` unit vectors along dim 1.
        raw: ``(B, D, H, W)`` the head's output before normalisation (its norm is a
            confidence some post-processing may use).
        semantic: ``(B, num_classes, H, W)`` class logits of an optional semantic head on the
            same features, or ``None`` for a model without one.
        votes: ``(B, 2, H, W)`` for a spatial embedding (:class:`SpatialEmbeddingHead`): the
            (y, x) input pixel each pixel votes for as its object's centre; else ``None``.
    """

    embedding: torch.Tensor
    raw: torch.Tensor
    semantic: torch.Tensor | None = None
    votes: torch.Tensor | None = None


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


class SpatialEmbeddingHead(nn.Module):
    """Centre votes on the unit sphere (:mod:`pixelgroup.ops.spatial`): a 3 x 3 conv ``C -> 2``
    predicts each pixel's offset to its object's centre in units of ``scale`` pixels; the vote
    (the pixel's position plus the offset) becomes a D-dim unit vector whose cosine to another
    pixel's is about ``exp(-d² / (2 scale²))`` for votes ``d`` pixels apart.

    Args:
        in_channels: C.
        embedding_dim: D, even (D / 2 Fourier frequencies).
        scale: the kernel's length l in input pixels: about 3/8 of the objects' diameter
            (touching neighbours' centres, ~2.7 l apart, have cosine ~0.03).
        stride: the features' stride in input pixels (positions of their cells' centres).

    Forward: features ``(B, C, H, W)`` -> :class:`EmbeddingOutput` with ``embedding (B, D, H,
    W)`` (``raw`` is the same tensor: already unit) and ``votes (B, 2, H, W)``; ``origin =
    (top, left)`` (input pixels) places the features' first cell in a larger image (a tile's
    window), so that votes, and the embedding, are positions in that image.
    """

    def __init__(self, in_channels: int, embedding_dim: int, scale: float, stride: int) -> None:
        super().__init__()
        if embedding_dim < 2 or embedding_dim % 2:
            raise ValueError(
                f"embedding_dim must be even and >= 2 for a spatial embedding (cos and sin of "
                f"D / 2 frequencies), got {embedding_dim}"
            )
        self.conv = nn.Conv2d(in_channels, 2, 3, padding=1, bias=True)
        nn.init.normal_(self.conv.weight, std=1e-3)
        nn.init.zeros_(self.conv.bias)  # type: ignore[arg-type]
        self.scale = float(scale)
        self.stride = stride
        frequencies = fourier_frequencies(embedding_dim // 2, self.scale).float()
        self.register_buffer("frequencies", frequencies, persistent=False)

    def forward(self, features: torch.Tensor, origin: tuple[int, int] = (0, 0)) -> EmbeddingOutput:
        offsets = self.conv(features).float() * self.scale
        positions = pixel_positions(offsets, self.stride, offsets.dtype)
        if origin != (0, 0):  # whole numbers plus pixel centres: exact, so a tile's votes
            # are the whole image's to the bit (the offsets added last, as there)
            positions = positions + offsets.new_tensor(origin)[:, None, None]
        votes = positions + offsets
        embedding = spatial_embedding(votes, self.frequencies)  # type: ignore[arg-type]
        return EmbeddingOutput(embedding=embedding, raw=embedding, votes=votes)
