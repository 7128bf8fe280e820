"""pixelgroup: recurrent pixel embedding for instance grouping (Kong & Fowlkes, CVPR 2018).

Learn a per-pixel embedding on the unit hypersphere with an instance-aware pair loss, and
group it with a differentiable recurrent mean-shift (GBMS) layer.

The public names below are imported on first use, so ``import pixelgroup`` (and the command
line's ``--help``) does not pay for importing torch until a name is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_PUBLIC = {
    "normalize_to_sphere": "pixelgroup.ops",
    "gbms_step": "pixelgroup.ops",
    "recurrent_mean_shift": "pixelgroup.ops",
    "RecurrentMeanShift": "pixelgroup.ops",
    "pairwise_embedding_loss": "pixelgroup.losses",
    "RecurrentGroupingLoss": "pixelgroup.losses",
    "group_pixels": "pixelgroup.postprocess",
    "extract_instances": "pixelgroup.postprocess",
}

__all__ = [
    "normalize_to_sphere",
    "gbms_step",
    "recurrent_mean_shift",
    "RecurrentMeanShift",
    "pairwise_embedding_loss",
    "RecurrentGroupingLoss",
    "group_pixels",
    "extract_instances",
]

if TYPE_CHECKING:  # for type checkers and the API reference; at run time see __getattr__
    from pixelgroup.losses import RecurrentGroupingLoss, pairwise_embedding_loss
    from pixelgroup.ops import (
        RecurrentMeanShift,
        gbms_step,
        normalize_to_sphere,
        recurrent_mean_shift,
    )
    from pixelgroup.postprocess import extract_instances, group_pixels


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pixelgroup' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
