"""Class-agnostic proposal recall: recall at IoU 0.5:0.05:0.95 and AR at k proposals per image.

The protocol of the paper's objectness experiment (docs/proposals.md): for each image the
proposals are taken in score order, the first k are matched to the ground-truth instances, and
recall at an IoU threshold t is the fraction of all ground-truth instances of the data set whose
matched IoU is >= t. AR@k averages that recall over t in {0.50, 0.55, ..., 0.95}.

Matching (one-to-one, greedy by IoU, as in Hosang et al. and detectron2's proposal recall;
:func:`~pixelgroup.metrics.matching.greedy_match` with ``order="iou"``): among the top-k
proposals, repeatedly take the (proposal, ground truth) pair with the highest remaining IoU,
record that IoU for the ground truth and remove both. Each ground truth is thus matched at most
once and each proposal covers at most one ground truth; a ground truth left unmatched counts as
IoU 0. Ties go to the lower proposal index (the higher score).

IoU is :func:`~pixelgroup.metrics.matching.mask_iou` (and :func:`box_iou` for the box variant,
with boxes enclosing the masks). Void pixels, when given, are removed from every proposal before
the IoU, so they count neither as hits nor as false positives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pixelgroup.errors import InputError
from pixelgroup.metrics._inputs import as_masks, as_numpy, as_vector
from pixelgroup.metrics.evaluator import PerImageEvaluator
from pixelgroup.metrics.matching import box_iou, greedy_match, mask_iou, masks_to_boxes

__all__ = [
    "IOU_THRESHOLDS",
    "PROPOSAL_COUNTS",
    "ProposalPrediction",
    "ProposalTarget",
    "ProposalEvaluator",
    "match_proposals",
]

IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
PROPOSAL_COUNTS = (1, 5, 10, 20, 50, 100)


@dataclass(frozen=True)
class ProposalPrediction:
    """One image's proposals.

    Attributes:
        masks: ``(K, H, W)`` bool proposal masks at image resolution (K >= 1).
        scores: ``(K,)`` scores; proposals are ranked by decreasing score (stable).
    """

    masks: np.ndarray | torch.Tensor
    scores: np.ndarray | torch.Tensor | Sequence[float]


@dataclass(frozen=True)
class ProposalTarget:
    """One image's ground truth.

    Attributes:
        masks: ``(G, H, W)`` bool instance masks (G may be 0).
        void: optional ``(H, W)`` bool mask of pixels to ignore.
    """

    masks: np.ndarray | torch.Tensor
    void: np.ndarray | torch.Tensor | None = None


def match_proposals(ious: np.ndarray, counts: Sequence[int] = PROPOSAL_COUNTS) -> np.ndarray:
    """Matched IoU of each ground truth using the top-k proposals, for every k in ``counts``.

    Args:
        ious: ``(K, G)`` IoUs, proposals sorted by decreasing score.
        counts: the k values.

    Returns:
        ``(len(counts), G)``: greedy one-to-one matching by IoU (see the module docstring) of
        the first ``min(k, K)`` proposals; 0 where a ground truth is unmatched.

    Cost: O(k·G·log(k·G)) per k.
    """
    ious = np.asarray(ious, dtype=np.float64)
    if ious.ndim != 2:
        raise InputError(f"ious must have shape (K, G), got shape {ious.shape}")
    out = np.zeros((len(counts), ious.shape[1]))
    for row, k in enumerate(counts):
        top = ious[:k]
        match = greedy_match(top, order="iou")
        hit = np.flatnonzero(match >= 0)
        out[row, match[hit]] = top[hit, match[hit]]
    return out


class ProposalEvaluator(PerImageEvaluator):
    """Accumulates per-image matches and reports recall and AR at k proposals per image.

    ``reset()``, ``process(predictions, targets)`` with one :class:`ProposalPrediction` and
    one :class:`ProposalTarget` per image, ``evaluate() -> dict``; the recall table behind it
    (for AR curves) is :meth:`recall`. Recall is pooled over all ground-truth instances of the
    data set (not averaged per image).

    Args:
        counts: the k values (default 1, 5, 10, 20, 50, 100).
        thresholds: IoU thresholds (default 0.5:0.05:0.95).

    Example:
        >>> ev = ProposalEvaluator()
        >>> gt = np.zeros((1, 4, 4), bool); gt[0, :2] = True
        >>> ev.process([ProposalPrediction(gt, np.ones(1))], [ProposalTarget(gt)])
        >>> ev.evaluate()["AR@1"]
        1.0
    """

    prediction_type = ProposalPrediction
    target_type = ProposalTarget

    def __init__(
        self,
        counts: Sequence[int] = PROPOSAL_COUNTS,
        thresholds: Sequence[float] = IOU_THRESHOLDS,
    ) -> None:
        if not counts or any(
            isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in counts
        ):
            raise InputError(f"counts must be positive ints, got {list(counts)}")
        if not thresholds or any(not 0.0 < t <= 1.0 for t in thresholds):
            raise InputError(f"thresholds must lie in (0, 1], got {list(thresholds)}")
        self.counts = tuple(counts)
        self.thresholds = tuple(thresholds)
        self.reset()

    def reset(self) -> None:
        self._mask_matches: list[np.ndarray] = []
        self._box_matches: list[np.ndarray] = []

    def process_image(self, prediction: ProposalPrediction, target: ProposalTarget, i: int) -> None:
        props = as_masks(prediction.masks, f"predictions[{i}].masks")
        gts = as_masks(target.masks, f"targets[{i}].masks")
        scores = as_vector(prediction.scores, f"predictions[{i}].scores", float)
        if len(props) == 0:
            raise InputError(f"predictions[{i}] has no proposals; give at least one")
        if scores.shape != (len(props),):
            raise InputError(
                f"predictions[{i}]: expected {len(props)} scores (one per proposal), "
                f"got {scores.size}"
            )
        if props.shape[1:] != gts.shape[1:]:
            raise InputError(
                f"predictions[{i}]: proposal masks are {props.shape[1]}x{props.shape[2]} but the "
                f"image's ground truth is {gts.shape[1]}x{gts.shape[2]}; proposals must be at "
                "image resolution"
            )
        if target.void is not None:
            void = as_numpy(target.void, f"targets[{i}].void").astype(bool, copy=False)
            if void.shape != props.shape[1:]:
                raise InputError(
                    f"targets[{i}]: void mask is {void.shape}, proposals are {props.shape[1:]}"
                )
            props = props & ~void
        props = props[np.argsort(-scores, kind="stable")]
        self._mask_matches.append(match_proposals(mask_iou(props, gts), self.counts))
        self._box_matches.append(
            match_proposals(box_iou(masks_to_boxes(props), masks_to_boxes(gts)), self.counts)
        )

    def recall(self, kind: str = "mask") -> np.ndarray:
        """``(len(counts), len(thresholds))`` recall of ``"mask"`` or ``"box"`` proposals."""
        if kind not in ("mask", "box"):
            raise InputError(f"kind must be 'mask' or 'box', got {kind!r}")
        matches = self._mask_matches if kind == "mask" else self._box_matches
        if not matches:
            raise InputError("no images processed; call process() before evaluate()")
        pooled = np.concatenate(matches, axis=1)  # (len(counts), total GT)
        if pooled.shape[1] == 0:
            raise InputError("the processed images hold no ground-truth instances")
        thr = np.asarray(self.thresholds)
        # a small tolerance so that an IoU of exactly t (e.g. 3/5) meets threshold t
        return (pooled[:, :, None] >= thr[None, None, :] - 1e-9).mean(axis=1)

    def evaluate(self) -> dict[str, float]:
        """``{"AR@k", "R50@k", "box_AR@k", "box_R50@k", "num_images", "num_instances"}``.

        ``R50@k`` is recall at IoU 0.5 (when 0.5 is among the thresholds).
        """
        out: dict[str, float] = {}
        for prefix, kind in (("", "mask"), ("box_", "box")):
            rec = self.recall(kind)
            for i, k in enumerate(self.counts):
                out[f"{prefix}AR@{k}"] = float(rec[i].mean())
                if 0.5 in self.thresholds:
                    out[f"{prefix}R50@{k}"] = float(rec[i, self.thresholds.index(0.5)])
        out["num_images"] = len(self._mask_matches)
        out["num_instances"] = int(sum(m.shape[1] for m in self._mask_matches))
        return out
