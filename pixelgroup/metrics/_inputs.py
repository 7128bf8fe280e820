"""Input conversion shared by the evaluators: tensors or arrays in, numpy out, clear errors."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from pixelgroup._checks import check_shape
from pixelgroup.errors import InputError, InputTypeError

__all__ = ["as_numpy", "as_masks", "as_vector", "check_records"]


def as_numpy(x: object, name: str) -> np.ndarray:
    """A numpy array from a tensor (any device) or an array; anything else is a TypeError."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise InputTypeError(
            f"{name} must be a numpy array or torch.Tensor, got {type(x).__name__}"
        )
    return x


def as_masks(x: object, name: str) -> np.ndarray:
    """``(K, H, W)`` boolean masks from a tensor or array."""
    masks = as_numpy(x, name)
    check_shape(masks, ("K", "H", "W"), name)
    return masks.astype(bool, copy=False)


def as_vector(x: object, name: str, dtype: type) -> np.ndarray:
    """A 1-D array of ``dtype`` from a tensor, array or sequence; floats must be finite."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        arr: np.ndarray = np.asarray(x, dtype=dtype).reshape(-1)
    except (TypeError, ValueError):
        raise InputTypeError(f"{name} must be a sequence of numbers, got {x!r:.60}") from None
    if dtype is float and not np.isfinite(arr).all():
        raise InputError(f"{name} must be finite, got {arr[~np.isfinite(arr)][:3].tolist()}")
    return arr


def check_records(
    predictions: Sequence[object],
    targets: Sequence[object],
    prediction_type: type,
    target_type: type,
) -> None:
    """``process(predictions, targets)``: two sequences of per-image records, one of each per
    image, of the evaluator's record types."""
    for name, records in (("predictions", predictions), ("targets", targets)):
        if isinstance(records, (str, bytes)) or not isinstance(records, Sequence):
            raise InputTypeError(
                f"{name} must be a sequence (e.g. a list) of per-image records, "
                f"got {type(records).__name__}"
            )
    if len(predictions) != len(targets):
        raise InputError(
            f"expected one target per prediction, got {len(predictions)} predictions and "
            f"{len(targets)} targets"
        )
    for name, records, kind in (
        ("predictions", predictions, prediction_type),
        ("targets", targets, target_type),
    ):
        for i, record in enumerate(records):
            if not isinstance(record, kind):
                raise InputTypeError(
                    f"{name}[{i}] must be a {kind.__name__}, got {type(record).__name__}"
                )
