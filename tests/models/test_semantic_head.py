import pytest
import torch

from pixelgroup.models import EmbeddingOutput, build_model


def _small(**kw):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_model("toy", width=4, num_blocks=2, **kw)


def _image(*shape, device="cpu", dtype=torch.float32):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(1), dtype=dtype).to(device)


@pytest.mark.parametrize("size", [(16, 16), (13, 21)])
def test_semantic_logits_beside_unit_embedding(device, size):
    model = _small(num_classes=11).to(device)
    out = model(_image(2, 3, *size, device=device))
    assert out.semantic.shape == (2, 11, *size)
    assert out.semantic.device.type == device.type
    assert out.embedding.shape == (2, 3, *size)
    torch.testing.assert_close(
        out.embedding.norm(dim=1), torch.ones(2, *size, device=device), atol=1e-4, rtol=0
    )


def test_no_head_by_default_and_no_extra_parameters():
    plain, with_head = _small(), _small(num_classes=3)
    assert plain.semantic is None and plain(_image(1, 3, 8, 8)).semantic is None
    extra = {k for k in with_head.state_dict()} - {k for k in plain.state_dict()}
    assert extra == {"semantic.weight", "semantic.bias"}


def test_semantic_head_shares_the_trunk():
    model = _small(num_classes=5)
    model(_image(2, 3, 10, 10)).semantic.sum().backward()
    assert model.stem[0][0].weight.grad.abs().sum() > 0
    assert model.semantic.weight.grad is not None
    assert model.head.conv.weight.grad is None  # the embedding head is not on the CE path


def test_double_precision_and_dense_output_still_a_subclass():
    model = _small(num_classes=2).double()
    assert model(_image(1, 3, 8, 8, dtype=torch.float64)).semantic.dtype == torch.float64
    out = EmbeddingOutput(embedding=torch.zeros(1), raw=torch.zeros(1))
    assert out.semantic is None


def test_bad_num_classes():
    with pytest.raises(ValueError, match="num_classes must be >= 1 or None, got 0"):
        _small(num_classes=0)
