"""How far one input pixel reaches in a model's outputs: the halo a tile needs to be exact."""

from __future__ import annotations

import torch
from torch import nn

from pixelgroup._checks import check_count

__all__ = ["receptive_radius", "redraw_conv_weights"]


def redraw_conv_weights(model: nn.Module) -> nn.Module:
    """``model`` in eval mode with every ``Conv2d`` weight drawn again from N(0, 1/fan-in)
    (torch's global generator: seed it first), so that every path counts for
    :func:`receptive_radius` (a zero-initialised or untrained head would hide its reach)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
            nn.init.normal_(m.weight, std=1 / fan_in**0.5)
    return model.eval()


@torch.no_grad()
def receptive_radius(model: nn.Module, side: int, in_channels: int = 3) -> dict[str, int]:
    """Pixels from one input pixel to the farthest output it changes, per output of ``model``.

    The pixel at the centre of a seeded random ``(1, in_channels, side, side)`` image is
    changed; the outputs (``embedding`` and, when the model has them, ``semantic``, ``votes``)
    that change cover some input rows (an output pixel of stride s covers s rows); the
    radius is the larger distance from the centre to either end. By symmetry of
    convolutions, a tile's core output sees every input it depends on once its halo is at
    least this radius (docs/large_images.md). Give weights that make every path count (a
    trained model, or :func:`redraw_conv_weights`): a zero weight hides its reach. ``side`` must
    exceed twice the radius, or the radius found is the image's, ``side // 2``.

    Args:
        model: a 2-D embedding model (``images (1, C, H, W)`` -> an ``EmbeddingOutput``).
        side: the random image's side in px.
        in_channels: C.

    Returns:
        ``{output name: radius in px}``.

    Example:
        >>> from pixelgroup.models import ToyEmbeddingNet
        >>> receptive_radius(ToyEmbeddingNet(width=4, num_blocks=1).eval(), 32)
        {'embedding': 4}
    """
    side = check_count(side, "side")
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, in_channels, side, side, generator=generator)
    moved = image.clone()
    moved[0, :, side // 2, side // 2] += 0.5
    before, after = model(image), model(moved)
    radius = {}
    for name in ("embedding", "semantic", "votes"):
        a, b = getattr(before, name, None), getattr(after, name, None)
        if a is None:
            continue
        rows = torch.nonzero((a != b).any(dim=1)[0].any(dim=1)).flatten()
        if len(rows) == 0:
            radius[name] = 0
            continue
        scale = side / a.shape[-2]
        low, high = float(rows.min()) * scale, (float(rows.max()) + 1) * scale
        radius[name] = round(max(side // 2 - low, high - side // 2 - 1))
    return radius
