"""Class-agnostic proposal recall: recall at IoU 0.5:0.05:0.95 and AR at k proposals per image.

The protocol of the paper's objectness experiment (METHOD.md §6, §11): for each image the
proposals are taken in score order, the first k are matched to the ground-truth instances, and
recall at an IoU threshold t is the fraction of all ground-truth instances of the data set whose
matched IoU is >= t. AR@k averages that recall over t in {0.50, 0.55, ..., 0.95}.

Matching (one-to-one, greedy by IoU, as in Hosang et al. and detectron2's proposal recall):
among the top-k proposals, repeatedly take the (proposal, ground truth) pair with the highest
remaining IoU, record that IoU for the ground truth and remove both. Each ground truth is thus
matched at most once and each proposal covers at most one ground truth; a ground truth left
unmatched counts as IoU 0. Ties go to the lower proposal index (the higher score).

IoU is computed by :func:`pycocotools.mask.iou` on RLE-encoded masks (and on boxes for the box
variant, with boxes enclosing the masks). Void pixels, when given, are removed from every
proposal before the IoU, so they count neither as hits nor as false positives.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from pycocotools import mask as mask_utils

from pixelgroup._atomic import atomic_path

__all__ = [
    "IOU_THRESHOLDS",
    "PROPOSAL_COUNTS",
    "PAPER_POINTS",
    "mask_iou",
    "box_iou",
    "masks_to_boxes",
    "match_proposals",
    "ProposalEvaluator",
    "plot_average_recall",
    "proposals_to_coco",
    "coco_to_proposals",
    "decode_rles",
]

IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
PROPOSAL_COUNTS = (1, 5, 10, 20, 50, 100)

# Read off the authors' AR plot (METHOD.md §11, ±0.01); drawn for reference only.
PAPER_POINTS = {
    "paper AR@[.5:.95]": ((11, 0.56), (18, 0.58), (60, 0.61)),
    "paper recall@0.5": ((11, 0.76), (18, 0.78), (60, 0.81)),
    "SharpMask/DeepMask AR (paper plot)": ((10, 0.08), (60, 0.19)),
}


def _as_masks(masks: object, name: str) -> np.ndarray:
    """A ``(K, H, W)`` boolean numpy array from a tensor or array."""
    if isinstance(masks, torch.Tensor):
        masks = masks.detach().cpu().numpy()
    if not isinstance(masks, np.ndarray):
        raise TypeError(f"{name} must be a (K, H, W) array or tensor, got {type(masks).__name__}")
    if masks.ndim != 3:
        raise ValueError(f"{name} must have shape (K, H, W), got shape {masks.shape}")
    return masks.astype(bool, copy=False)


def _encode(masks: np.ndarray) -> list[dict]:
    return mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))


def masks_to_boxes(masks: object) -> np.ndarray:
    """Enclosing boxes ``(K, 4)`` of masks ``(K, H, W)`` as ``x0, y0, x1, y1`` (exclusive end).

    An empty mask gets the empty box ``(0, 0, 0, 0)``.
    """
    masks = _as_masks(masks, "masks")
    boxes = np.zeros((len(masks), 4), dtype=np.float64)
    for i, m in enumerate(masks):
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        if rows.size:
            boxes[i] = cols[0], rows[0], cols[-1] + 1, rows[-1] + 1
    return boxes


def mask_iou(proposals: object, ground_truth: object) -> np.ndarray:
    """IoU ``(K, G)`` between proposal masks ``(K, H, W)`` and ground-truth masks ``(G, H, W)``.

    Computed by pycocotools on RLE (O(K·G·run-lengths)); empty masks have IoU 0 with all.
    """
    props, gts = _as_masks(proposals, "proposals"), _as_masks(ground_truth, "ground_truth")
    if props.shape[1:] != gts.shape[1:]:
        raise ValueError(
            f"proposal masks are {props.shape[1]}x{props.shape[2]} but the image's ground truth "
            f"is {gts.shape[1]}x{gts.shape[2]}; proposals must be at image resolution"
        )
    if len(props) == 0 or len(gts) == 0:
        return np.zeros((len(props), len(gts)))
    ious = mask_utils.iou(_encode(props), _encode(gts), [0] * len(gts))
    return np.asarray(ious, dtype=np.float64).reshape(len(props), len(gts))


def box_iou(proposals: np.ndarray, ground_truth: np.ndarray) -> np.ndarray:
    """IoU ``(K, G)`` between boxes ``(K, 4)`` and ``(G, 4)`` in ``x0, y0, x1, y1`` form."""
    if len(proposals) == 0 or len(ground_truth) == 0:
        return np.zeros((len(proposals), len(ground_truth)))

    def xywh(b: np.ndarray) -> np.ndarray:
        return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)

    ious = mask_utils.iou(xywh(proposals), xywh(ground_truth), [0] * len(ground_truth))
    return np.asarray(ious, dtype=np.float64).reshape(len(proposals), len(ground_truth))


def match_proposals(ious: np.ndarray, counts: Sequence[int] = PROPOSAL_COUNTS) -> np.ndarray:
    """Matched IoU of each ground truth using the top-k proposals, for every k in ``counts``.

    Args:
        ious: ``(K, G)`` IoUs, proposals sorted by decreasing score.
        counts: the k values.

    Returns:
        ``(len(counts), G)``: greedy one-to-one matching (see the module docstring) of the first
        ``min(k, K)`` proposals; 0 where a ground truth is unmatched.

    Cost: O(min(k, G)·k·G) per k.
    """
    ious = np.asarray(ious, dtype=np.float64)
    if ious.ndim != 2:
        raise ValueError(f"ious must have shape (K, G), got shape {ious.shape}")
    out = np.zeros((len(counts), ious.shape[1]))
    for row, k in enumerate(counts):
        remaining = ious[:k].copy()
        for _ in range(min(remaining.shape)):
            # argmax returns the first maximum: ties go to the higher-scored proposal.
            p, g = np.unravel_index(np.argmax(remaining), remaining.shape)
            if remaining[p, g] <= 0:
                break
            out[row, g] = remaining[p, g]
            remaining[p, :] = -1.0
            remaining[:, g] = -1.0
    return out


def proposals_to_coco(image_id: str, masks: object, scores: object) -> list[dict]:
    """COCO-results records ``{"image_id", "segmentation", "score"}`` for one image.

    Args:
        image_id: the image stem.
        masks: ``(K, H, W)`` bool proposal masks.
        scores: ``(K,)`` scores.

    Returns:
        K JSON-ready dicts; ``segmentation`` is a compressed RLE with ``counts`` as str.
    """
    masks = _as_masks(masks, "masks")
    scores = np.asarray(
        scores.detach().cpu() if isinstance(scores, torch.Tensor) else scores, dtype=float
    ).reshape(-1)
    if scores.shape != (len(masks),):
        raise ValueError(f"expected {len(masks)} scores (one per mask), got {scores.size}")
    records = []
    for rle, score in zip(_encode(masks), scores, strict=True):
        segmentation = {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode()}
        records.append({"image_id": image_id, "segmentation": segmentation, "score": float(score)})
    return records


def coco_to_proposals(records: object) -> dict[str, tuple[list[dict], np.ndarray]]:
    """Group COCO-results records by image: ``{image_id: (rles, scores (K,))}``.

    ``segmentation`` may be a compressed RLE (``counts`` str or bytes) or an uncompressed one
    (``counts`` a list of ints). Malformed records raise ``ValueError`` naming the index.
    """
    if not isinstance(records, list):
        raise ValueError(f"proposals must be a JSON list of records, got {type(records).__name__}")
    if not records:
        raise ValueError("the proposal list is empty; expected at least one record")
    out: dict[str, tuple[list[dict], list[float]]] = {}
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or not {"image_id", "segmentation", "score"} <= set(rec):
            raise ValueError(
                f"record {i} must be a dict with image_id, segmentation and score, got {rec!r:.80}"
            )
        seg, score = rec["segmentation"], rec["score"]
        if isinstance(score, bool) or not isinstance(score, (int, float)) or score != score:
            raise ValueError(f"record {i}: score must be a finite number, got {score!r}")
        ok_seg = isinstance(seg, dict) and "size" in seg and "counts" in seg
        if not ok_seg or not isinstance(seg["size"], list) or len(seg["size"]) != 2:
            raise ValueError(f"record {i}: segmentation must be a COCO RLE with size [H, W]")
        h, w = (int(v) for v in seg["size"])
        if isinstance(seg["counts"], list):
            rle = mask_utils.frPyObjects(seg, h, w)
        else:
            counts = seg["counts"]
            rle = {"size": [h, w], "counts": counts.encode() if isinstance(counts, str) else counts}
        rles, scores = out.setdefault(str(rec["image_id"]), ([], []))
        rles.append(rle)
        scores.append(float(score))
    return {k: (rles, np.asarray(scores)) for k, (rles, scores) in out.items()}


def decode_rles(rles: Sequence[dict]) -> np.ndarray:
    """``(K, H, W)`` bool masks from K COCO RLEs of one size (check sizes first)."""
    return mask_utils.decode(list(rles)).transpose(2, 0, 1).astype(bool)


class ProposalEvaluator:
    """Accumulates per-image matches and reports recall and AR at k proposals per image.

    ``process`` one image at a time, then ``evaluate``. Recall is pooled over all ground-truth
    instances of the data set (not averaged per image).

    Args:
        counts: the k values (default 1, 5, 10, 20, 50, 100).
        thresholds: IoU thresholds (default 0.5:0.05:0.95).

    Example:
        >>> ev = ProposalEvaluator()
        >>> gt = np.zeros((1, 4, 4), bool); gt[0, :2] = True
        >>> ev.process("img", gt, gt, np.ones(1))
        >>> ev.evaluate()["AR@1"]
        1.0
    """

    def __init__(
        self,
        counts: Sequence[int] = PROPOSAL_COUNTS,
        thresholds: Sequence[float] = IOU_THRESHOLDS,
    ) -> None:
        if not counts or any(
            isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in counts
        ):
            raise ValueError(f"counts must be positive ints, got {list(counts)}")
        if not thresholds or any(not 0.0 < t <= 1.0 for t in thresholds):
            raise ValueError(f"thresholds must lie in (0, 1], got {list(thresholds)}")
        self.counts = tuple(counts)
        self.thresholds = tuple(thresholds)
        self.reset()

    def reset(self) -> None:
        self._mask_matches: list[np.ndarray] = []
        self._box_matches: list[np.ndarray] = []
        self._seen: set[str] = set()

    def process(
        self,
        image_id: str,
        gt_masks: object,
        proposals: object,
        scores: object,
        void: object | None = None,
    ) -> None:
        """Match one image's proposals to its ground truth.

        Args:
            image_id: unique per image; a repeat is an error.
            gt_masks: ``(G, H, W)`` bool instance masks (G may be 0).
            proposals: ``(K, H, W)`` bool proposal masks at image resolution (K >= 1).
            scores: ``(K,)`` scores; proposals are ranked by decreasing score (stable).
            void: optional ``(H, W)`` bool mask of pixels to ignore.
        """
        if image_id in self._seen:
            raise ValueError(f"image id {image_id!r} was already processed; ids must be unique")
        gts, props = _as_masks(gt_masks, "gt_masks"), _as_masks(proposals, "proposals")
        scores = np.asarray(
            scores.detach().cpu() if isinstance(scores, torch.Tensor) else scores, dtype=float
        ).reshape(-1)
        if len(props) == 0:
            raise ValueError(f"image {image_id!r} has no proposals; give at least one")
        if scores.shape != (len(props),):
            raise ValueError(
                f"image {image_id!r}: expected {len(props)} scores (one per proposal), "
                f"got {scores.size}"
            )
        if void is not None:
            void_mask = _as_masks(np.asarray(void)[None], "void")[0]
            if void_mask.shape != props.shape[1:]:
                raise ValueError(
                    f"image {image_id!r}: void mask is {void_mask.shape}, proposals are "
                    f"{props.shape[1:]}"
                )
            props = props & ~void_mask
        props = props[np.argsort(-scores, kind="stable")]
        try:
            ious = mask_iou(props, gts)
        except ValueError as e:
            raise ValueError(f"image {image_id!r}: {e}") from None
        self._mask_matches.append(match_proposals(ious, self.counts))
        self._box_matches.append(
            match_proposals(box_iou(masks_to_boxes(props), masks_to_boxes(gts)), self.counts)
        )
        self._seen.add(image_id)

    def recall(self, kind: str = "mask") -> np.ndarray:
        """``(len(counts), len(thresholds))`` recall of ``"mask"`` or ``"box"`` proposals."""
        if kind not in ("mask", "box"):
            raise ValueError(f"kind must be 'mask' or 'box', got {kind!r}")
        matches = self._mask_matches if kind == "mask" else self._box_matches
        if not matches:
            raise ValueError("no images processed; call process() before evaluate()")
        pooled = np.concatenate(matches, axis=1)  # (len(counts), total GT)
        if pooled.shape[1] == 0:
            raise ValueError("the processed images hold no ground-truth instances")
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


def plot_average_recall(
    curves: Mapping[str, Mapping[int, float]],
    path: str | os.PathLike,
    *,
    show_paper: bool = True,
    title: str = "Class-agnostic mask proposals",
) -> Path:
    """Plot AR versus proposals per image (log x) to a PNG, written atomically.

    Args:
        curves: ``{label: {k: AR@k}}``, e.g. ``{"ours": {1: .2, 10: .5}}``.
        path: output ``.png``.
        show_paper: also draw the paper's points (:data:`PAPER_POINTS`) for reference.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"figure path must end in .png, got {path}")
    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    for label, curve in curves.items():
        ks = sorted(curve)
        ax.plot(ks, [curve[k] for k in ks], "o-", label=label)
    if show_paper:
        for (label, pts), marker in zip(PAPER_POINTS.items(), ("*", "^", "s"), strict=True):
            ax.plot(*zip(*pts, strict=True), marker, ls=":", color="gray", label=label, ms=8)
    ax.set(xscale="log", xlabel="proposals per image", ylabel="recall", ylim=(0, 1), title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(fig)
    return path
