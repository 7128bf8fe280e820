"""Model-agnostic metrics and their evaluators (``reset / process / evaluate``).

Submodules: ``instance`` (AP, MBO, covering, ARI); other tasks add their own modules.
"""

from pixelgroup.metrics.instance import (
    InstanceEvaluator,
    average_precision,
    mean_best_overlap,
    segmentation_covering,
)

__all__ = ["InstanceEvaluator", "average_precision", "mean_best_overlap", "segmentation_covering"]
