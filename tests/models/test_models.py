import copy

import pytest
import torch

from pixelgroup.errors import ConfigError
from pixelgroup.models import MODELS, EmbeddingOutput, ToyEmbeddingNet, build_model


def _small(**kw):
    return build_model("toy", width=4, num_blocks=2, **kw)


def test_registry_builds_and_lists_names():
    assert isinstance(_small(), ToyEmbeddingNet)
    assert "toy" in MODELS
    with pytest.raises(ConfigError, match="unknown model 'nope'; valid models: .*toy"):
        build_model("nope")


@pytest.mark.parametrize("size", [(16, 16), (13, 21)])
def test_unit_norm_full_resolution(device, size):
    model = _small(embedding_dim=5).to(device)
    out = model(torch.rand(2, 3, *size, device=device))
    assert isinstance(out, EmbeddingOutput)
    assert out.embedding.shape == out.raw.shape == (2, 5, *size)
    assert out.embedding.device.type == device.type
    torch.testing.assert_close(
        out.embedding.norm(dim=1), torch.ones(2, *size, device=device), atol=1e-4, rtol=0
    )


def test_forward_backward_reaches_every_parameter():
    model = _small()
    model(torch.rand(2, 3, 12, 12)).embedding[:, 0].sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_double_precision():
    model = _small().double()
    assert model(torch.rand(1, 3, 8, 8, dtype=torch.float64)).embedding.dtype == torch.float64


def test_state_dict_roundtrip(tmp_path):
    a, b = _small(), _small()
    torch.save(a.state_dict(), tmp_path / "m.pt")
    b.load_state_dict(torch.load(tmp_path / "m.pt"))
    x = torch.rand(1, 3, 8, 8)
    a.eval(), b.eval()
    torch.testing.assert_close(a(x).embedding, b(x).embedding)


def test_wrong_input():
    model = _small()
    with pytest.raises(ValueError, match="image must have 3 channels, got 1"):
        model(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        model(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="need width >= 1"):
        ToyEmbeddingNet(width=0)
    with pytest.raises(ValueError, match="embedding_dim must be >= 1"):
        ToyEmbeddingNet(embedding_dim=0)


def test_channels_last_layout_does_not_change_the_function():
    model = _small().eval()
    assert model.stem[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    image = torch.rand(2, 3, 9, 11)  # a contiguous input is accepted and converted
    out = model(image).embedding
    assert out.is_contiguous(memory_format=torch.channels_last)
    reference = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    assert reference.stem[0][0].weight.is_contiguous()
    torch.testing.assert_close(reference(image).embedding, out, atol=1e-5, rtol=1e-5)
