"""model.test_bn: per-image BatchNorm statistics at test time (the original's evaluation)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pixelgroup.errors import ConfigError
from pixelgroup.models import (
    BatchStatistics,
    DenseEmbeddingNet,
    ToyEmbeddingNet,
    apply_test_bn,
    batch_statistics,
)
from pixelgroup.models.batchnorm import untraceable_batch_norms
from tests._tiny import TINY_DENSE_OPTIONS


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 2, 1))
    with torch.no_grad():  # running statistics far from any batch's
        net[1].running_mean.fill_(3.0)
        net[1].running_var.fill_(9.0)
        net[1].weight.uniform_(0.5, 1.5)
        net[1].bias.uniform_(-0.5, 0.5)
    return net.eval()


def _buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_each_image_is_normalised_as_training_at_batch_one():
    net, x = _net(), torch.rand(3, 3, 12, 10)
    reference = []
    for i in range(3):  # training mode on a batch of one, buffers restored after each
        state = _buffers(net)
        reference.append(net.train()(x[i : i + 1]))
        net.load_state_dict(state)
    net.eval()
    with batch_statistics(net):
        got = net(x)
    torch.testing.assert_close(got, torch.cat(reference), atol=1e-5, rtol=1e-5)
    # an image's output does not depend on the other images of its batch
    with batch_statistics(net):
        torch.testing.assert_close(net(x[1:2]), got[1:2], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(net(x), got, atol=1e-3)  # outside: running statistics again


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_running_statistics_never_change(mode):
    net, x = _net(), torch.rand(2, 3, 9, 9)
    before = _buffers(net)
    wrapped = apply_test_bn(net, "batch")
    getattr(wrapped, mode)()
    wrapped(x)
    wrapped.eval()  # what the inference runner does before its forward
    out = wrapped(x)
    after = net.state_dict()
    for key, value in before.items():
        assert torch.equal(after[key], value), key  # num_batches_tracked included
    assert out.shape == (2, 2, 7, 7)
    assert "forward" not in vars(net[1])  # the patch is gone after each call


def test_running_is_the_model_itself_and_errors():
    net = _net()
    assert apply_test_bn(net, "running") is net
    wrapped = apply_test_bn(net, "batch")
    assert isinstance(wrapped, BatchStatistics) and apply_test_bn(wrapped, "batch") is wrapped
    with pytest.raises(ConfigError, match="model.test_bn must be one of running, batch"):
        apply_test_bn(net, "per-image")


def test_frozen_batch_norms_keep_their_statistics():
    """BatchNorms that stay in eval mode during training (a frozen backbone, torchvision's
    FrozenBatchNorm2d) normalise as in training: with their stored statistics."""
    torch.manual_seed(0)
    model = DenseEmbeddingNet(**TINY_DENSE_OPTIONS, freeze_backbone=True).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        features = model.backbone(x)[-1]
        with batch_statistics(model):
            assert torch.equal(model.backbone(x)[-1], features)
            patched = model(x).embedding
        plain = model(x).embedding
    assert not torch.allclose(patched, plain, atol=1e-4)  # the head's BatchNorm did change


def test_wrapper_keeps_in_channels_and_device():
    model = ToyEmbeddingNet(width=4, num_blocks=1, in_channels=1)
    wrapped = apply_test_bn(model, "batch")
    assert wrapped.in_channels == 1
    assert next(wrapped.parameters()).device == torch.device("cpu")
    assert wrapped(torch.rand(1, 1, 16, 16)).embedding.shape == (1, 3, 16, 16)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_with_batch_statistics(fmt, tmp_path):
    """export_*(test_bn="batch") traces the per-image normalisation: the file gives what
    evaluation gives for every image of a batch, whatever the batch."""
    from pixelgroup.engine.export import export_onnx, export_torchscript

    torch.manual_seed(0)
    model = ToyEmbeddingNet(width=4, num_blocks=1).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.fill_(0.5)  # far from any batch's statistics
    x = torch.rand(3, 3, 20, 24)
    with torch.no_grad():
        expected = apply_test_bn(model, "batch")(x).embedding
    path = tmp_path / f"model.{'onnx' if fmt == 'onnx' else 'pt'}"
    if fmt == "onnx":
        ort = pytest.importorskip("onnxruntime")
        export_onnx(model, path, num_iters=0, bandwidth=0.1, test_bn="batch")
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(["embedding"], {"images": x.numpy()})[0])
    else:
        export_torchscript(model, path, num_iters=0, bandwidth=0.1, test_bn="batch")
        got = torch.jit.load(str(path))(x)[1]
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        assert not torch.allclose(model(x).embedding, expected, atol=1e-3)


class _BatchNormReLU(nn.BatchNorm2d):
    """A BatchNorm subclass whose forward adds to the normalisation (as timm's
    BatchNormAct2d in the EfficientNet-Lite0 backbone)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(super().forward(x))


def test_subclasses_keep_their_own_forward(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), _BatchNormReLU(4)).eval()
    net[1].running_mean.fill_(2.0)
    x = torch.rand(3, 3, 10, 12)
    before = _buffers(net)
    with torch.no_grad(), batch_statistics(net):
        got = net(x)
    reference = []
    for i in range(3):
        state = _buffers(net)
        with torch.no_grad():
            reference.append(net.train()(x[i : i + 1]))
        net.load_state_dict(state)
    torch.testing.assert_close(got, torch.cat(reference), atol=1e-5, rtol=1e-5)
    assert (got >= 0).all()  # the subclass's activation is kept
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert untraceable_batch_norms(net) == ["1"]


def test_export_refuses_per_image_statistics_it_cannot_trace(tmp_path):
    from pixelgroup.engine.export import export_torchscript

    model = ToyEmbeddingNet(width=4, num_blocks=1)
    swapped = [n for n, m in model.named_modules() if type(m) is nn.BatchNorm2d][0]
    parent, _, child = swapped.rpartition(".")
    bn = model.get_submodule(swapped)
    setattr(
        model.get_submodule(parent) if parent else model, child, _BatchNormReLU(bn.num_features)
    )
    with pytest.raises(
        ValueError, match=r"needs torch's BatchNorm classes; .* is a _BatchNormReLU"
    ):
        export_torchscript(model, tmp_path / "m.pt", num_iters=0, bandwidth=0.1, test_bn="batch")
