"""BoundaryNet: output contract, odd sizes, backward, registry, save/load."""

from __future__ import annotations

import pytest
import torch

from pixelgroup.errors import ConfigError
from pixelgroup.models import build_model
from pixelgroup.models.boundary import BoundaryNet


@pytest.fixture(scope="module")
def net() -> BoundaryNet:
    torch.manual_seed(0)
    return BoundaryNet("resnet50", stages=(0, 1, 2, 3, 4), embedding_dim=3)


@pytest.mark.parametrize("size", [(37, 53)])
def test_output_contract(net, size):
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        out = net.eval()(x)
    s = len(net.stages)
    assert len(out.embeddings) == s
    for e in out.embeddings:
        assert e.shape == (2, 3, *size)
        norm = e.norm(dim=1)  # x / (|x| + 1e-5): unit up to the eps
        assert float(norm.max()) <= 1 + 1e-6 and float(norm.min()) > 0.99
    assert out.side_logits.shape == (2, s, *size)
    assert out.fused_logit.shape == (2, 1, *size)
    assert out.logits.shape == (2, s + 1, *size)
    prob = out.boundary
    assert prob.shape == (2, 1, *size) and 0 <= float(prob.min()) <= float(prob.max()) <= 1
    torch.testing.assert_close(prob, torch.sigmoid(out.logits).mean(1, keepdim=True))
    assert out.embedding.shape == (2, 3 * s, *size)


def test_backward_reaches_backbone_and_heads(net):
    net.train()
    out = net(torch.rand(1, 3, 32, 48))
    (out.logits.mean() + sum(e[:, 0].mean() for e in out.embeddings)).backward()
    assert net.backbone.stem[0].weight.grad is not None
    assert all(h.conv.weight.grad is not None for h in net.heads)
    assert net.fuse.weight.grad is not None
    net.zero_grad()


def test_not_in_the_embedding_registry_and_state_dict_round_trip(tmp_path):
    with pytest.raises(ConfigError, match="unknown model 'boundary'; valid models: dense, toy"):
        build_model("boundary")
    a = BoundaryNet("resnet50", stages=[3, 4], embedding_dim=2).eval()
    assert isinstance(a, BoundaryNet) and a.stages == (3, 4)
    torch.save(a.state_dict(), tmp_path / "w.pt")
    b = BoundaryNet("resnet50", stages=(3, 4), embedding_dim=2).eval()
    b.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True))
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(a(x).boundary, b(x).boundary)


def test_bad_arguments():
    with pytest.raises(ValueError, match="stages must be a non-empty list of stage indices 0..4"):
        BoundaryNet("resnet50", stages=(1, 5))
    with pytest.raises(ValueError, match="stages must be a non-empty list"):
        BoundaryNet("resnet50", stages=())
    with pytest.raises(KeyError, match="unknown backbone"):
        BoundaryNet("alexnet")


def test_efficientnet_side_outputs():
    pytest.importorskip("timm", reason="timm (extra efficientnet) not installed")
    net = BoundaryNet("efficientnet_lite0", stages=(0, 1, 2, 3, 4)).eval()
    out = net(torch.rand(1, 3, 40, 56))
    assert out.logits.shape == (1, 6, 40, 56)


def test_a_frozen_backbone_keeps_its_weights_and_statistics_through_training():
    pytest.importorskip("timm", reason="timm (extra efficientnet) not installed")
    torch.manual_seed(0)
    net = BoundaryNet("efficientnet_lite0", pretrained=True, stages=(0, 1), frozen_backbone=True)
    before = {k: v.clone() for k, v in net.backbone.state_dict().items()}
    head_before = net.heads[0].conv.weight.detach().clone()
    optimizer = torch.optim.Adam(net.parameters(), lr=0.1)
    net.train()
    assert not net.backbone.training and net.heads.training
    for _ in range(2):
        out = net(torch.rand(2, 3, 32, 48))
        (out.logits.mean() + sum(e[:, 0].mean() for e in out.embeddings)).backward()
        optimizer.step()
        optimizer.zero_grad()
    after = net.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm statistics too
    assert all(p.grad is None for p in net.backbone.parameters())
    assert not torch.equal(head_before, net.heads[0].conv.weight)  # the heads learn
    assert "frozen_backbone=True" in repr(net)


def test_a_frozen_backbone_needs_pretrained_weights():
    with pytest.raises(ValueError, match="frozen_backbone keeps the backbone's ImageNet weights"):
        BoundaryNet("resnet50", frozen_backbone=True)
    with pytest.raises(ValueError, match="frozen_backbone must be true or false, got 'maybe'"):
        BoundaryNet("resnet50", frozen_backbone="maybe")  # type: ignore[arg-type]
