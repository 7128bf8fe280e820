"""Embedding models and their registry.

``MODELS`` maps a name to a constructor; :func:`build_model` builds one from keyword
arguments (the ``model`` section of an experiment config). Every model in ``MODELS`` returns an
:class:`EmbeddingOutput` whose ``embedding`` is unit-norm ``(B, D, H, W)``. Register a new model
by adding an entry to ``MODELS``. The boundary detector :class:`BoundaryNet` returns a
:class:`BoundaryOutput` instead (several side embeddings and logits), so it is not in the
registry; the boundary task builds it. :func:`apply_test_bn` gives the model to evaluate for
the config's ``model.test_bn`` (running or per-image BatchNorm statistics).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from pixelgroup._config_io import checked_options
from pixelgroup.errors import ConfigError
from pixelgroup.models.batchnorm import BatchStatistics, apply_test_bn, batch_statistics
from pixelgroup.models.boundary import BoundaryNet, BoundaryOutput
from pixelgroup.models.dense import DenseEmbeddingNet
from pixelgroup.models.heads import EmbeddingHead, EmbeddingOutput
from pixelgroup.models.receptive_field import receptive_radius, redraw_conv_weights
from pixelgroup.models.toy import ToyEmbeddingNet
from pixelgroup.models.unet import UNetEmbeddingNet
from pixelgroup.models.volume import VolumeEmbeddingNet

__all__ = [
    "MODELS",
    "build_model",
    "EmbeddingOutput",
    "EmbeddingHead",
    "ToyEmbeddingNet",
    "DenseEmbeddingNet",
    "UNetEmbeddingNet",
    "VolumeEmbeddingNet",
    "BoundaryNet",
    "BoundaryOutput",
    "apply_test_bn",
    "batch_statistics",
    "BatchStatistics",
    "tile_halo",
    "receptive_radius",
    "redraw_conv_weights",
]

MODELS: dict[str, Callable[..., nn.Module]] = {
    "toy": ToyEmbeddingNet,
    "dense": DenseEmbeddingNet,
    "unet": UNetEmbeddingNet,
    "volume": VolumeEmbeddingNet,
}


def build_model(
    name: str, registry: Mapping[str, Callable[..., nn.Module]] | None = None, /, **options: Any
) -> nn.Module:
    """The model ``name`` of ``registry`` (default :data:`MODELS`) built with ``options``: the
    one builder of configs (``model.name``, ``model.options``) and code alike.

    Options are checked against the constructor's signature first. An unknown name (the valid
    ones listed), an unknown option, a value that does not fit its annotation, or a
    ``ValueError`` the constructor raises about a value is a :class:`ConfigError` naming it.

    Example:
        >>> type(build_model("toy", width=4, num_blocks=1)).__name__
        'ToyEmbeddingNet'
        >>> build_model("toy", widht=4)
        Traceback (most recent call last):
        ...
        pixelgroup.errors.ConfigError: unknown config key 'model.options.widht'; ...
    """
    registry = MODELS if registry is None else registry
    if name not in registry:
        raise ConfigError(f"unknown model {name!r}; valid models: {', '.join(sorted(registry))}")
    kwargs = checked_options(registry[name], options, "model.options")
    try:
        return registry[name](**kwargs)
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(f"model {name!r}: {e}") from e


def tile_halo(model: nn.Module) -> int:
    """Pixels of context on every side of a tile of ``model``'s input beyond which the
    tile's core sees what the whole image gives, at least its receptive radius
    (:func:`receptive_radius`): :class:`DenseEmbeddingNet`'s per backbone and output stride
    (:data:`~pixelgroup.models.dense.TILE_HALOS`: 448 for ``efficientnet_lite0`` at stride
    8, 512 for ``resnet101``), 64 for the toy network and the U-Net (exact to the bit;
    docs/large_images.md, the halo and radius tables).

    Example:
        >>> tile_halo(ToyEmbeddingNet(width=4, num_blocks=1))
        64
    """
    return model.tile_halo if isinstance(model, DenseEmbeddingNet) else 64
