"""Random pixel sampling for the pair loss, with an explicit ``torch.Generator``."""

from __future__ import annotations

import math

import torch

__all__ = ["sample_count", "sample_indices"]


def sample_count(
    num_valid: int,
    *,
    num_samples: int | None = None,
    sample_ratio: float | None = None,
    max_samples: int = 4000,
) -> int:
    """How many pixels to draw from ``num_valid`` candidates.

    ``num_samples`` wins if given; else ``min(floor(sample_ratio * num_valid), max_samples)``
    (the original: ratio 0.2, cap 4000); else every pixel. Never more than ``num_valid`` and,
    when there is at least one candidate, never fewer than 1.
    """
    if num_samples is not None:
        n = num_samples
    elif sample_ratio is not None:
        n = min(math.floor(sample_ratio * num_valid), max_samples)
    else:
        n = num_valid
    return max(min(n, num_valid), min(1, num_valid))


def sample_indices(
    candidates: torch.Tensor, count: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``count`` entries of the 1-D index tensor ``candidates`` drawn without replacement.

    When ``count`` covers every candidate, they are returned in order (deterministic).
    """
    if count >= candidates.numel():
        return candidates
    gen_device = generator.device if generator is not None else "cpu"
    perm = torch.randperm(candidates.numel(), generator=generator, device=gen_device)
    return candidates[perm[:count].to(candidates.device)]
