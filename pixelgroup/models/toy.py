"""The small full-resolution residual embedding network of the toy tutorial.

A lighter take on the original ``init_resnet_toyDigitV2`` (docs/method.md: four stages of
bottleneck blocks up to 512 channels, all at 64 x 64), sized to train in minutes on a CPU:
a 3 x 3 stem (optionally fed two extra coordinate channels, CoordConv-style, so the embedding
can depend on where a pixel is: the toy's instances sit in fixed slots), ``num_blocks`` basic
residual blocks of ``width`` channels whose 3 x 3 convs
cycle through ``dilations`` (so the receptive field covers a whole digit and its neighbours
without any downsampling), and an :class:`~pixelgroup.models.heads.EmbeddingHead`. With
``num_classes``, a 1 x 1 conv semantic head reads the same features (the semantic task).
The embedding has the input's resolution. Weights and activations are channels-last
(``torch.channels_last``): on CPU, oneDNN's convolutions then need no layout reorders, which made
a training step of the toy recipe's network 1.6x faster (benchmarks/toy_train_step.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pixelgroup._checks import check_rank, check_tensor
from pixelgroup.models.heads import EmbeddingHead, EmbeddingOutput

__all__ = ["ToyEmbeddingNet"]


def _conv_bn(cin: int, cout: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
    )


def _coords(n: int, like: torch.Tensor) -> torch.Tensor:
    """``torch.linspace(-1, 1, n)`` in ``like``'s dtype and device (``[-1]`` for n = 1).

    Traced (ONNX / TorchScript export) it is written with ``arange``: the exported linspace
    divides by n - 1, which onnxruntime turns into NaN for a 1-pixel-wide image.
    """
    if not torch.jit.is_tracing():
        return torch.linspace(-1, 1, n, dtype=like.dtype, device=like.device)
    steps = torch.arange(n, dtype=like.dtype, device=like.device)
    return steps * 2 / steps[-1:].clamp(min=1) - 1


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
        num_classes: size of an optional 1 x 1 semantic head on the trunk, or ``None``.

    Forward: image ``(B, C, H, W)`` (any H, W) -> :class:`EmbeddingOutput` with
    ``embedding (B, D, H, W)`` (and ``semantic (B, num_classes, H, W)`` logits with a head).
    ``crop = (top, left, H_full, W_full)`` says the image is that crop of a larger image (a
    tile): the coordinate channels are then the larger image's, so tiles agree with it.
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
    ) -> None:
        super().__init__()
        if width < 1 or num_blocks < 0 or not dilations or min(dilations) < 1:
            raise ValueError(
                f"need width >= 1, num_blocks >= 0 and dilations >= 1, got width={width}, "
                f"num_blocks={num_blocks}, dilations={tuple(dilations)}"
            )
        self.in_channels, self.coords = in_channels, coords
        stem_in = in_channels + 2 * coords
        self.stem = nn.Sequential(_conv_bn(stem_in, width), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(
            *(_BasicBlock(width, dilations[i % len(dilations)]) for i in range(num_blocks))
        )
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 or None, got {num_classes}")
        self.head = EmbeddingHead(width, embedding_dim)
        self.semantic = None if num_classes is None else nn.Conv2d(width, num_classes, 1)
        self.to(memory_format=torch.channels_last)

    def forward(
        self, image: torch.Tensor, crop: tuple[int, int, int, int] | None = None
    ) -> EmbeddingOutput:
        image = check_tensor(image, "image")
        check_rank(image, (4,), "image", "(B, C, H, W)")
        if image.shape[1] != self.in_channels:
            raise ValueError(
                f"image must have {self.in_channels} channels, got {image.shape[1]} "
                f"(shape {tuple(image.shape)})"
            )
        if self.coords:
            b, _, h, w = image.shape
            if crop is None:
                rows, cols = _coords(h, image), _coords(w, image)
            else:
                top, left, full_h, full_w = crop
                rows = _coords(full_h, image)[top : top + h]
                cols = _coords(full_w, image)[left : left + w]
            grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij")).expand(b, 2, h, w)
            image = torch.cat([image, grid], dim=1)
        features = self.blocks(self.stem(image.contiguous(memory_format=torch.channels_last)))
        out = self.head(features)
        if self.semantic is not None:
            out.semantic = self.semantic(features)
        return out
