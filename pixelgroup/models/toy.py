"""The small full-resolution residual embedding network of the toy tutorial.

A lighter take on the original ``init_resnet_toyDigitV2`` (METHOD.md §1: four stages of
bottleneck blocks up to 512 channels, all at 64 x 64), sized to train in minutes on a CPU:
a 3 x 3 stem (optionally fed two extra coordinate channels, CoordConv-style, so the embedding
can depend on where a pixel is: the toy's instances sit in fixed slots), ``num_blocks`` basic
residual blocks of ``width`` channels whose 3 x 3 convs
cycle through ``dilations`` (so the receptive field covers a whole digit and its neighbours
without any downsampling), and an :class:`~pixelgroup.models.heads.EmbeddingHead`. With
``num_classes``, a 1 x 1 conv semantic head reads the same features (the semantic task).
Stride 1 throughout: the embedding has the input's resolution.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pixelgroup._checks import check_rank, check_tensor
from pixelgroup.models.heads import EmbeddingHead, EmbeddingOutput

__all__ = ["ToyEmbeddingNet"]


def _conv_bn(cin: int, cout: int, dilation: int = 1, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
    )


class _BasicBlock(nn.Module):
    """``relu(x + bn(conv(relu(bn(conv(x))))))`` with the second conv dilated."""

    def __init__(self, width: int, dilation: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn(width, width), nn.ReLU(inplace=True), _conv_bn(width, width, dilation)
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.body(x))


class ToyEmbeddingNet(nn.Module):
    """Full-resolution residual network -> unit embedding.

    Args:
        in_channels: C of the input image.
        embedding_dim: D (3 lets the sphere be drawn).
        width: channels of every block.
        num_blocks: residual blocks.
        dilations: dilation of each block's second conv, cycled over the blocks.
        coords: append the pixel's (row, column) in [-1, 1] as two input channels.
        stride: 1 runs the blocks at full resolution; s > 1 runs them at 1/s (a stride-s
            3 x 3 conv after the stem) and adds their bilinearly upsampled output to the
            stem's full-resolution features before a final 3 x 3 conv, so borders stay sharp.
        num_classes: size of an optional 1 x 1 semantic head on the trunk, or ``None``.

    Forward: image ``(B, C, H, W)`` (any H, W) -> :class:`EmbeddingOutput` with
    ``embedding (B, D, H, W)`` (and ``semantic (B, num_classes, H, W)`` logits with a head).
    """

    def __init__(
        self,
        in_channels: int = 3,
        embedding_dim: int = 3,
        width: int = 32,
        num_blocks: int = 6,
        dilations: Sequence[int] = (1, 2, 4, 8),
        coords: bool = True,
        num_classes: int | None = None,
        stride: int = 1,
    ) -> None:
        super().__init__()
        if width < 1 or num_blocks < 0 or not dilations or min(dilations) < 1 or stride < 1:
            raise ValueError(
                f"need width >= 1, num_blocks >= 0, dilations >= 1 and stride >= 1, got "
                f"width={width}, num_blocks={num_blocks}, dilations={tuple(dilations)}, "
                f"stride={stride}"
            )
        self.in_channels, self.coords = in_channels, coords
        stem_in = in_channels + 2 * coords
        self.stem = nn.Sequential(_conv_bn(stem_in, width), nn.ReLU(inplace=True))
        self.down = (
            None
            if stride == 1
            else nn.Sequential(_conv_bn(width, width, stride=stride), nn.ReLU(inplace=True))
        )
        self.blocks = nn.Sequential(
            *(_BasicBlock(width, dilations[i % len(dilations)]) for i in range(num_blocks))
        )
        self.fuse = (
            None if stride == 1 else nn.Sequential(_conv_bn(width, width), nn.ReLU(inplace=True))
        )
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 or None, got {num_classes}")
        self.head = EmbeddingHead(width, embedding_dim)
        self.semantic = None if num_classes is None else nn.Conv2d(width, num_classes, 1)

    def forward(self, image: torch.Tensor) -> EmbeddingOutput:
        image = check_tensor(image, "image")
        check_rank(image, (4,), "image", "(B, C, H, W)")
        if image.shape[1] != self.in_channels:
            raise ValueError(
                f"image must have {self.in_channels} channels, got {image.shape[1]} "
                f"(shape {tuple(image.shape)})"
            )
        if self.coords:
            b, _, h, w = image.shape
            rows = torch.linspace(-1, 1, h, dtype=image.dtype, device=image.device)
            cols = torch.linspace(-1, 1, w, dtype=image.dtype, device=image.device)
            grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij")).expand(b, 2, h, w)
            image = torch.cat([image, grid], dim=1)
        features = self.stem(image)
        if self.down is not None and self.fuse is not None:
            coarse = self.blocks(self.down(features))
            up = F.interpolate(coarse, size=features.shape[-2:], mode="bilinear")
            features = self.fuse(features + up)
        else:
            features = self.blocks(features)
        out = self.head(features)
        if self.semantic is not None:
            out.semantic = self.semantic(features)
        return out
