"""BatchNorm at test time: running statistics, or each image's own (the original's VOC evaluation).

PyTorch's eval mode normalises with the running statistics gathered in training. The original
MatConvNet code evaluates its toy, proposal and VOC models in its ``"normal"`` mode instead
(docs/method.md), i.e. with the statistics of the batch, and its VOC models run at batch 1:
every image is normalised by its own per-channel mean and variance (its toy batches are files
of 6 test canvases; its boundary model uses the running statistics). A model trained at
batch 1 (the VOC recipes) has seen only such per-image statistics, so its running averages (a
mean of per-image variances, blind to the variance of the means) describe no input it was
trained on.

:func:`apply_test_bn` gives the model to evaluate for ``model.test_bn``: the model itself for
``"running"``, or a :class:`BatchStatistics` wrapper for ``"batch"`` whose forward normalises
each image by its own statistics in every BatchNorm that ``model.train()`` would put in
training mode. A BatchNorm kept in eval mode during training (a frozen backbone) and
``FrozenBatchNorm2d`` keep their stored statistics, as in training. Running statistics are
never read or changed, whatever the mode the model is in; the output of an image does not
depend on the other images of its batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from pixelgroup.errors import ConfigError

__all__ = [
    "TEST_BN_MODES",
    "BatchStatistics",
    "apply_test_bn",
    "batch_statistics",
    "traceable",
    "untraceable_batch_norms",
]

TEST_BN_MODES = ("running", "batch")


def _training_batch_norms(model: nn.Module) -> list[_BatchNorm]:
    """The BatchNorms that ``model.train()`` puts in training mode (a model may keep some in
    eval mode, e.g. a frozen backbone); every module's mode is restored."""
    modes = [(m, m.training) for m in model.modules()]
    model.train()
    found = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.training]
    for m, mode in modes:
        m.training = mode
    return found


def traceable(bn: _BatchNorm) -> bool:
    """Whether :func:`batch_statistics` normalises ``bn`` with one traceable op (torch's own
    BatchNorm classes: an instance normalisation) rather than image by image through the
    class's own forward (a subclass that adds to it, e.g. timm's ``BatchNormAct2d``)."""
    return type(bn).forward is _BatchNorm.forward


def _per_image_forward(bn: _BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """``bn`` applied with the statistics of each image of ``x (B, C, ...)`` separately: what
    ``bn`` computes in training mode on a batch of one, without touching its buffers."""
    if traceable(bn) and x.dim() > 2:  # per (image, channel) over the spatial dims
        return F.instance_norm(
            x, None, None, bn.weight, bn.bias, use_input_stats=True, momentum=0.0, eps=bn.eps
        )
    # the class's own forward (it may add an activation), one image at a time, in training
    # mode without running statistics: batch statistics, buffers neither read nor written
    forward = type(bn).forward
    modes = bn.training, bn.track_running_stats
    bn.training, bn.track_running_stats = True, False
    try:
        if x.dim() <= 2 or x.shape[0] == 1:
            return forward(bn, x)
        return torch.cat([forward(bn, x[i : i + 1]) for i in range(x.shape[0])])
    finally:
        bn.training, bn.track_running_stats = modes


def untraceable_batch_norms(model: nn.Module) -> list[str]:
    """Names of the BatchNorms :func:`batch_statistics` normalises image by image (see
    :func:`traceable`): a graph traced through them holds the example's batch size."""
    targets = set(map(id, _training_batch_norms(model)))
    return [n for n, m in model.named_modules() if id(m) in targets and not traceable(m)]


@contextmanager
def batch_statistics(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, every BatchNorm of ``model`` that trains in training mode normalises
    each image by its own statistics, in train and eval mode alike (see the module docstring).

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
        >>> x = torch.rand(2, 3, 8, 8)
        >>> with batch_statistics(net):
        ...     y = net(x)
        >>> bool(torch.allclose(y[:1], net.train()(x[:1]), atol=1e-5))
        True
    """
    patched = [bn for bn in _training_batch_norms(model) if "forward" not in vars(bn)]
    for bn in patched:
        bn.forward = partial(_per_image_forward, bn)  # type: ignore[method-assign]
    try:
        yield model
    finally:
        for bn in patched:
            del bn.forward


class BatchStatistics(nn.Module):
    """``model`` whose every forward runs inside :func:`batch_statistics` (``model.test_bn:
    batch``). Attribute ``in_channels`` is the model's, when it has one."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        if hasattr(model, "in_channels"):
            self.in_channels = model.in_channels

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with batch_statistics(self.model):
            return self.model(*args, **kwargs)


def apply_test_bn(model: nn.Module, mode: str) -> nn.Module:
    """The model to evaluate for ``model.test_bn = mode``: ``model`` itself for
    ``"running"``, ``BatchStatistics(model)`` for ``"batch"`` (already wrapped: unchanged).

    Raises :class:`~pixelgroup.errors.ConfigError` for another mode.
    """
    if mode not in TEST_BN_MODES:
        raise ConfigError(f"model.test_bn must be one of {', '.join(TEST_BN_MODES)}, got {mode!r}")
    if mode == "running" or isinstance(model, BatchStatistics):
        return model
    return BatchStatistics(model)
