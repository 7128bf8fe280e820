"""Differentiable tensor ops: sphere projection, sampling and the GBMS grouping layer."""

from pixelgroup.ops.mean_shift import RecurrentMeanShift, gbms_step, recurrent_mean_shift
from pixelgroup.ops.sampling import sample_count, sample_indices
from pixelgroup.ops.sphere import calibrated_similarity, normalize_to_sphere

__all__ = [
    "normalize_to_sphere",
    "calibrated_similarity",
    "gbms_step",
    "recurrent_mean_shift",
    "RecurrentMeanShift",
    "sample_count",
    "sample_indices",
]
