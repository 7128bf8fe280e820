"""The studies: the gradient through mean shift (1-D) and embedding dimension vs margin.

Figures live in :mod:`pixelgroup.analysis.plots` (matplotlib is imported only there, lazily).
"""

from pixelgroup.analysis.capacity import (
    CapacityRow,
    PackingResult,
    cap_packing_upper_bound,
    capacity_row,
    empirical_max_groups,
    exact_max_groups,
    kernel_weight_at_margin,
    lp_upper_bound,
    margin_to_cosine,
    min_feasible_margin,
    pack_sphere,
    upper_bound,
)
from pixelgroup.analysis.gradient import (
    GradientStudyResult,
    euclidean_gbms,
    find_modes,
    make_mixture,
    regressor,
    run_gradient_study,
    supervised_updates,
)

__all__ = [
    "CapacityRow",
    "PackingResult",
    "cap_packing_upper_bound",
    "capacity_row",
    "empirical_max_groups",
    "exact_max_groups",
    "kernel_weight_at_margin",
    "lp_upper_bound",
    "margin_to_cosine",
    "min_feasible_margin",
    "pack_sphere",
    "upper_bound",
    "GradientStudyResult",
    "euclidean_gbms",
    "find_modes",
    "make_mixture",
    "regressor",
    "run_gradient_study",
    "supervised_updates",
]
