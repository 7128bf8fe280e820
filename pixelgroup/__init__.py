"""pixelgroup: recurrent pixel embedding for instance grouping (Kong & Fowlkes, CVPR 2018).

Learn a per-pixel embedding on the unit hypersphere with an instance-aware pair loss, and
group it with a differentiable recurrent mean-shift (GBMS) layer.
"""

from pixelgroup.losses import RecurrentGroupingLoss, pairwise_embedding_loss
from pixelgroup.ops import RecurrentMeanShift, gbms_step, normalize_to_sphere, recurrent_mean_shift

__version__ = "0.1.0"

__all__ = [
    "normalize_to_sphere",
    "gbms_step",
    "recurrent_mean_shift",
    "RecurrentMeanShift",
    "pairwise_embedding_loss",
    "RecurrentGroupingLoss",
]
