"""How large the annotated objects are: read from the training masks at the start of training.

The spatial embedding's kernel length (``model.options.spatial_scale``) and the grouping's
smallest object (``grouping.min_area``) should suit the objects; :func:`object_sizes` measures
them (equivalent diameters of the instances of a few masks), :func:`fitted_spatial_scale` and
:func:`fitted_min_area` choose both from them (a config's ``auto``), :func:`fitted_scale` the
scale training shows the images at, and
:func:`spatial_scale_advice` says when a given scale does not fit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

__all__ = [
    "ObjectSizes",
    "object_sizes",
    "fitted_spatial_scale",
    "FITTED_KERNEL_FRACTION",
    "fitted_scale",
    "fitted_min_area",
    "spatial_scale_advice",
]


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

    def scaled(self, factor: float) -> ObjectSizes:
        """The same objects seen at ``factor`` times their size (an image resized by it)."""
        return ObjectSizes(self.count, self.median * factor, self.low * factor, self.high * factor)


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


FITTED_KERNEL_FRACTION = 3 / 8
"""The spatial kernel's length as a share of the median object's diameter (9 px for ~24 px
nuclei): against a quarter and a half, on the held-out sets of docs/real_data.md ("The
kernel's length"), better or as good on every set of nuclei and on the photos."""


def fitted_spatial_scale(sizes: ObjectSizes) -> float:
    """The spatial kernel's length for objects of ``sizes``: :data:`FITTED_KERNEL_FRACTION`
    of their median diameter (0.1 px steps, at least 1 px; 9 for ~24 px nuclei).

    Example:
        >>> fitted_spatial_scale(ObjectSizes(count=50, median=39.0, low=21.0, high=46.0))
        14.6
    """
    return max(1.0, round(sizes.median * FITTED_KERNEL_FRACTION, 1))


FITTED_OBJECT_FRACTION = 3 / 8
"""The median object's share of the crop side that :func:`fitted_scale` aims at: the ``cells``
config was tuned on ~24 px nuclei in 64 px crops."""


def fitted_scale(sizes: ObjectSizes, crop: tuple[int, ...]) -> tuple[float, float]:
    """The zoom range ``(lo, hi)`` of training crops of side ``crop`` for objects of ``sizes``:
    around 1 (the native scale) for objects up to :data:`FITTED_OBJECT_FRACTION` of the
    crop's shorter side, around the factor that shows the median object at that size for
    larger ones (nuclei of 36 px in 64 px crops: 0.67), from 0.8 to 1.25 times it.

    Example:
        >>> fitted_scale(ObjectSizes(count=50, median=48.0, low=30.0, high=60.0), (64, 64))
        (0.4, 0.625)
    """
    centre = min(1.0, FITTED_OBJECT_FRACTION * min(crop) / sizes.median)
    return (round(0.8 * centre, 3), round(1.25 * centre, 3))


def fitted_min_area(sizes: ObjectSizes) -> int:
    """The smallest group kept, in pixels, for objects of ``sizes``: a quarter of the area of
    an object of the 10th-percentile diameter, so fragments of an object join it while small
    objects stay (nuclei of 39 px: acc50 0.61 at 30 px, 0.78 at 95, docs/real_data.md).

    Example:
        >>> fitted_min_area(ObjectSizes(count=50, median=39.0, low=21.0, high=46.0))
        87
    """
    return max(1, round(math.pi * sizes.low**2 / 16))


def spatial_scale_advice(sizes: ObjectSizes, scale: float) -> str | None:
    """A one-line warning when a spatial kernel of ``scale`` pixels misfits objects of
    ``sizes`` (outside 1/6..1/2 of their median diameter: nuclei of 39 px scored 0.62 at
    a scale of 6 and 0.74 at 10, docs/real_data.md, with an older recipe), else ``None``."""
    if sizes.median / 6 <= scale <= sizes.median / 2:
        return None
    suggested = fitted_spatial_scale(sizes)
    return (
        f"model.options.spatial_scale is {scale:g} px but the training objects are "
        f"~{sizes.median:.0f} px across: neighbours may merge or objects split; "
        f"--set model.options.spatial_scale={suggested:g} (3/8 of their diameter) or auto "
        "suits them"
    )
