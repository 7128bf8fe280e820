"""The one place where a model meets images at inference.

Evaluation (:mod:`pixelgroup.engine.evaluate`), prediction (:mod:`pixelgroup.engine.predict`),
the export check (:mod:`pixelgroup.engine.export`) and rehearsal all run the model through an
:class:`InferenceRunner`: it holds the model with the configured test-time BatchNorm
(``model.test_bn``, :func:`pixelgroup.models.apply_test_bn`), moves the images to the model's
device, runs the model in eval mode under ``torch.no_grad`` and the configured autocast
(``train.amp``), downscales the images first when asked, and gives the model back in the mode
it found it in. Tasks never call a model; they turn the runner's outputs into predictions.

Anything that changes how an image reaches the model (tiling an image larger than memory, a
volume slice by slice) belongs inside :meth:`InferenceRunner.__call__`, so that every caller
gets it at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pixelgroup.config import ExperimentConfig
from pixelgroup.engine.distributed import autocast, float32_outputs
from pixelgroup.models import apply_test_bn

__all__ = ["InferenceRunner", "inference_context", "model_input_size", "DEFAULT_MAX_SIZE"]

DEFAULT_MAX_SIZE = 1024
"""Longest image side the model sees by default (``pixelgroup predict --max-size``)."""


def model_input_size(size: tuple[int, int], max_size: int | None) -> tuple[int, int]:
    """``size = (H, W)`` scaled so that its long side is at most ``max_size`` (aspect ratio
    kept, sides >= 1); unchanged when it fits or ``max_size`` is None or 0.

    Example:
        >>> model_input_size((3000, 2000), 1024)
        (1024, 683)
    """
    h, w = size
    if not max_size or max(h, w) <= max_size:
        return (h, w)
    scale = max_size / max(h, w)
    return (max(1, round(h * scale)), max(1, round(w * scale)))


@contextmanager
def inference_context(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode without autograd inside the block, in its former mode after
    (as detectron2's ``inference_context``)."""
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(training)


class InferenceRunner:
    """Runs ``model`` on images at inference (see the module docstring).

    Args:
        model: any model of :data:`pixelgroup.models.MODELS` (or a wrapper such as
            :class:`~pixelgroup.engine.export.GroupingGraph`); it stays on its device.
        test_bn: ``"running"`` or ``"batch"`` (``model.test_bn``).
        amp: ``"none"``, ``"bf16"`` or ``"fp16"`` (``train.amp``): the autocast the model runs
            under; floating outputs come back in float32 whatever it is.

    Call it with ``images (B, C, H, W)`` (any device; moved to the model's) and optionally
    ``input_size = (h, w)``: the images are then resized (bilinear, antialiased) to it first.
    It returns the model's output (e.g. :class:`~pixelgroup.models.EmbeddingOutput`) on the
    model's device.

    Example:
        >>> from pixelgroup.models import ToyEmbeddingNet
        >>> run = InferenceRunner(ToyEmbeddingNet(width=4, num_blocks=1))
        >>> tuple(run(torch.rand(2, 3, 32, 40), input_size=(16, 20)).embedding.shape)
        (2, 3, 16, 20)
    """

    def __init__(self, model: nn.Module, *, test_bn: str = "running", amp: str = "none") -> None:
        self.model = apply_test_bn(model, test_bn)
        self.amp = amp
        autocast(amp, self.device)  # checks amp before any work

    @classmethod
    def from_config(cls, model: nn.Module, cfg: ExperimentConfig) -> InferenceRunner:
        """The runner of ``model`` with ``cfg.model.test_bn`` and ``cfg.train.amp``."""
        return cls(model, test_bn=cfg.model.test_bn, amp=cfg.train.amp)

    @property
    def device(self) -> torch.device:
        """Where the model's parameters are (CPU for a model without any)."""
        for p in self.model.parameters():
            return p.device
        return torch.device("cpu")

    def __call__(self, images: torch.Tensor, input_size: tuple[int, int] | None = None) -> Any:
        images = images.to(self.device)
        if input_size is not None and tuple(images.shape[-2:]) != tuple(input_size):
            low, high = images.amin(), images.amax()
            images = F.interpolate(
                images, size=input_size, mode="bilinear", antialias=True, align_corners=False
            ).clamp(low, high)  # the filter's weights are >= 0: only rounding leaves the range
        with inference_context(self.model), autocast(self.amp, self.device):
            output = self.model(images)
        return float32_outputs(output)
