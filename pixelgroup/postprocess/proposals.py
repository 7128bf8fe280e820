"""Ranked, class-agnostic mask proposals from one unit embedding.

The original never released its proposal generation or ranking (docs/method.md,
docs/proposals.md); this is our design:

1. **Candidates.** Group the pixels (:func:`pixelgroup.postprocess.group_pixels`: GBMS then
   density-seeded grouping) once per bandwidth δ and loop count T. Every group is a candidate,
   and so is the union of every two groups that touch (4-neighbours), which recovers objects
   that a small δ splits into parts.
2. **Score** each candidate on the input embedding (not the shifted one), three cues in [0, 1]:

   * compactness ``c``: mean calibrated similarity ``(1 + cos)/2`` of its pixels to its
     mean direction (a real instance is tight; a union of two instances is not);
   * contrast ``1 - s_ring``: one minus the calibrated similarity between its mean direction
     and that of a ring of pixels around it (an object differs from what surrounds it; a mask
     with no ring, i.e. the whole image, gets 0);
   * border ``b``: the fraction of the image border it covers (the background usually covers
     most of it), entering as ``1 - b/2``.

   ``score = c · (1 - s_ring) · (1 - b/2)``.
3. **Deduplicate**: in score order, drop a candidate whose mask IoU with a kept one exceeds
   ``dedup_iou`` (the same mask found at several δ is kept once, with its best score).
4. **Upsample** the top ``max_proposals`` to the image size (bilinear on the 0/1 mask, then
   >= 0.5) and return them highest score first.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import masks_to_boxes

from pixelgroup._checks import check_count, check_positive, check_rank, check_size, check_tensor
from pixelgroup.errors import InputError
from pixelgroup.postprocess.grouping import group_pixels

__all__ = ["Proposals", "propose", "score_masks"]


@dataclass(frozen=True)
class Proposals:
    """K mask proposals of one image, highest score first.

    Attributes:
        masks: ``(K, H, W)`` bool at image resolution.
        boxes: ``(K, 4)`` float32 ``x0, y0, x1, y1`` (inclusive pixel indices, as
            :func:`torchvision.ops.masks_to_boxes`).
        scores: ``(K,)`` float32, non-increasing.
    """

    masks: torch.Tensor
    boxes: torch.Tensor
    scores: torch.Tensor

    def __len__(self) -> int:
        return self.masks.shape[0]


def _adjacent_pairs(labels: torch.Tensor) -> list[tuple[int, int]]:
    """Pairs ``(a, b)``, a < b, of labels that are 4-neighbours somewhere in ``(H, W)``."""
    pairs = torch.cat(
        [
            torch.stack([labels[:, :-1].flatten(), labels[:, 1:].flatten()], 1),
            torch.stack([labels[:-1].flatten(), labels[1:].flatten()], 1),
        ]
    )
    pairs = pairs[pairs[:, 0] != pairs[:, 1]].sort(dim=1).values
    return [tuple(p) for p in torch.unique(pairs, dim=0).tolist()]


def _candidates(labels: torch.Tensor, with_pairs: bool) -> torch.Tensor:
    """``(C, H, W)`` bool: every group of ``labels`` and, optionally, adjacent unions."""
    groups = (
        labels[None] == torch.arange(int(labels.max()) + 1, device=labels.device)[:, None, None]
    )
    if not with_pairs:
        return groups
    pairs = _adjacent_pairs(labels)
    if not pairs:
        return groups
    a, b = torch.tensor(pairs, device=labels.device).T
    return torch.cat([groups, groups[a] | groups[b]])


def score_masks(embedding: torch.Tensor, masks: torch.Tensor, ring: int = 2) -> torch.Tensor:
    """Objectness score ``c · (1 - s_ring) · (1 - b/2)`` of masks on an embedding.

    Args:
        embedding: ``(D, H, W)`` unit embedding.
        masks: ``(K, H, W)`` bool, each non-empty.
        ring: width in pixels of the surrounding ring (dilation radius).

    Returns:
        ``(K,)`` scores in [0, 1] (dtype of ``embedding``); see the module docstring.

    Cost: O(K·H·W·D).
    """
    d, h, w = embedding.shape
    x = embedding.flatten(1)  # (D, N)
    m = masks.flatten(1).to(x.dtype)  # (K, N)
    area = m.sum(1)

    def mean_direction(weights: torch.Tensor) -> torch.Tensor:
        sums = weights @ x.T  # (K, D)
        return sums / sums.norm(dim=1, keepdim=True).clamp_min(1e-12)

    centre = mean_direction(m)
    compact = 0.5 * (1.0 + (m * (centre @ x)).sum(1) / area)
    dilated = F.max_pool2d(masks[:, None].to(x.dtype), 2 * ring + 1, stride=1, padding=ring)
    ring_w = dilated[:, 0].flatten(1) - m
    has_ring = ring_w.sum(1) > 0
    s_ring = 0.5 * (1.0 + (centre * mean_direction(ring_w)).sum(1))
    contrast = torch.where(has_ring, 1.0 - s_ring, torch.zeros_like(s_ring))
    border = torch.ones(h, w, dtype=torch.bool, device=masks.device)
    border[1:-1, 1:-1] = False
    on_border = (masks & border).flatten(1).sum(1).to(x.dtype) / border.sum()
    return compact * contrast * (1.0 - 0.5 * on_border)


def _dedup(masks: torch.Tensor, scores: torch.Tensor, max_iou: float, limit: int) -> torch.Tensor:
    """Indices of at most ``limit`` masks ``(C, H, W)``, by decreasing score, each with IoU <=
    ``max_iou`` with every better kept one (greedy non-maximum suppression on masks).

    Cost: one IoU row ``O(C·H·W)`` per kept mask, not the whole ``C x C`` matrix (the counts
    are integers, exact in float32 up to 2^24 pixels, so the decisions are those of the full
    matrix); one device-to-host copy per kept mask.
    """
    order = torch.argsort(scores, descending=True, stable=True)
    flat = masks[order].flatten(1).float()
    area = flat.sum(1)
    suppressed = np.zeros(len(order), dtype=bool)
    kept: list[int] = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        kept.append(i)
        if len(kept) == limit:
            break
        inter = flat @ flat[i]
        iou = inter / (area[i] + area - inter).clamp_min(1.0)
        suppressed |= (iou > max_iou).cpu().numpy()
    return order[kept]


def propose(
    embedding: torch.Tensor,
    *,
    image_size: tuple[int, int] | None = None,
    bandwidths: Sequence[float] = (0.1, 0.2, 0.3),
    num_iters: Sequence[int] = (10,),
    threshold: float | None = None,
    min_area: int = 8,
    max_points: int | None = 1024,
    pair_unions: bool = True,
    dedup_iou: float = 0.9,
    max_proposals: int = 100,
    ring: int = 2,
) -> Proposals:
    """Class-agnostic, ranked mask proposals from one unit embedding (no gradient).

    Args:
        embedding: ``(D, H', W')`` unit embedding (e.g. one image of the model output).
        image_size: ``(H, W)`` of the masks returned; default the embedding's ``(H', W')``.
        bandwidths: the δ values at which to group; each gives one partition.
        num_iters: the GBMS loop counts T, combined with every δ.
        threshold: cosine τ passed to :func:`group_pixels` (default ``1 - δ²``).
        min_area: smallest group, in embedding pixels.
        max_points: pixels moved by the mean shift, passed to :func:`group_pixels`.
        pair_unions: also propose the union of every two touching groups.
        dedup_iou: candidates with a higher mask IoU than this with a better one are dropped
            (IoU at the embedding's resolution).
        max_proposals: keep at most this many (K <= max_proposals).
        ring: width of the context ring for the contrast cue, in embedding pixels.

    Returns:
        :class:`Proposals` with ``masks (K, H, W)`` bool, ``boxes (K, 4)`` and ``scores (K,)``,
        highest first; K >= 1 (the grouping always yields at least one group).

    Cost: one :func:`group_pixels` per (δ, T) setting (O(S²·D) loops, S = min(N, max_points),
    N = H'·W'), then O(K·C·N) for deduplicating C candidates into K <= max_proposals.

    Example:
        >>> emb = torch.zeros(3, 8, 8); emb[0] = 1; emb[0, 2:5, 2:5] = 0; emb[1, 2:5, 2:5] = 1
        >>> p = propose(emb, image_size=(16, 16), min_area=1)
        >>> p.masks.shape[1:], int(p.masks[0].sum())
        (torch.Size([16, 16]), 36)
    """
    embedding = check_tensor(embedding, "embedding")
    check_rank(embedding, (3,), "embedding", "(D, H, W)")
    if not bandwidths or not num_iters:
        raise InputError(
            f"bandwidths and num_iters need at least one value each, got {list(bandwidths)} "
            f"and {list(num_iters)}"
        )
    for b in bandwidths:
        check_positive(b, "bandwidths")
    if not 0.0 < dedup_iou <= 1.0:
        raise InputError(f"dedup_iou must lie in (0, 1], got {dedup_iou}")
    check_count(max_proposals, "max_proposals")
    size = check_size(embedding.shape[1:] if image_size is None else image_size)

    with torch.no_grad():
        emb = embedding.detach()
        candidates = []
        for bandwidth, iters in itertools.product(bandwidths, num_iters):
            grouping = group_pixels(
                emb,
                bandwidth=bandwidth,
                num_iters=iters,
                threshold=threshold,
                min_area=min_area,
                max_points=max_points,
            )
            candidates.append(_candidates(grouping.labels, pair_unions))
        masks = torch.cat(candidates)
        compute = emb.double() if emb.dtype == torch.float64 else emb.float()
        scores = score_masks(compute, masks, ring)
        keep = _dedup(masks, scores, dedup_iou, max_proposals)
        masks, scores = masks[keep], scores[keep].float()
        if size != tuple(masks.shape[1:]):
            up = F.interpolate(masks[:, None].float(), size=size, mode="bilinear")
            masks = up[:, 0] >= 0.5
            nonempty = masks.flatten(1).any(1)
            if bool(nonempty.any()):  # a sliver can vanish when upsampled; drop it
                masks, scores = masks[nonempty], scores[nonempty]
        boxes = masks_to_boxes(masks).float()
    return Proposals(masks=masks, boxes=boxes, scores=scores)
