"""How large the annotated objects are: read from the training masks at the start of training.

The spatial embedding's kernel length (``model.options.spatial_scale``) and the training crop
should suit the objects; :func:`object_sizes` measures them (equivalent diameters of the
instances of a few masks) and :func:`spatial_scale_advice` says when the scale does not fit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

__all__ = ["ObjectSizes", "object_sizes", "spatial_scale_advice"]


@dataclass(frozen=True)
class ObjectSizes:
    """Equivalent diameters ``sqrt(4 area / pi)`` in pixels of ``count`` instances."""

    count: int
    median: float
    low: float  # 10th percentile
    high: float  # 90th percentile

    def __str__(self) -> str:
        return (
            f"{self.count} objects, diameter median {self.median:.0f} px "
            f"(10-90 %: {self.low:.0f}-{self.high:.0f} px)"
        )


def object_sizes(masks: Iterable[torch.Tensor]) -> ObjectSizes | None:
    """Sizes of the instances (ids > 0) of ``(H, W)`` integer masks; ``None`` when there is
    none.

    Example:
        >>> m = torch.zeros(20, 20, dtype=torch.long); m[:10, :10] = 1
        >>> round(object_sizes([m]).median, 1)
        11.3
    """
    areas: list[torch.Tensor] = []
    for mask in masks:
        ids = mask[mask > 0].flatten()
        if ids.numel():
            areas.append(torch.unique(ids, return_counts=True)[1].double())
    if not areas:
        return None
    diameters = (torch.cat(areas) * 4 / math.pi).sqrt()
    q = torch.quantile(diameters, torch.tensor([0.5, 0.1, 0.9], dtype=torch.float64)).tolist()
    return ObjectSizes(count=len(diameters), median=q[0], low=q[1], high=q[2])


def spatial_scale_advice(sizes: ObjectSizes, scale: float) -> str | None:
    """A one-line warning when a spatial kernel of ``scale`` pixels misfits objects of
    ``sizes`` (outside 1/6..1/2 of their median diameter: nuclei of 39 px scored 0.62 at
    a scale of 6 and 0.74 at 10, docs/real_data.md), else ``None``."""
    if sizes.median / 6 <= scale <= sizes.median / 2:
        return None
    suggested = max(1.0, round(sizes.median / 4, 1))
    return (
        f"model.options.spatial_scale is {scale:g} px but the training objects are "
        f"~{sizes.median:.0f} px across: neighbours may merge or objects split; "
        f"--set model.options.spatial_scale={suggested:g} (a quarter of their diameter) suits them"
    )
