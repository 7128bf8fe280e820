"""Differentiable tensor ops: sphere projection, sampling, the GBMS grouping layer and the
spatial (centre-vote) embedding's Fourier features."""

from pixelgroup.ops.mean_shift import RecurrentMeanShift, gbms_step, recurrent_mean_shift
from pixelgroup.ops.sampling import sample_count, sample_indices
from pixelgroup.ops.spatial import fourier_frequencies, pixel_positions, spatial_embedding
from pixelgroup.ops.sphere import calibrated_similarity, normalize_to_sphere

__all__ = [
    "normalize_to_sphere",
    "calibrated_similarity",
    "gbms_step",
    "recurrent_mean_shift",
    "RecurrentMeanShift",
    "sample_count",
    "sample_indices",
    "spatial_embedding",
    "fourier_frequencies",
    "pixel_positions",
]
