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

from collections.abc import Callable
from typing import Any

from torch import nn

from pixelgroup.models.batchnorm import BatchStatistics, apply_test_bn, batch_statistics
from pixelgroup.models.boundary import BoundaryNet, BoundaryOutput
from pixelgroup.models.dense import DenseEmbeddingNet
from pixelgroup.models.heads import EmbeddingHead, EmbeddingOutput
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
]

MODELS: dict[str, Callable[..., nn.Module]] = {
    "toy": ToyEmbeddingNet,
    "dense": DenseEmbeddingNet,
    "unet": UNetEmbeddingNet,
    "volume": VolumeEmbeddingNet,
}


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with ``kwargs``; unknown names list the valid ones."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; valid models: {', '.join(sorted(MODELS))}")
    return MODELS[name](**kwargs)
