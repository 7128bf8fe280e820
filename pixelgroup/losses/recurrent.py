"""The recurrent grouping loss: the pair loss on the embedding and on every GBMS iterate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pixelgroup._checks import (
    check_bandwidth,
    check_choice,
    check_finite,
    check_generator,
    check_int,
    check_non_negative_int,
    check_rank,
    check_tensor,
    check_unit_rows,
    check_weights,
)
from pixelgroup.losses.pairwise import check_pair_options, pairwise_embedding_loss
from pixelgroup.ops.labels import resize_labels
from pixelgroup.ops.mean_shift import GBMS_IMPLS, recurrent_mean_shift
from pixelgroup.ops.sphere import normalize_to_sphere, pool_to_sphere

__all__ = ["RecurrentGroupingLoss"]


def _per_site(value: object, name: str, sites: int) -> list[object]:
    """One value for every site, or the ``sites`` values of a list/tuple (checked later)."""
    if isinstance(value, (list, tuple)):
        if len(value) != sites:
            raise ValueError(
                f"{name} must be one value or {sites} values (num_iters + 1: loop 0..T), "
                f"got {len(value)}: {list(value)}"
            )
        return list(value)
    return [value] * sites


class RecurrentGroupingLoss(nn.Module):
    """Pair loss at loop 0 (the raw embedding) and after each of T GBMS loops (docs/method.md).

    Each site draws its own fresh pixel sample; the total is
    ``sum_t iter_weights[t] * (pos_weight * pos_t + neg_weight * neg_t)``. Gradients of every
    site flow back through all earlier loops into the embedding.

    Args:
        margin: α in [0, 1] (calibrated similarity), see :func:`pairwise_embedding_loss`: one
            value for every site, or T + 1 values for loops 0..T (the original fine-tuned its
            toy model with α = 0.07 on the loops and the stored model's margin at loop 0).
        bandwidth: δ of the GBMS loops (>= 1e-8).
        num_iters: T >= 0, the number of loops (0: the plain pair loss).
        iter_weights: T + 1 finite weights >= 0 for loops 0..T; default all 1 (the original).
            Use a 0 for loop 0 to put losses only on the loops (the original's demo 5).
        sample_ratio: fraction of the pixels sampled at a site (``None``: ``num_samples`` or
            ``max_samples``), one value or T + 1 values like ``margin``.
        loop_stride: s >= 1: loop 0 sees the embedding as given and the T loops run on its
            s x s average-pooled, re-normalised copy (s² times fewer points: GBMS is quadratic
            in N); pixelgroup's own approximation: the original's loops take the whole map
            (docs/toy.md, "Differences from the original").
        max_samples, num_samples, pos_weight, neg_weight, kind, ignore_index, hard_fraction:
            passed to :func:`pairwise_embedding_loss` at every site.
        impl: GBMS implementation, see :func:`gbms_step`.

    Every setting is checked here, in the constructor (``ValueError`` / ``TypeError`` naming
    the setting and its value); scalars may be Python numbers, NumPy scalars or 0-d tensors.

    Forward:
        embedding ``(B, D, H, W)`` unit vectors along dim 1; labels ``(B, H', W')`` integer
        instance ids (nearest-resized to ``(H, W)`` when they differ); optional
        ``torch.Generator``. Returns ``{"loss", "loss_iter0".."loss_iterT", "pos_iter0"..,
        "neg_iter0"..}``, each a scalar ``()`` tensor. A volume: embedding ``(B, D, Z, Y, X)``,
        labels ``(B, Z', Y', X')``; its loops' pooling is 1 x s x s (YX only).
    """

    def __init__(
        self,
        margin: float | Sequence[float] = 0.5,
        bandwidth: float = 0.1,
        num_iters: int = 5,
        *,
        iter_weights: Sequence[float] | None = None,
        sample_ratio: float | Sequence[float] | None = 0.2,
        loop_stride: int = 1,
        max_samples: int = 4000,
        num_samples: int | None = None,
        pos_weight: float = 1.0,
        neg_weight: float = 1.0,
        kind: str = "linear",
        ignore_index: int | None = 255,
        hard_fraction: float | None = None,
        impl: str = "auto",
    ) -> None:
        super().__init__()
        self.bandwidth = check_bandwidth(bandwidth)
        self.num_iters = check_non_negative_int(num_iters, "num_iters")
        sites = self.num_iters + 1
        if iter_weights is None:
            self.iter_weights = [1.0] * sites
        else:
            self.iter_weights = check_weights(iter_weights, "iter_weights", sites, "num_iters + 1")
        self.loop_stride = check_int(loop_stride, "loop_stride", 1)
        self.site_options: list[dict[str, Any]] = [
            check_pair_options(
                margin=site_margin,
                num_samples=num_samples,
                max_samples=max_samples,
                sample_ratio=site_ratio,
                pos_weight=pos_weight,
                neg_weight=neg_weight,
                kind=kind,
                ignore_index=ignore_index,
                hard_fraction=hard_fraction,
            )
            for site_margin, site_ratio in zip(
                _per_site(margin, "margin", sites),
                _per_site(sample_ratio, "sample_ratio", sites),
                strict=True,
            )
        ]
        self.impl = check_choice(impl, "impl", GBMS_IMPLS)

    def forward(
        self,
        embedding: torch.Tensor,
        labels: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        embedding = check_tensor(embedding, "embedding")
        check_rank(embedding, (4, 5), "embedding", "(B, D, H, W) or (B, D, Z, Y, X)")
        if not embedding.is_floating_point():
            raise TypeError(
                f"embedding must be a floating-point tensor, got dtype {embedding.dtype}"
            )
        volume = embedding.dim() == 5
        if min(embedding.shape) == 0:
            layout = "(B, D, Z, Y, X)" if volume else "(B, D, H, W)"
            raise ValueError(
                f"embedding must have B >= 1 images with D, H, W >= 1 {layout}, "
                f"got shape {tuple(embedding.shape)}"
            )
        labels = check_tensor(labels, "labels")
        check_rank(
            labels, (embedding.dim() - 1,), "labels", "(B, Z, Y, X)" if volume else "(B, H, W)"
        )
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise TypeError(f"labels must be an integer tensor, got dtype {labels.dtype}")
        if labels.shape[0] != embedding.shape[0]:
            raise ValueError(
                f"labels batch size {labels.shape[0]} != embedding batch size {embedding.shape[0]}"
            )
        generator = check_generator(generator)
        check_finite(embedding, "embedding")
        check_unit_rows(embedding, "embedding", dim=1, what="vectors along dim 1 (D)")
        if embedding.dtype in (torch.float16, torch.bfloat16):  # as the pair loss: float32
            embedding = embedding.float()
        points, flat_labels = _flatten(embedding, labels)
        iterates, loop_labels = [points], flat_labels
        if self.num_iters > 0:
            loop_points = points
            if self.loop_stride > 1:
                pooled = (_pool_volume if volume else pool_to_sphere)(embedding, self.loop_stride)
                loop_points, loop_labels = _flatten(pooled, labels)
            loops = recurrent_mean_shift(
                loop_points, self.bandwidth, self.num_iters, impl=self.impl
            )
            iterates += loops[1:]
        out: dict[str, torch.Tensor] = {}
        total = embedding.new_zeros(())
        for t, (x, weight, options) in enumerate(
            zip(iterates, self.iter_weights, self.site_options, strict=True)
        ):
            y = flat_labels if t == 0 else loop_labels
            terms = pairwise_embedding_loss(x, y, generator=generator, **options)
            out[f"loss_iter{t}"] = terms["loss"]
            out[f"pos_iter{t}"] = terms["pos"]
            out[f"neg_iter{t}"] = terms["neg"]
            total = total + weight * terms["loss"]
        out["loss"] = total
        return out

    def extra_repr(self) -> str:
        return (
            f"bandwidth={self.bandwidth}, num_iters={self.num_iters}, "
            f"iter_weights={self.iter_weights}, loop_stride={self.loop_stride}, "
            f"site_options={self.site_options}"
        )


def _flatten(embedding: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, D, h, w)`` -> points ``(B, h·w, D)`` and labels ``(B, H, W)`` nearest-resized to
    ``(h, w)`` -> ``(B, h·w)``; a volume ``(B, D, z, y, x)`` and ``(B, Z, Y, X)`` alike."""
    b, grid = embedding.shape[0], tuple(embedding.shape[2:])
    return embedding.flatten(2).transpose(1, 2), resize_labels(labels, grid).reshape(b, -1)


def _pool_volume(embedding: torch.Tensor, stride: int) -> torch.Tensor:
    """A volume's embedding ``(B, D, Z, Y, X)`` 1 x s x s average-pooled (YX only: z is
    usually the coarse axis) and back on the sphere -> ``(B, D, Z, ceil(Y/s), ceil(X/s))``."""
    pooled = F.avg_pool3d(embedding, (1, stride, stride), ceil_mode=True)
    return normalize_to_sphere(pooled, dim=1)
