"""Partial annotation: instances left unlabelled, marked :data:`IGNORE_LABEL` so no loss sees them.

A user who labels only some of the objects of an image marks the rest *unannotated* (the folder
dataset's mask value :data:`UNANNOTATED`, read as :data:`IGNORE_LABEL`), never background. The
pair loss samples no pixel labelled :data:`IGNORE_LABEL`, at loop 0 or after any GBMS loop, and
the semantic head's cross-entropy skips them (``tasks/instance.py``). :class:`PartialAnnotation`
simulates such labels on a fully annotated dataset (the toy's ``annotated_fraction``): in every
sample a seeded share of the instances becomes unannotated; the background stays labelled.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from pixelgroup.data.coco_dataset import IGNORE_LABEL
from pixelgroup.data.sample import InstanceSample

__all__ = ["PartialAnnotation", "hide_instances", "hidden_ids", "UNANNOTATED"]

UNANNOTATED = 65535
"""Mask value of an unannotated pixel in a folder dataset's (16-bit) mask PNG."""


def hidden_ids(ids: np.ndarray, fraction: float, seed: list[int]) -> np.ndarray:
    """The ids left unannotated when ``round(fraction · K)`` of the K instance ``ids (K,)``
    stay annotated: a seeded choice (``numpy.random.default_rng(seed)``), ``(K - kept,)``."""
    return np.random.default_rng(seed).permutation(ids)[round(fraction * len(ids)) :]


def hide_instances(sample: InstanceSample, fraction: float, seed: list[int]) -> InstanceSample:
    """``sample`` with all but ``round(fraction · K)`` of its K instances (a seeded choice,
    :func:`hidden_ids`) relabelled :data:`IGNORE_LABEL` in ``instance (H, W)`` and
    ``semantic (H, W)``."""
    ids = np.array([int(i) for i in torch.unique(sample.instance) if i > 0], dtype=np.int64)
    hidden = hidden_ids(ids, fraction, seed)
    if len(hidden) == 0:
        return sample
    mask = torch.isin(sample.instance, torch.as_tensor(hidden, dtype=sample.instance.dtype))
    return InstanceSample(
        image=sample.image,
        instance=sample.instance.masked_fill(mask, IGNORE_LABEL),
        semantic=sample.semantic.masked_fill(mask, IGNORE_LABEL),
    )


class PartialAnnotation(Dataset):
    """``dataset`` whose item ``i`` keeps ``round(fraction · K)`` of its K instances annotated
    (chosen by ``(seed, i)``, the same on every epoch and in every worker); the others become
    :data:`IGNORE_LABEL`, the background stays 0."""

    def __init__(self, dataset: Dataset, fraction: float, seed: int = 0) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"annotated fraction must lie in [0, 1], got {fraction}")
        self.dataset, self.fraction, self.seed = dataset, fraction, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> InstanceSample:
        return hide_instances(self.dataset[index], self.fraction, [self.seed, index])
