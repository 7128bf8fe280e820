"""receptive_radius: exact on a known stack; every model's default halo covers its reach."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pixelgroup.models import (
    DenseEmbeddingNet,
    EmbeddingOutput,
    ToyEmbeddingNet,
    UNetEmbeddingNet,
    receptive_radius,
    redraw_conv_weights,
    tile_halo,
)
from pixelgroup.models.dense import TILE_HALOS


class _Stack(nn.Module):
    """Convolutions of known reach: 3 x 3 (1 px), 3 x 3 dilated 2 (2 px), 5 x 5 (2 px)."""

    def __init__(self, stride: int = 1) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1, stride=stride),
            nn.Conv2d(4, 4, 3, padding=2, dilation=2),
            nn.Conv2d(4, 3, 5, padding=2),
        )

    def forward(self, images: torch.Tensor) -> EmbeddingOutput:
        raw = self.convs(images)
        return EmbeddingOutput(embedding=nn.functional.normalize(raw, dim=1), raw=raw)


def _redrawn(model: nn.Module) -> nn.Module:
    """Every conv weight drawn again (std 1/sqrt(fan-in), seed 0): every path counts."""
    torch.manual_seed(0)
    return redraw_conv_weights(model)


def test_the_radius_of_a_known_stack_is_the_sum_of_its_reaches():
    assert receptive_radius(_redrawn(_Stack()), 32) == {"embedding": 5}


def test_an_output_stride_rounds_the_radius_out_to_whole_output_pixels():
    """Stride 2: the later convs reach 2 input px per tap (1 + 2·(2 + 2) = 9 px), and an
    output pixel covers 2 input rows, so the radius found is at most one more."""
    assert receptive_radius(_redrawn(_Stack(stride=2)), 64)["embedding"] in (9, 10)


def test_a_zero_weight_hides_the_reach_behind_it():
    model = _redrawn(_Stack())
    nn.init.zeros_(model.convs[2].weight)
    assert receptive_radius(model, 32) == {"embedding": 0}


@pytest.mark.parametrize(
    "model",
    [
        ToyEmbeddingNet(width=24, num_blocks=4, dilations=(1, 2, 4, 8), embedding_dim=3),
        UNetEmbeddingNet(width=16, depth=4, embedding_dim=8, num_classes=2, embedding="spatial"),
    ],
    ids=["toy", "unet"],
)
def test_the_default_halo_covers_the_reach_of_the_toy_network_and_the_unet(model):
    radius = receptive_radius(_redrawn(model), 192)
    assert 0 < max(radius.values()) <= tile_halo(model)


def test_the_dense_networks_halo_is_its_receptive_radius_rounded_up():
    """EfficientNet-Lite0 at output stride 8 (the photo recipe's): every output's reach
    within the table's halo, and the halo no more than the rounding up above it."""
    model = _redrawn(
        DenseEmbeddingNet("efficientnet_lite0", embedding_dim=4, num_classes=2, head_channels=8)
    )
    radius = max(receptive_radius(model, 1024).values())
    assert TILE_HALOS[("efficientnet_lite0", 8)] == model.tile_halo == tile_halo(model)
    assert model.tile_halo - 16 < radius <= model.tile_halo


def test_redrawn_weights_have_the_fan_in_scale_and_leave_the_model_in_eval_mode():
    torch.manual_seed(0)
    model = redraw_conv_weights(_Stack().train())
    conv = model.convs[1]  # 4 in-channels, 3 x 3: fan-in 36
    assert not model.training
    assert abs(float(conv.weight.detach().std()) * 6 - 1) < 0.3
