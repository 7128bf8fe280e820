"""U-Net embedding network: an embedding at stride 1 or 2 for small, touching objects.

Nuclei ~24 px across at a stride-4 embedding are ~6 embedding pixels wide and the pixels
between two touching ones are blends of both; a U-Net decoder brings the features back to the
input's resolution, so every object keeps hundreds of embedding pixels and a sharp border.

Two encoders (``encoder``):

* ``"scratch"``: ``depth`` levels of two 3 x 3 conv-BN-ReLU, ``width`` x 2^level channels,
  2 x 2 max-pooling between levels (Ronneberger et al.'s U-Net, as StarDist's); embedding at
  stride 1. Trains from nothing in minutes on a CPU.
* ``"efficientnet_lite0"``: the ImageNet-pretrained backbone of
  :mod:`pixelgroup.models.backbones` (stages at strides 2..32), ``depth`` of its stages read;
  embedding at stride 2 (its finest stage).

The decoder goes up one level at a time: bilinear 2x upsampling, concatenation with the
encoder's map of that level, two 3 x 3 conv-BN-ReLU of the level's width. On the last map an
:class:`~pixelgroup.models.heads.EmbeddingHead` gives the unit D-dim embedding and an optional
1 x 1 conv the semantic logits (``num_classes: 2``, a foreground head).

Weights and activations are channels-last (1.5x faster training steps on a CPU, as
:mod:`pixelgroup.models.toy`). Input: ``(B, 3, H, W)`` in [0, 1]; any H, W (padded up to a
multiple of the coarsest stride inside, cropped back). Output:
:class:`~pixelgroup.models.heads.EmbeddingOutput` with
``embedding (B, D, ceil(H / s), ceil(W / s))``, s the ``embedding_stride`` (1 or 2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pixelgroup._checks import check_rank, check_tensor
from pixelgroup.models.backbones import build_backbone
from pixelgroup.models.heads import EmbeddingHead, EmbeddingOutput, SpatialEmbeddingHead

__all__ = ["UNetEmbeddingNet", "ENCODERS", "EMBEDDINGS"]

ENCODERS = ("scratch", "efficientnet_lite0")
"""Values of ``encoder``."""
SPATIAL_SCALE = 6.0
"""Default ``spatial_scale`` in pixels (nuclei ~24 px across)."""
EMBEDDINGS = ("free", "spatial")
"""Values of ``embedding``: a learned direction per pixel (:class:`EmbeddingHead`) or a vote for
its object's centre mapped onto the sphere (:class:`SpatialEmbeddingHead`)."""


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class _ScratchEncoder(nn.Module):
    """``depth`` levels of :func:`_double_conv`, widths ``width * 2**i``, strides ``2**i``."""

    def __init__(self, width: int, depth: int) -> None:
        super().__init__()
        widths = [width * 2**i for i in range(depth)]
        self.levels = nn.ModuleList(
            _double_conv(cin, cout) for cin, cout in zip([3, *widths[:-1]], widths, strict=True)
        )
        self.out_channels = tuple(widths)
        self.strides = tuple(2**i for i in range(depth))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for i, level in enumerate(self.levels):
            x = level(x if i == 0 else F.max_pool2d(x, 2))
            features.append(x)
        return features


class _PretrainedEncoder(nn.Module):
    """The first ``depth`` stages of an ImageNet backbone (strides 2, 4, ...)."""

    def __init__(self, name: str, depth: int, pretrained: bool) -> None:
        super().__init__()
        self.backbone = build_backbone(name, pretrained=pretrained)
        self.depth = depth
        self.out_channels = tuple(self.backbone.out_channels[:depth])
        self.strides = tuple(self.backbone.strides[:depth])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.backbone(x)[: self.depth]


class UNetEmbeddingNet(nn.Module):
    """U-Net pixel embedding (see the module docstring).

    Args:
        encoder: ``"scratch"`` (stride-1 embedding) or ``"efficientnet_lite0"`` (stride 2,
            pretrained weights offline with ``pretrained=True``).
        embedding_dim: D.
        width: channels of the first level (``scratch``); the decoder's level i has
            ``width * 2**i`` channels (``scratch``) or the encoder's (pretrained).
        depth: encoder levels read (2..5 for ``efficientnet_lite0``; 2..6 for ``scratch``).
        num_classes: size of a 1 x 1 semantic head (2: foreground), or ``None``.
        pretrained: ImageNet weights for a pretrained encoder.
        embedding: ``"free"`` (a learned unit vector per pixel, the paper's) or ``"spatial"``
            (each pixel votes for its object's centre; the vote is mapped onto the sphere so
            that far-apart objects are apart whatever they look like: the choice for many
            similar small objects such as nuclei; the output carries ``votes``).
        spatial_scale: the spatial kernel's length in input pixels, about 3/8 of the
            objects' diameter (``embedding: spatial`` only).

    Forward: images ``(B, 3, H, W)`` -> :class:`EmbeddingOutput`, ``embedding (B, D, H_e,
    W_e)`` with ``H_e = ceil(H / embedding_stride)``. ``crop = (top, left, H_full, W_full)``
    says the images are that crop of larger images (a tile): a spatial embedding's votes are
    then positions in the larger image, so tiles agree with it.

    Cost (``scratch``, width 32, depth 4): about 7.8 GFLOPs per 256 x 256 image.

    Example:
        >>> net = UNetEmbeddingNet(embedding_dim=8, width=8, depth=3, num_classes=2)
        >>> out = net(torch.rand(1, 3, 30, 41))
        >>> tuple(out.embedding.shape), tuple(out.semantic.shape)
        ((1, 8, 30, 41), (1, 2, 30, 41))
    """

    def __init__(
        self,
        encoder: str = "scratch",
        embedding_dim: int = 16,
        width: int = 32,
        depth: int = 4,
        num_classes: int | None = None,
        pretrained: bool = False,
        embedding: str = "free",
        spatial_scale: float = SPATIAL_SCALE,
    ) -> None:
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}, got {encoder!r}")
        top = 6 if encoder == "scratch" else 5
        if isinstance(depth, bool) or not isinstance(depth, int) or not 2 <= depth <= top:
            raise ValueError(f"depth must be an int in 2..{top} for {encoder}, got {depth!r}")
        if embedding not in EMBEDDINGS:
            raise ValueError(f"embedding must be one of {', '.join(EMBEDDINGS)}, got {embedding!r}")
        if (
            isinstance(spatial_scale, bool)
            or not isinstance(spatial_scale, (int, float))
            or not (0 < spatial_scale < float("inf"))
        ):
            raise ValueError(f"spatial_scale must be a length > 0 in pixels, got {spatial_scale!r}")
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 or None, got {num_classes}")
        self.encoder: nn.Module = (
            _ScratchEncoder(width, depth)
            if encoder == "scratch"
            else _PretrainedEncoder(encoder, depth, pretrained)
        )
        chans: tuple[int, ...] = self.encoder.out_channels  # type: ignore[assignment]
        strides: tuple[int, ...] = self.encoder.strides  # type: ignore[assignment]
        self.embedding_stride = strides[0]
        self.multiple = strides[-1]
        self.decoder = nn.ModuleList(
            _double_conv(chans[i + 1] + chans[i], chans[i]) for i in reversed(range(depth - 1))
        )
        self.head: nn.Module = (
            EmbeddingHead(chans[0], embedding_dim)
            if embedding == "free"
            else SpatialEmbeddingHead(
                chans[0], embedding_dim, float(spatial_scale), self.embedding_stride
            )
        )
        self.semantic = None if num_classes is None else nn.Conv2d(chans[0], num_classes, 1)
        self.to(memory_format=torch.channels_last)  # oneDNN convs without reorders on CPU

    def forward(
        self, images: torch.Tensor, crop: tuple[int, int, int, int] | None = None
    ) -> EmbeddingOutput:
        images = check_tensor(images, "images")
        check_rank(images, (4,), "images", "(B, 3, H, W)")
        if images.shape[1] != 3:
            raise ValueError(f"images must have 3 channels (RGB), got {images.shape[1]}")
        h, w = images.shape[2], images.shape[3]  # not int(): a traced graph keeps them dynamic
        m = self.multiple
        x = F.pad(images, (0, -w % m, 0, -h % m), mode="replicate")
        x = x.contiguous(memory_format=torch.channels_last)
        features = self.encoder(x)
        x = features[-1]
        for up, skip in zip(self.decoder, reversed(features[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[2:], mode="bilinear", align_corners=False)
            x = up(torch.cat([x, skip], dim=1))
        s = self.embedding_stride
        x = x[:, :, : -(-h // s), : -(-w // s)]
        if isinstance(self.head, SpatialEmbeddingHead) and crop is not None:
            out = self.head(x, origin=(crop[0], crop[1]))
        else:
            out = self.head(x)
        out.semantic = None if self.semantic is None else self.semantic(x)
        return out
