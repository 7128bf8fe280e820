"""The dilated-ResNet embedding model: contract, strides, semantic head, weights, errors."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import resnet50

from pixelgroup.models import EmbeddingOutput, build_model
from pixelgroup.models.dense import DenseEmbeddingNet


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return DenseEmbeddingNet(
        "efficientnet_lite0", embedding_dim=16, num_classes=21, head_channels=32
    )


def test_forward_backward_unit_norm(net, device):
    model = net.to(device)
    out = model(torch.rand(2, 3, 64, 48, device=device))
    assert isinstance(out, EmbeddingOutput)
    assert out.embedding.shape == (2, 16, 8, 6) and out.embedding.device.type == device.type
    assert out.semantic.shape == (2, 21, 8, 6)
    norms = out.embedding.norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-3)
    (out.embedding.sum() + out.semantic.sum()).backward()
    assert all(p.grad is not None for p in model.backbone.parameters())
    model.zero_grad(set_to_none=True)
    net.cpu()


def test_strides_and_odd_sizes():
    torch.manual_seed(0)
    m4 = DenseEmbeddingNet("efficientnet_lite0", embedding_stride=4, head_channels=16).eval()
    with torch.no_grad():
        out = m4(torch.rand(1, 3, 37, 53))
    assert out.embedding.shape == (1, 64, 10, 14) and out.semantic is None
    m16 = DenseEmbeddingNet("resnet50", output_stride=16, head_channels=16).eval()
    with torch.no_grad():
        assert m16(torch.rand(1, 3, 32, 48)).embedding.shape == (1, 64, 2, 3)


def test_registry_and_state_dict_round_trip(net, tmp_path):
    built = build_model(
        "dense", backbone="efficientnet_lite0", embedding_dim=16, num_classes=21, head_channels=32
    )
    built.load_state_dict(net.state_dict())
    net.eval(), built.eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(net(x).embedding, built(x).embedding)
    net.train()
    assert "output_stride=8" in repr(net)


def test_loads_local_backbone_weights(tmp_path):
    torch.manual_seed(1)
    reference = resnet50()
    path = tmp_path / "resnet50.pth"
    torch.save(reference.state_dict(), path)
    model = DenseEmbeddingNet("resnet50", weights=path, head_channels=8)
    assert torch.equal(model.backbone.stem[0].weight, reference.conv1.weight)
    assert torch.equal(model.backbone.layers[3][0].conv2.weight, reference.layer4[0].conv2.weight)
    torch.save({"conv1.weight": reference.conv1.weight}, path)
    with pytest.raises(ValueError, match="does not match the backbone"):
        DenseEmbeddingNet("resnet50", weights=path)


def test_errors(net):
    with pytest.raises(KeyError, match="valid backbones: resnet50, resnet101, efficientnet_lite0"):
        DenseEmbeddingNet("vgg")
    with pytest.raises(ValueError, match="output_stride must be 8 or 16"):
        DenseEmbeddingNet(output_stride=32)
    with pytest.raises(ValueError, match="embedding_stride must be 4 or output_stride"):
        DenseEmbeddingNet(embedding_stride=2)
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        DenseEmbeddingNet(num_classes=0)
    with pytest.raises(ValueError, match="needs a ResNet"):
        DenseEmbeddingNet("efficientnet_lite0", weights="r50.pth")
    with pytest.raises(FileNotFoundError, match="backbone weights not found"):
        DenseEmbeddingNet("resnet50", weights="/nonexistent/r50.pth")
    with pytest.raises(ValueError, match="images must have 3 channels"):
        net(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"images must have shape \(B, 3, H, W\)"):
        net(torch.rand(3, 32, 32))


def test_frozen_backbone_gets_no_gradient_and_stays_in_eval():
    torch.manual_seed(0)
    model = DenseEmbeddingNet(
        "efficientnet_lite0", head_channels=8, embedding_dim=4, freeze_backbone=True
    )
    model.train()
    assert not model.backbone.training and model.reduce.training
    model(torch.rand(2, 3, 32, 32)).embedding.sum().backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model.embed.conv.weight.grad is not None


def test_frozen_stages_keep_their_batch_norm_statistics():
    """Frozen stages use FrozenBatchNorm2d: a train-mode step at batch size 1 leaves their
    statistics alone (plain requires_grad=False did not) and no gradient reaches them."""
    from torchvision.ops.misc import FrozenBatchNorm2d

    net = DenseEmbeddingNet("resnet50", embedding_dim=4, head_channels=8, frozen_stages=2)
    stem_bn, res2_bn = net.backbone.stem[1], net.backbone.layers[0][0].bn1
    res3_bn = net.backbone.layers[1][0].bn1
    assert isinstance(stem_bn, FrozenBatchNorm2d) and isinstance(res2_bn, FrozenBatchNorm2d)
    assert isinstance(res3_bn, torch.nn.BatchNorm2d)
    before = stem_bn.running_mean.clone(), res2_bn.running_var.clone()
    net.train()
    net(torch.rand(1, 3, 32, 32)).embedding.sum().backward()
    assert torch.equal(stem_bn.running_mean, before[0])
    assert torch.equal(res2_bn.running_var, before[1])
    assert all(p.grad is None for p in net.backbone.layers[0].parameters())
    assert net.backbone.layers[1][0].conv1.weight.grad is not None


def test_frozen_stages_load_weights_saved_before_freezing(tmp_path):
    """A state dict of the unfrozen model (with BatchNorm's num_batches_tracked) loads into
    the frozen one, as checkpoints written before frozen_stages became a model argument do."""
    from pixelgroup.engine.checkpoint import load_weights

    plain = DenseEmbeddingNet("resnet50", embedding_dim=4, head_channels=8)
    frozen = DenseEmbeddingNet("resnet50", embedding_dim=4, head_channels=8, frozen_stages=3)
    load_weights(frozen, plain.state_dict(), tmp_path / "old.pt")
    assert torch.equal(frozen.backbone.stem[1].weight, plain.backbone.stem[1].weight)


@pytest.mark.parametrize("bad", [-1, 6, True, "2"])
def test_frozen_stages_errors(bad):
    with pytest.raises(ValueError, match="frozen_stages must be an int in 0..5"):
        DenseEmbeddingNet("resnet50", embedding_dim=4, head_channels=8, frozen_stages=bad)


def test_frozen_stages_need_a_resnet():
    with pytest.raises(ValueError, match="frozen_stages needs a ResNet backbone"):
        DenseEmbeddingNet("efficientnet_lite0", embedding_dim=4, head_channels=8, frozen_stages=1)
