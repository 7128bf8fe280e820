"""Overlap and matching shared by every evaluator that pairs predictions with ground truth.

* :func:`mask_iou`: IoU between two sets of ``(K, H, W)`` / ``(M, H, W)`` masks (exact: integer
  pixel counts, float64 ratio, so it equals :func:`pycocotools.mask.iou` on their RLEs).
* :func:`box_iou` and :func:`masks_to_boxes`: the same for enclosing boxes.
* :func:`greedy_match`: one-to-one greedy matching of predictions (rows) to ground truths
  (columns) by IoU, in the variants of COCO, PASCAL VOC and proposal recall.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pycocotools import mask as mask_utils

from pixelgroup.errors import InputError
from pixelgroup.metrics._inputs import as_masks

__all__ = ["mask_iou", "box_iou", "masks_to_boxes", "greedy_match"]


def mask_iou(masks: object, others: object) -> np.ndarray:
    """IoU ``(K, M)`` between masks ``(K, H, W)`` and ``others (M, H, W)`` (bool, tensor or array).

    Empty masks have IoU 0 with everything. Intersections are one float32 matrix product of the
    flattened masks (exact while H·W < 2^24, float64 beyond), divided in float64.

    Example:
        >>> a = np.zeros((1, 4, 4), bool); a[0, :2] = True
        >>> b = np.zeros((1, 4, 4), bool); b[0, 1:3] = True
        >>> mask_iou(a, b)  # 4 shared of 12 pixels
        array([[0.33333333]])

    Cost: O(K·M·H·W) multiply-adds, and a float copy of both sets.
    """
    a, b = as_masks(masks, "masks"), as_masks(others, "others")
    if a.shape[1:] != b.shape[1:]:
        raise InputError(
            f"both mask sets must have one size (H, W), got {a.shape[1]}x{a.shape[2]} and "
            f"{b.shape[1]}x{b.shape[2]}"
        )
    k, m = len(a), len(b)
    if k == 0 or m == 0:
        return np.zeros((k, m))
    flat_a, flat_b = a.reshape(k, -1), b.reshape(m, -1)
    dtype = np.float32 if flat_a.shape[1] < 2**24 else np.float64
    inter = (flat_a.astype(dtype) @ flat_b.astype(dtype).T).astype(np.float64)
    union = flat_a.sum(1)[:, None] + flat_b.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def masks_to_boxes(masks: object) -> np.ndarray:
    """Enclosing boxes ``(K, 4)`` of masks ``(K, H, W)`` as ``x0, y0, x1, y1`` (exclusive end).

    An empty mask gets the empty box ``(0, 0, 0, 0)``.
    """
    masks = as_masks(masks, "masks")
    boxes = np.zeros((len(masks), 4), dtype=np.float64)
    for i, m in enumerate(masks):
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        if rows.size:
            boxes[i] = cols[0], rows[0], cols[-1] + 1, rows[-1] + 1
    return boxes


def box_iou(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU ``(K, M)`` between boxes ``(K, 4)`` and ``(M, 4)`` in ``x0, y0, x1, y1`` form."""
    if len(boxes) == 0 or len(others) == 0:
        return np.zeros((len(boxes), len(others)))

    def xywh(b: np.ndarray) -> np.ndarray:
        return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)

    ious = mask_utils.iou(xywh(boxes), xywh(others), [0] * len(others))
    return np.asarray(ious, dtype=np.float64).reshape(len(boxes), len(others))


def greedy_match(
    ious: np.ndarray,
    threshold: float = 0.0,
    *,
    order: Literal["rows", "iou"] = "rows",
    best_only: bool = False,
) -> np.ndarray:
    """Match predictions (rows of ``ious``) one-to-one to ground truths (columns), greedily.

    Pairs are visited in a priority order; a pair is accepted when neither side is matched yet,
    its IoU is >= ``threshold`` and it overlaps at all (IoU > 0). The priority order:

    * ``order="rows"``: rows in the given order (sort predictions by decreasing score first),
      each visiting its columns by decreasing IoU, so a prediction takes the best ground truth
      still free (COCO; ties go to the last column, as in pycocotools).
      With ``best_only=True`` a row visits only its best column (the first on ties), taken or
      not: a prediction whose best ground truth is taken stays unmatched (PASCAL VOC / SDS).
    * ``order="iou"``: all pairs by decreasing IoU, ties in row-major order, i.e. repeatedly the
      best remaining pair (proposal recall: Hosang et al., detectron2).

    Args:
        ious: ``(K, M)`` IoUs.
        threshold: the least IoU of a match.
        order: ``"rows"`` or ``"iou"``, see above.
        best_only: with ``order="rows"``, visit only each row's best column.

    Returns:
        ``(K,)`` int64: the column matched to each row, -1 where none.

    Example:
        >>> greedy_match(np.array([[0.6, 0.9], [0.7, 0.0]]), order="iou").tolist()
        [1, 0]
        >>> greedy_match(np.array([[0.6, 0.9], [0.0, 0.8]]), 0.5, best_only=True).tolist()
        [1, -1]

    Cost: O(K·M) for ``"rows"``; O(K·M·log(K·M)) and a Python loop over pairs for ``"iou"``.
    """
    ious = np.asarray(ious, dtype=np.float64)
    if ious.ndim != 2:
        raise InputError(f"ious must have shape (K, M), got shape {ious.shape}")
    if order not in ("rows", "iou"):
        raise InputError(f"order must be 'rows' or 'iou', got {order!r}")
    if best_only and order != "rows":
        raise InputError("best_only applies to order='rows' only")
    num_rows, num_cols = ious.shape
    match = np.full(num_rows, -1, dtype=np.int64)
    if num_rows == 0 or num_cols == 0:
        return match
    free = np.ones(num_cols, dtype=bool)
    if order == "iou":
        flat = np.argsort(-ious.ravel(), kind="stable")
        for r, c in zip(*np.unravel_index(flat, ious.shape), strict=True):
            iou = ious[r, c]
            if iou < threshold or iou <= 0:
                break
            if match[r] < 0 and free[c]:
                match[r], free[c] = c, False
                if not free.any() or (match >= 0).all():
                    break
        return match
    for r, row in enumerate(ious):
        if best_only:
            c = int(np.argmax(row))
            ok = free[c]
        else:
            candidates = np.where(free, row, -np.inf)
            c = num_cols - 1 - int(np.argmax(candidates[::-1]))  # the last of equal maxima
            ok = bool(free[c])
        if ok and row[c] >= threshold and row[c] > 0:
            match[r], free[c] = c, False
    return match
