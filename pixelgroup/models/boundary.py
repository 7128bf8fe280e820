"""The boundary detector of demo 2 (docs/boundaries.md): embeddings on backbone side outputs.

Each selected backbone stage s gets an embedding head (3x3 conv to D dims) whose raw output is
upsampled bilinearly to the input size and L2-normalised: a unit ``(B, D, H, W)`` embedding,
trained with the pixel-pair loss where the groups are boundary / non-boundary. A 1x1 classifier
on each embedding gives a side boundary logit, and a 1x1 classifier on their concatenation the
fused logit (the original's 2-way softmax heads, written as one logit each). The boundary map is
the mean of the S + 1 head probabilities (the original's step 5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pixelgroup.models.backbones import build_backbone
from pixelgroup.models.heads import EmbeddingHead
from pixelgroup.ops.sphere import normalize_to_sphere

__all__ = ["BoundaryOutput", "BoundaryNet"]


@dataclass
class BoundaryOutput:
    """What :class:`BoundaryNet` returns (all maps at the input size H x W).

    Attributes:
        embeddings: S unit embeddings ``(B, D, H, W)``, one per side output.
        side_logits: ``(B, S, H, W)`` boundary logits of the side classifiers.
        fused_logit: ``(B, 1, H, W)`` boundary logit of the fused classifier.
    """

    embeddings: list[torch.Tensor]
    side_logits: torch.Tensor
    fused_logit: torch.Tensor

    @property
    def logits(self) -> torch.Tensor:
        """``(B, S + 1, H, W)``: the side logits then the fused one."""
        return torch.cat([self.side_logits, self.fused_logit], dim=1)

    @property
    def boundary(self) -> torch.Tensor:
        """``(B, 1, H, W)`` boundary probability: mean of the S + 1 heads' sigmoids."""
        return torch.sigmoid(self.logits).mean(dim=1, keepdim=True)

    @property
    def embedding(self) -> torch.Tensor:
        """``(B, S * D, H, W)`` the side embeddings concatenated and re-normalised."""
        return normalize_to_sphere(torch.cat(self.embeddings, dim=1), dim=1)


class BoundaryNet(nn.Module):
    """Side-output embeddings + boundary classifiers on a registry backbone.

    Args:
        backbone: a key of :data:`pixelgroup.models.backbones.BACKBONES`.
        pretrained: load the backbone's ImageNet weights (see the backbones module).
        stages: backbone stages (0..4) with side outputs; (1, 2, 3, 4) is res2..res5.
        embedding_dim: D per side output (3 in the original).
        input_scale: resize the image by this factor before the backbone (the original: 0.5);
            every output is still returned at the input size.
        frozen_backbone: keep the pretrained backbone as loaded: its weights take no gradient
            and its BatchNorm statistics stay the stored ones (it stays in eval mode whatever
            ``train()`` says); only the heads learn. For training from one or a few images,
            where fine-tuning the backbone learns those images' textures
            (docs/real_data.md, "Boundaries: the BSDS samples"). Needs ``pretrained``.

    Forward: images ``(B, 3, H, W)`` RGB in [0, 1] -> :class:`BoundaryOutput`.

    Example::

        net = BoundaryNet("efficientnet_lite0", pretrained=True)
        prob = net(images).boundary  # (B, 1, H, W)
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        pretrained: bool = False,
        stages: tuple[int, ...] | list[int] = (1, 2, 3, 4),
        embedding_dim: int = 3,
        input_scale: float = 1.0,
        frozen_backbone: bool = False,
    ) -> None:
        super().__init__()
        stages = tuple(stages)
        if not isinstance(frozen_backbone, bool):
            raise ValueError(f"frozen_backbone must be true or false, got {frozen_backbone!r}")
        if frozen_backbone and not pretrained:
            raise ValueError(
                "frozen_backbone keeps the backbone's ImageNet weights: set pretrained: true"
            )
        if not stages or any(not isinstance(s, int) or not 0 <= s <= 4 for s in stages):
            raise ValueError(f"stages must be a non-empty list of stage indices 0..4, got {stages}")
        if not input_scale > 0:
            raise ValueError(f"input_scale must be > 0, got {input_scale}")
        self.input_scale = float(input_scale)
        self.backbone = build_backbone(backbone, pretrained=pretrained)
        self.frozen_backbone = frozen_backbone
        self.backbone.requires_grad_(not self.frozen_backbone)
        self.stages = stages
        self.embedding_dim = embedding_dim
        channels = self.backbone.out_channels
        self.heads = nn.ModuleList(EmbeddingHead(channels[s], embedding_dim) for s in stages)
        self.side_classifiers = nn.ModuleList(nn.Conv2d(embedding_dim, 1, 1) for _ in stages)
        self.fuse = nn.Conv2d(embedding_dim * len(stages), 1, 1)

    def train(self, mode: bool = True) -> BoundaryNet:
        """``nn.Module.train``; a frozen backbone stays in eval mode."""
        super().train(mode)
        if self.frozen_backbone:
            self.backbone.eval()
        return self

    def forward(self, images: torch.Tensor) -> BoundaryOutput:
        size = images.shape[-2:]
        if self.input_scale != 1.0:
            images = F.interpolate(
                images, scale_factor=self.input_scale, mode="bilinear", antialias=True
            )
        features = self.backbone(images)
        embeddings = []
        for stage, head in zip(self.stages, self.heads, strict=True):
            raw = F.interpolate(
                head(features[stage]).raw, size=size, mode="bilinear", align_corners=False
            )
            embeddings.append(normalize_to_sphere(raw, dim=1))
        side = torch.cat([c(e) for c, e in zip(self.side_classifiers, embeddings, strict=True)], 1)
        return BoundaryOutput(embeddings, side, self.fuse(torch.cat(embeddings, dim=1)))

    def extra_repr(self) -> str:
        return (
            f"stages={self.stages}, embedding_dim={self.embedding_dim}, "
            f"input_scale={self.input_scale}, frozen_backbone={self.frozen_backbone}"
        )
