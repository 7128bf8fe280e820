"""Semantic instances: class-labelled, scored masks from an embedding and semantic logits.

The original release never shipped its semantic model (docs/instance.md); this is the
design it describes:

1. **Group** the unit embedding with :func:`pixelgroup.postprocess.group_pixels`.
2. **Class** of a group = the majority vote of the semantic argmax over its pixels. Groups whose
   majority is the background class are dropped.
3. **Score** = mean probability of that class over the group's pixels × the group's grouping
   quality (its compactness score from :func:`group_pixels`, mean ``(1 + cos)/2`` to its centre).
4. **Upsample** the masks to ``image_size`` (bilinear on the 0/1 mask, then >= 0.5); a mask that
   vanishes is dropped. Instances come highest score first.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pixelgroup._checks import check_rank, check_size, check_tensor
from pixelgroup.errors import InputError, InputTypeError
from pixelgroup.postprocess.grouping import group_pixels

__all__ = ["SemanticInstances", "semantic_instances"]


@dataclass(frozen=True)
class SemanticInstances:
    """K class-labelled instances of one image, highest score first.

    Attributes:
        masks: ``(K, H, W)`` bool at image resolution.
        classes: ``(K,)`` int64 class ids in 1..C-1 (index into the semantic logits).
        scores: ``(K,)`` float32 in [0, 1], non-increasing.
    """

    masks: torch.Tensor
    classes: torch.Tensor
    scores: torch.Tensor

    def __len__(self) -> int:
        return self.masks.shape[0]


def semantic_instances(
    embedding: torch.Tensor,
    logits: torch.Tensor,
    *,
    image_size: tuple[int, int] | None = None,
    bandwidth: float = 0.1,
    num_iters: int = 10,
    threshold: float | None = None,
    min_area: int = 16,
    max_points: int | None = 1024,
    background: int = 0,
) -> SemanticInstances:
    """Instances with classes and scores (see the module docstring); no gradient.

    Args:
        embedding: ``(D, H', W')`` unit embedding.
        logits: ``(C, H', W')`` semantic class logits at the embedding's resolution.
        image_size: ``(H, W)`` of the returned masks; default ``(H', W')``.
        bandwidth, num_iters, threshold, min_area, max_points: :func:`group_pixels`
            settings (δ, T, τ, smallest group in embedding pixels, pixels moved).
        background: the class id whose groups are dropped.

    Returns:
        :class:`SemanticInstances` with ``masks (K, H, W)``, ``classes (K,)``, ``scores (K,)``.

    Cost: one :func:`group_pixels` (O(S²·D) loops, S = min(N, max_points), N = H'·W') plus
    O(N·C).

    Example:
        >>> emb = torch.zeros(3, 8, 8); emb[0] = 1; emb[0, 2:6, 2:6] = 0; emb[1, 2:6, 2:6] = 1
        >>> logits = torch.zeros(21, 8, 8); logits[0] = 5; logits[7, 2:6, 2:6] = 10
        >>> out = semantic_instances(emb, logits, min_area=1)
        >>> out.classes.tolist(), int(out.masks[0].sum())
        ([7], 16)
    """
    embedding = check_tensor(embedding, "embedding")
    logits = check_tensor(logits, "logits")
    check_rank(embedding, (3,), "embedding", "(D, H, W)")
    check_rank(logits, (3,), "logits", "(C, H, W)")
    if logits.shape[1:] != embedding.shape[1:]:
        raise InputError(
            f"logits must be (C, H, W) at the embedding's resolution "
            f"{tuple(embedding.shape[1:])}, got {tuple(logits.shape)}"
        )
    if not logits.is_floating_point():
        raise InputTypeError(f"logits must be a floating-point tensor, got dtype {logits.dtype}")
    num_classes = logits.shape[0]
    if not 0 <= background < num_classes:
        raise InputError(f"background must be a class id in 0..{num_classes - 1}, got {background}")
    size = check_size(embedding.shape[1:] if image_size is None else image_size)

    with torch.no_grad():
        grouping = group_pixels(
            embedding.detach(),
            bandwidth=bandwidth,
            num_iters=num_iters,
            threshold=threshold,
            min_area=min_area,
            max_points=max_points,
        )
        labels = grouping.labels.flatten().to(logits.device)
        probs = torch.softmax(logits.detach().float(), dim=0).flatten(1)  # (C, N)
        num_groups = int(labels.max()) + 1
        votes = torch.zeros(num_groups, num_classes, dtype=torch.int64, device=labels.device)
        votes.index_put_((labels, probs.argmax(0)), torch.ones_like(labels), accumulate=True)
        classes = votes.argmax(1)  # ties: the lower class id
        prob_sums = torch.zeros(num_groups, num_classes, device=labels.device)
        prob_sums.index_add_(0, labels, probs.T)
        mean_prob = prob_sums.gather(1, classes[:, None])[:, 0] / votes.sum(1)
        scores = mean_prob * grouping.scores.to(mean_prob.device)
        keep = torch.nonzero(classes != background).flatten()
        keep = keep[torch.argsort(scores[keep], descending=True, stable=True)]
        masks = grouping.labels.to(labels.device)[None] == keep[:, None, None]
        if size != tuple(masks.shape[1:]) and len(keep):
            up = F.interpolate(masks[:, None].float(), size=size, mode="bilinear")
            masks = up[:, 0] >= 0.5
            nonempty = masks.flatten(1).any(1)
            masks, keep = masks[nonempty], keep[nonempty]
        elif not len(keep):
            masks = masks.new_zeros((0, *size))
    return SemanticInstances(masks=masks, classes=classes[keep], scores=scores[keep].float())
