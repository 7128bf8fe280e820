"""The pixel-pair embedding loss with instance-aware weights (docs/method.md).

For unit embeddings x and calibrated similarity s_ij = (1 + x_i . x_j) / 2 in [0, 1], over the
sampled pixels P of one image (self-pairs and both orderings included)::

    L = pos_weight * sum_ij w_ij [y_i = y_j] f_pos(s_ij)
      + neg_weight * sum_ij w_ij [y_i != y_j] f_neg(s_ij)

with ``w_ij = 1 / (n_{y_i} n_{y_j} K^2)`` (n_k = sampled pixels of label k, K = labels in the
sample), so every ordered block of label pairs, diagonal blocks included, weighs exactly 1/K^2:
small instances and the background count as much as large ones.

``kind`` picks (f_pos, f_neg):

* ``"linear"`` (the paper's, default): ``1 - s`` and ``max(0, s - margin)``.
* ``"squared"``: ``(1 - s)^2`` and ``max(0, s - margin)^2``. This does not reproduce the
  original's hand-written MATLAB gradients (docs/method.md): the hinge's backward there is
  ``max(0, s - margin)``, so only the negative term's gradient matches, up to a factor of 2;
  the MATLAB positive term's backward is ``-s`` (it optimises ``(1 - s^2) / 2``), not the
  ``-2 (1 - s)`` of the square here.
* ``"logistic"``: binary cross-entropy on ``s' = (cos + 1.1) / 2.2`` (kept inside (0, 1) as
  the original suggests): ``-log s'`` and ``-log(1 - s')``; ``margin`` is unused.

Hard pair mining: the linear hinge already mines implicitly, since negatives below the margin
have zero loss and zero gradient, and losses after GBMS loops only see the pairs clustering does
not fix. ``hard_fraction=f`` mines explicitly on top of that: within the positive pairs and
within the negative pairs it keeps only the fraction ``f`` with the largest loss, rescaled so
each set keeps its total weight; easy violators then stop diluting the gradient.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from pixelgroup._checks import (
    check_choice,
    check_finite,
    check_finite_number,
    check_generator,
    check_in_range,
    check_int,
    check_labels,
    check_optional_int,
    check_points,
    check_unit_rows,
)
from pixelgroup.ops.attention import no_autocast
from pixelgroup.ops.sampling import sample_count, sample_indices

__all__ = ["pairwise_embedding_loss", "instance_pair_weights", "check_pair_options", "LOSS_KINDS"]

LOSS_KINDS = ("linear", "squared", "logistic")
_HALF = (torch.float16, torch.bfloat16)  # computed in float32


def check_pair_options(
    *,
    margin: object,
    num_samples: object,
    max_samples: object,
    sample_ratio: object,
    pos_weight: object,
    neg_weight: object,
    kind: object,
    ignore_index: object,
    hard_fraction: object,
) -> dict[str, Any]:
    """The settings of :func:`pairwise_embedding_loss`, checked and as Python scalars (NumPy
    scalars and 0-d tensors are accepted). Raises ``ValueError`` / ``TypeError`` naming the
    setting and its value."""
    return dict(
        margin=check_in_range(margin, "margin", 0.0, 1.0),
        num_samples=None if num_samples is None else check_int(num_samples, "num_samples", 1),
        max_samples=check_int(max_samples, "max_samples", 1),
        sample_ratio=None
        if sample_ratio is None
        else check_in_range(sample_ratio, "sample_ratio", 0.0, 1.0, low_open=True),
        pos_weight=check_finite_number(pos_weight, "pos_weight", minimum=0.0),
        neg_weight=check_finite_number(neg_weight, "neg_weight", minimum=0.0),
        kind=check_choice(kind, "kind", LOSS_KINDS),
        ignore_index=check_optional_int(ignore_index, "ignore_index"),
        hard_fraction=None
        if hard_fraction is None
        else check_in_range(hard_fraction, "hard_fraction", 0.0, 1.0, low_open=True),
    )


def instance_pair_weights(labels: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Instance-aware pair weights ``(N, N)`` for labels ``(N,)``: ``1 / (n_a n_b K^2)``.

    Every ordered block of label pairs (a, b) sums to exactly ``1 / K^2``; all weights sum to 1.
    """
    _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    per_pixel = 1.0 / counts.to(dtype)[inverse]
    return torch.outer(per_pixel, per_pixel) / counts.numel() ** 2


def _pair_costs(s: torch.Tensor, cos: torch.Tensor, margin: float, kind: str):
    if kind == "linear":
        return 1.0 - s, torch.relu(s - margin)
    if kind == "squared":
        return (1.0 - s) ** 2, torch.relu(s - margin) ** 2
    p = (cos + 1.1) / 2.2
    return -torch.log(p), -torch.log1p(-p)


def _keep_hardest(weights: torch.Tensor, costs: torch.Tensor, fraction: float) -> torch.Tensor:
    """Zero all but the ``fraction`` costliest of the pairs with non-zero weight; keep the sum."""
    candidates = weights > 0
    count = int(candidates.sum())
    keep = math.ceil(fraction * count)
    if keep >= count or keep == 0:
        return weights
    scores = torch.where(candidates, costs.detach(), costs.new_full((), -1.0))
    threshold = torch.topk(scores.flatten(), keep).values[-1]
    kept = weights * (scores >= threshold)
    return kept * (weights.sum() / kept.sum())


def _image_loss(x, y, margin, kind, hard_fraction):
    cos = x @ x.T
    s = 0.5 * (1.0 + cos)
    weights = instance_pair_weights(y, x.dtype)
    same = y[:, None] == y[None, :]
    pos_cost, neg_cost = _pair_costs(s, cos, margin, kind)
    pos_w, neg_w = weights * same, weights * ~same
    if hard_fraction is not None:
        pos_w = _keep_hardest(pos_w, pos_cost, hard_fraction)
        neg_w = _keep_hardest(neg_w, neg_cost, hard_fraction)
    return (pos_w * pos_cost).sum(), (neg_w * neg_cost).sum()


def pairwise_embedding_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    margin: float = 0.5,
    *,
    num_samples: int | None = None,
    max_samples: int = 4000,
    sample_ratio: float | None = None,
    pos_weight: float = 1.0,
    neg_weight: float = 1.0,
    kind: str = "linear",
    ignore_index: int | None = 255,
    generator: torch.Generator | None = None,
    hard_fraction: float | None = None,
) -> dict[str, torch.Tensor]:
    """Instance-aware pixel-pair loss on unit embeddings, averaged over the batch.

    Args:
        embeddings: ``(B, N, D)`` unit rows (pixels of each image; norms up to 1.01 are
            accepted, longer rows are an error).
        labels: ``(B, N)`` integer instance ids; background is an ordinary id.
        margin: α in calibrated space [0, 1]: different-label pairs cost ``max(0, s - α)``.
            0.5 means "cosine <= 0" (VOC); the toy used 0.1 (infeasible for >= 3 groups).
        num_samples: draw exactly this many valid pixels per image (without replacement).
        max_samples: cap >= 1 applied with ``sample_ratio`` (the original: 4000).
        sample_ratio: draw ``floor(ratio * valid)`` pixels per image (the original: 0.2).
            With neither ``num_samples`` nor ``sample_ratio``, every valid pixel is used and
            the loss is deterministic.
        pos_weight: λ_reg >= 0, weight of the same-label term.
        neg_weight: λ_mm >= 0, weight of the different-label term (5 for VOC in the original).
        kind: ``"linear"``, ``"squared"`` or ``"logistic"`` (see the module docstring).
        ignore_index: pixels with this label take no part (``None``: none ignored).
        generator: RNG for the pixel sample (a ``torch.Generator`` or ``None``).
        hard_fraction: keep only this fraction (0, 1] of the hardest positive and negative
            pairs (explicit hard pair mining); ``None`` keeps all.

    Scalars may be Python numbers, NumPy scalars or 0-d tensors. Every setting is checked
    (:func:`check_pair_options`), and so are the embeddings (B, N, D >= 1, finite, unit rows).

    Returns:
        ``{"pos", "neg", "loss"}`` scalar ``()`` tensors in the embeddings' dtype (float32 for
        float16 / bfloat16 embeddings, which are computed in float32 with autocast off: in
        float16 the pair weights ``1 / n²`` underflow), means over the images that have valid
        pixels; backpropagate
        ``"loss" = pos_weight * pos + neg_weight * neg``.

    Cost: O(n²·D) time and O(n²) memory per image for n sampled pixels (n = 4000: 16 M pairs).

    Example:
        >>> from pixelgroup.ops import normalize_to_sphere
        >>> x = normalize_to_sphere(torch.randn(2, 64, 8), dim=-1)
        >>> y = torch.randint(0, 3, (2, 64))
        >>> sorted(pairwise_embedding_loss(x, y))
        ['loss', 'neg', 'pos']
    """
    embeddings = check_points(embeddings, "embeddings")
    labels = check_labels(labels, tuple(embeddings.shape[:2]))
    opts = check_pair_options(
        margin=margin,
        num_samples=num_samples,
        max_samples=max_samples,
        sample_ratio=sample_ratio,
        pos_weight=pos_weight,
        neg_weight=neg_weight,
        kind=kind,
        ignore_index=ignore_index,
        hard_fraction=hard_fraction,
    )
    generator = check_generator(generator)
    check_finite(embeddings, "embeddings")
    check_unit_rows(embeddings, "embeddings")
    with no_autocast(embeddings.device):
        pos, neg = _batch_loss(
            embeddings.float() if embeddings.dtype in _HALF else embeddings,
            labels,
            opts,
            generator,
        )
    return {"pos": pos, "neg": neg, "loss": opts["pos_weight"] * pos + opts["neg_weight"] * neg}


def _batch_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    opts: dict[str, Any],
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``(pos, neg)`` terms over the images of ``embeddings (B, N, D)`` with valid pixels
    in ``labels (B, N)``, for checked options ``opts``."""
    ignore_index = opts["ignore_index"]
    samples = []
    for x, y in zip(embeddings, labels, strict=True):
        valid = (
            (y != ignore_index)
            if ignore_index is not None
            else torch.ones_like(y, dtype=torch.bool)
        )
        candidates = valid.nonzero().squeeze(1)
        if candidates.numel() == 0:
            continue
        count = sample_count(
            candidates.numel(),
            num_samples=opts["num_samples"],
            sample_ratio=opts["sample_ratio"],
            max_samples=opts["max_samples"],
        )
        idx = sample_indices(candidates, count, generator)
        samples.append((x[idx], y[idx]))
    if not samples:
        raise ValueError(
            f"labels: every pixel of every image equals ignore_index={ignore_index}; "
            "there are no pixels to compare"
        )
    pos, neg = _pair_terms(samples, opts["margin"], opts["kind"], opts["hard_fraction"])
    return pos.mean(), neg.mean()


def _pair_terms(
    samples: list[tuple[torch.Tensor, torch.Tensor]],
    margin: float,
    kind: str,
    hard_fraction: float | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B',)`` pos and neg terms of each image's sampled ``(n, D)`` points and ``(n,)``
    labels: the linear kind on images of equal n at once (:func:`_linear_terms`), any other
    image by image (:func:`_image_loss`)."""
    if kind == "linear" and hard_fraction is None and len({len(y) for _, y in samples}) == 1:
        return _linear_terms(
            torch.stack([x for x, _ in samples]), torch.stack([y for _, y in samples]), margin
        )
    terms = [_image_loss(x, y, margin, kind, hard_fraction) for x, y in samples]
    return torch.stack([p for p, _ in terms]), torch.stack([n for _, n in terms])


def _linear_terms(
    x: torch.Tensor, y: torch.Tensor, margin: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The linear kind's ``(B,)`` pos and neg terms of ``(B, n, D)`` points with ``(B, n)``
    labels, equal to :func:`_image_loss` per image. The positive term needs no pairs: over
    the pairs of label k, with weights ``1 / (n_k² K²)``, the mean of ``1 - s_ij =
    (1 - x_i·x_j) / 2`` is ``(1 - |m_k|²) / 2`` for the mean ``m_k`` of its points. The
    negative term's hinge takes the ``(B, n, n)`` cosines, in place where autograd allows.
    Cost O(B·n²·D) for the cosines, O(B·n·D) for the positive term."""
    b, n, d = x.shape
    low = y.min()
    span = y.max() - low + 1  # (image, label) -> one int64 key: a 1-D unique is fast
    image = torch.arange(b, device=y.device)[:, None]
    keys, inverse, counts = torch.unique(
        (image * span + (y - low)).flatten(), return_inverse=True, return_counts=True
    )
    label_image = torch.div(keys, span, rounding_mode="floor")
    num_labels = torch.bincount(label_image, minlength=b).to(x.dtype)  # K of each image
    sums = x.new_zeros(len(counts), d).index_add_(0, inverse, x.reshape(b * n, d))
    size = counts.to(x.dtype)
    pos_k = 0.5 * (1.0 - (sums * sums).sum(1) / size**2)
    pos = x.new_zeros(b).index_add_(0, label_image, pos_k) / num_labels**2
    per_pixel = (1.0 / size)[inverse].view(b, n)
    label = inverse.view(b, n)
    hinge = torch.baddbmm(x.new_full((), 0.5 - margin), x, x.transpose(1, 2), alpha=0.5).relu()
    hinge = hinge.masked_fill(label[:, :, None] == label[:, None, :], 0.0)
    neg = torch.einsum("bi,bij,bj->b", per_pixel, hinge, per_pixel) / num_labels**2
    return pos, neg
