"""A 3-D embedding network for volumes: residual dilated 3-D convolutions, a spatial embedding.

``model.name: volume`` (the ``volume`` task, ``--config toy3d``). Each voxel votes for its
object's centre in physical units (voxel positions times ``voxel_size``); the vote goes onto
the sphere as Fourier features of a 3-D Gaussian kernel of length ``spatial_scale``
(:mod:`pixelgroup.ops.spatial`), and a foreground head tells nuclei from background.

Layout: a full-resolution stem, one YX-halving step, ``num_blocks`` residual blocks of dilated
3 x 3 x 3 convolutions at half resolution (dilations 1, 2, 4, 8, ... in YX; in z divided by
the anisotropy ``voxel_size[0] / voxel_size[1]``, so the reach is about the same in physical
units), back to full resolution with the stem's features, then the heads. When z is coarse
(anisotropy >= 1.5) the stem and the step use 1 x 3 x 3 kernels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pixelgroup._checks import check_rank
from pixelgroup.models.heads import EmbeddingOutput
from pixelgroup.ops.spatial import fourier_frequencies_3d, spatial_embedding, voxel_positions

__all__ = ["VolumeEmbeddingNet"]


def _conv(
    cin: int, cout: int, kernel: tuple[int, int, int], dilation: tuple[int, int, int] = (1, 1, 1)
) -> nn.Sequential:
    padding = (
        dilation[0] * (kernel[0] // 2),
        dilation[1] * (kernel[1] // 2),
        dilation[2] * (kernel[2] // 2),
    )
    return nn.Sequential(
        nn.Conv3d(cin, cout, kernel, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm3d(cout),
        nn.ReLU(inplace=True),
    )


class _Residual(nn.Module):
    """``x + conv(conv(x))`` with a dilated 3 x 3 x 3 first convolution."""

    def __init__(self, width: int, dilation: tuple[int, int, int]) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv(width, width, (3, 3, 3), dilation), _conv(width, width, (1, 1, 1))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class VolumeEmbeddingNet(nn.Module):
    """Volumes ``(B, C, Z, Y, X)`` -> :class:`~pixelgroup.models.EmbeddingOutput` with
    ``embedding (B, D, Z, Y, X)`` (unit along dim 1), ``votes (B, 3, Z, Y, X)`` ((z, y, x)
    centre votes in the units of ``voxel_size``) and ``semantic (B, num_classes, Z, Y, X)``.

    Args:
        in_channels: C.
        width: channels of the stem (the half-resolution blocks have twice as many).
        num_blocks: residual blocks (dilations 1, 2, 4, 8, 1, 2, ... in YX).
        embedding_dim: D, even (D / 2 frequencies).
        spatial_scale: the kernel's length in the units of ``voxel_size``, about a quarter of
            the objects' diameter.
        voxel_size: ``(sz, sy, sx)``, e.g. ``[2, 1, 1]`` for z sampled twice as coarsely.
        num_classes: classes of the foreground head (2: background / object).
    """

    def __init__(
        self,
        in_channels: int = 1,
        width: int = 16,
        num_blocks: int = 4,
        embedding_dim: int = 16,
        spatial_scale: float = 4.0,
        voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
        num_classes: int = 2,
    ) -> None:
        super().__init__()
        if len(voxel_size) != 3 or min(float(v) for v in voxel_size) <= 0:
            raise ValueError(f"voxel_size must be 3 numbers > 0 (z, y, x), got {list(voxel_size)}")
        if embedding_dim < 2 or embedding_dim % 2:
            raise ValueError(f"embedding_dim must be even and >= 2, got {embedding_dim}")
        if not spatial_scale > 0:
            raise ValueError(f"spatial_scale must be > 0, got {spatial_scale}")
        if min(in_channels, width, num_classes) < 1 or num_blocks < 0:
            raise ValueError("in_channels, width, num_classes must be >= 1, num_blocks >= 0")
        self.voxel_size = (float(voxel_size[0]), float(voxel_size[1]), float(voxel_size[2]))
        self.in_channels = in_channels
        anisotropy = self.voxel_size[0] / self.voxel_size[1]
        kz = 1 if anisotropy >= 1.5 else 3
        wide = 2 * width
        self.stem = nn.Sequential(
            _conv(in_channels, width, (kz, 3, 3)), _conv(width, width, (3, 3, 3))
        )
        self.down = _conv(width, wide, (kz, 3, 3))
        blocks = []
        for i in range(num_blocks):
            d = 2 ** (i % 4)
            blocks.append(_Residual(wide, (max(1, round(d / anisotropy)), d, d)))
        self.blocks = nn.Sequential(*blocks)
        self.up = _conv(wide + width, width, (3, 3, 3))
        self.offsets = nn.Conv3d(width, 3, 1)
        nn.init.normal_(self.offsets.weight, std=1e-3)
        nn.init.zeros_(self.offsets.bias)  # type: ignore[arg-type]
        self.semantic = nn.Conv3d(width, num_classes, 1)
        self.scale = float(spatial_scale)
        frequencies = fourier_frequencies_3d(embedding_dim // 2, self.scale).float()
        self.register_buffer("frequencies", frequencies, persistent=False)

    def forward(self, images: torch.Tensor) -> EmbeddingOutput:
        check_rank(images, (5,), "images", "(B, C, Z, Y, X): a 3-D model takes volumes")
        skip = self.stem(images)
        x = F.max_pool3d(skip, (1, 2, 2), ceil_mode=True)
        x = self.blocks(self.down(x))
        x = F.interpolate(x, size=tuple(skip.shape[2:]), mode="trilinear", align_corners=False)
        features = self.up(torch.cat([x, skip], dim=1))
        offsets = self.offsets(features).float() * self.scale
        votes = voxel_positions(offsets, self.voxel_size, offsets.dtype) + offsets
        embedding = spatial_embedding(votes, self.frequencies)  # type: ignore[arg-type]
        return EmbeddingOutput(
            embedding=embedding, raw=embedding, semantic=self.semantic(features), votes=votes
        )
