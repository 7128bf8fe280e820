"""The U-Net embedding network: shapes at odd sizes, unit norm, strides, bad options,
forward + backward, save/load round trip; connected-component splitting of instances."""

import pytest
import torch

from pixelgroup.models import MODELS, UNetEmbeddingNet
from pixelgroup.postprocess import extract_instances


@pytest.mark.parametrize(("h", "w"), [(32, 32), (30, 41), (17, 9)])
def test_scratch_embedding_is_unit_norm_at_the_input_size(h, w):
    net = UNetEmbeddingNet(embedding_dim=5, width=4, depth=3, num_classes=2)
    out = net(torch.rand(2, 3, h, w))  # batch statistics: features of unit scale
    assert out.embedding.shape == (2, 5, h, w) and out.semantic.shape == (2, 2, h, w)
    torch.testing.assert_close(out.embedding.norm(dim=1), torch.ones(2, h, w), atol=1e-3, rtol=0)


def test_pretrained_encoder_gives_a_stride_2_embedding():
    pytest.importorskip("timm")
    net = UNetEmbeddingNet("efficientnet_lite0", embedding_dim=4, depth=3).eval()
    assert net(torch.rand(1, 3, 40, 50)).embedding.shape == (1, 4, 20, 25)


def test_forward_backward_and_state_dict_round_trip():
    torch.manual_seed(0)
    net = MODELS["unet"](embedding_dim=3, width=4, depth=2, num_classes=2)
    out = net(torch.rand(2, 3, 16, 16))
    (out.embedding.sum() + out.semantic.sum()).backward()
    assert all(p.grad is not None for p in net.parameters())
    copy = UNetEmbeddingNet(embedding_dim=3, width=4, depth=2, num_classes=2)
    copy.load_state_dict(net.state_dict())
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(copy.eval()(x).embedding, net.eval()(x).embedding)


def test_bad_options_and_inputs():
    with pytest.raises(ValueError, match="encoder must be one of scratch, efficientnet_lite0"):
        UNetEmbeddingNet("resnet")
    with pytest.raises(ValueError, match=r"depth must be an int in 2..6"):
        UNetEmbeddingNet(depth=1)
    with pytest.raises(ValueError, match="3 channels"):
        UNetEmbeddingNet(width=2, depth=2)(torch.rand(1, 1, 8, 8))


def test_split_components_separates_far_apart_objects_of_one_group():
    emb = torch.zeros(2, 12, 12)
    emb[0] = 1.0  # background
    emb[:, 1:4, 1:4] = torch.tensor([0.0, 1.0])[:, None, None]  # two squares, one embedding
    emb[:, 7:11, 6:10] = torch.tensor([0.0, 1.0])[:, None, None]
    emb[:, 11, 0] = torch.tensor([0.0, 1.0])  # a 1-pixel fragment
    joined, _ = extract_instances(emb, num_iters=0, min_area=1)
    assert joined.max() == 1
    split, scores = extract_instances(emb, num_iters=0, min_area=2, split_components=True)
    assert split.max() == 2 and scores.shape == (2,)
    assert int((split == 1).sum()) == 9 and int((split == 2).sum()) == 16
    assert int(split[11, 0]) == 0  # under min_area: background


def test_spatial_embedding_votes_for_positions_on_the_sphere():
    """At initialisation the offsets are ~0: each pixel votes for itself, so the embedding is
    the Fourier features of its own position (cosine of two pixels ~ exp(-d² / 2 l²))."""
    torch.manual_seed(0)
    net = UNetEmbeddingNet(
        embedding_dim=32, width=4, depth=3, embedding="spatial", spatial_scale=4.0
    )
    out = net(torch.rand(1, 3, 30, 41))
    assert out.embedding.shape == (1, 32, 30, 41) and out.votes.shape == (1, 2, 30, 41)
    torch.testing.assert_close(out.embedding.norm(dim=1), torch.ones(1, 30, 41))
    assert (out.votes[0, 0, :, 0] - torch.arange(30.0)).abs().max() < 0.2
    e = out.embedding[0].detach()
    assert float(e[:, 10, 10] @ e[:, 10, 11]) > 0.9  # neighbours: 1 px apart
    assert abs(float(e[:, 10, 10] @ e[:, 10, 30])) < 0.3  # 20 px = 5 l apart
    out.votes.sum().backward()
    assert net.head.conv.weight.grad is not None


def test_spatial_options_are_checked():
    with pytest.raises(ValueError, match="embedding must be one of free, spatial"):
        UNetEmbeddingNet(embedding="coords")
    with pytest.raises(ValueError, match="spatial_scale must be a length > 0"):
        UNetEmbeddingNet(embedding="spatial", spatial_scale=0)
    with pytest.raises(ValueError, match="embedding_dim must be even"):
        UNetEmbeddingNet(embedding="spatial", embedding_dim=5)
