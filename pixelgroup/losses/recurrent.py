"""The recurrent grouping loss: the pair loss on the embedding and on every GBMS iterate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from pixelgroup._checks import check_rank, check_tensor
from pixelgroup.losses.pairwise import LOSS_KINDS, pairwise_embedding_loss
from pixelgroup.ops.labels import resize_labels
from pixelgroup.ops.mean_shift import recurrent_mean_shift

__all__ = ["RecurrentGroupingLoss"]


class RecurrentGroupingLoss(nn.Module):
    """Pair loss at loop 0 (the raw embedding) and after each of T GBMS loops (METHOD.md §3.4).

    Each site draws its own fresh pixel sample; the total is
    ``sum_t iter_weights[t] * (pos_weight * pos_t + neg_weight * neg_t)``. Gradients of every
    site flow back through all earlier loops into the embedding.

    Args:
        margin: α in [0, 1] (calibrated similarity), see :func:`pairwise_embedding_loss`.
        bandwidth: δ of the GBMS loops.
        num_iters: T, the number of loops (0: the plain pair loss).
        iter_weights: T + 1 weights for loops 0..T; default all 1 (the original). Use a 0 for
            loop 0 to put losses only on the loops (the original's demo 5).
        sample_ratio, max_samples, num_samples, pos_weight, neg_weight, kind, ignore_index,
        hard_fraction: passed to :func:`pairwise_embedding_loss` at every site.
        impl: GBMS implementation, see :func:`gbms_step`.

    Forward:
        embedding ``(B, D, H, W)`` unit vectors along dim 1; labels ``(B, H', W')`` integer
        instance ids (nearest-resized to ``(H, W)`` when they differ); optional generator.
        Returns ``{"loss", "loss_iter0".."loss_iterT", "pos_iter0".., "neg_iter0"..}``.
    """

    def __init__(
        self,
        margin: float = 0.5,
        bandwidth: float = 0.1,
        num_iters: int = 5,
        *,
        iter_weights: Sequence[float] | None = None,
        sample_ratio: float | None = 0.2,
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
        if kind not in LOSS_KINDS:
            raise ValueError(f"kind must be one of {LOSS_KINDS}, got {kind!r}")
        weights = [1.0] * (num_iters + 1) if iter_weights is None else list(iter_weights)
        if len(weights) != num_iters + 1:
            raise ValueError(
                f"iter_weights needs num_iters + 1 = {num_iters + 1} values, got {len(weights)}"
            )
        self.margin, self.bandwidth, self.num_iters = margin, bandwidth, num_iters
        self.iter_weights = weights
        self.pair_kwargs: dict[str, Any] = dict(
            num_samples=num_samples,
            max_samples=max_samples,
            sample_ratio=sample_ratio,
            pos_weight=pos_weight,
            neg_weight=neg_weight,
            kind=kind,
            ignore_index=ignore_index,
            hard_fraction=hard_fraction,
        )
        self.impl = impl

    def forward(
        self,
        embedding: torch.Tensor,
        labels: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        embedding = check_tensor(embedding, "embedding")
        check_rank(embedding, (4,), "embedding", "(B, D, H, W)")
        labels = check_tensor(labels, "labels")
        check_rank(labels, (3,), "labels", "(B, H, W)")
        if labels.shape[0] != embedding.shape[0]:
            raise ValueError(
                f"labels batch size {labels.shape[0]} != embedding batch size {embedding.shape[0]}"
            )
        b, _, h, w = embedding.shape
        points = embedding.flatten(2).transpose(1, 2)
        flat_labels = resize_labels(labels, (h, w)).reshape(b, h * w)
        iterates = recurrent_mean_shift(points, self.bandwidth, self.num_iters, impl=self.impl)
        out: dict[str, torch.Tensor] = {}
        total = embedding.new_zeros(())
        for t, (x, weight) in enumerate(zip(iterates, self.iter_weights, strict=True)):
            terms = pairwise_embedding_loss(
                x, flat_labels, self.margin, generator=generator, **self.pair_kwargs
            )
            out[f"loss_iter{t}"] = terms["loss"]
            out[f"pos_iter{t}"] = terms["pos"]
            out[f"neg_iter{t}"] = terms["neg"]
            total = total + weight * terms["loss"]
        out["loss"] = total
        return out

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, bandwidth={self.bandwidth}, num_iters={self.num_iters}, "
            f"iter_weights={self.iter_weights}, {self.pair_kwargs}"
        )
