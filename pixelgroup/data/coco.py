"""COCO run-length encoding and result records: the one place that reads and writes them.

* :func:`encode_masks` / :func:`decode_masks`: ``(K, H, W)`` bool masks <-> compressed RLEs
  (``{"size": [H, W], "counts": str}``, pycocotools' column-major format).
* :func:`crop_to_result`: the result record of one instance of an image larger than memory,
  from the crop of its bounding box (the image's mask is never built).
* :func:`masks_to_results`: one image's masks as COCO result records, the format of
  ``pixelgroup predict`` and the input of ``pixelgroup eval-proposals`` / ``eval-instances``
  and ``pycocotools.coco.COCO.loadRes``.
* :func:`read_results`: a results JSON (or its parsed list) grouped by image, checked record
  by record with one-line errors that name the file and the record.
* :func:`segmentation_mask`: the mask of one annotation's ``segmentation`` (polygons, or an
  RLE compressed or not), as COCO datasets store it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils

from pixelgroup.data.io import read_json
from pixelgroup.errors import DataError

__all__ = [
    "ImageResults",
    "encode_masks",
    "decode_masks",
    "masks_to_results",
    "crop_to_result",
    "read_results",
    "segmentation_mask",
]


def _as_masks(masks: object, name: str = "masks") -> np.ndarray:
    if isinstance(masks, torch.Tensor):
        masks = masks.detach().cpu().numpy()
    if not isinstance(masks, np.ndarray):
        raise TypeError(f"{name} must be a (K, H, W) array or tensor, got {type(masks).__name__}")
    if masks.ndim != 3:
        raise ValueError(f"{name} must have shape (K, H, W), got shape {masks.shape}")
    return masks.astype(bool, copy=False)


def _as_vector(values: object, name: str, dtype: type) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype).reshape(-1)


def encode_masks(masks: object) -> list[dict[str, Any]]:
    """Compressed COCO RLEs of ``masks (K, H, W)`` (bool array or tensor).

    Returns:
        K dicts ``{"size": [H, W], "counts": str}``, JSON-ready.

    Example:
        >>> m = np.zeros((1, 2, 3), bool); m[0, :, 1] = True
        >>> encode_masks(m)
        [{'size': [2, 3], 'counts': '222'}]
    """
    masks = _as_masks(masks)
    if len(masks) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [{"size": [int(v) for v in r["size"]], "counts": r["counts"].decode()} for r in rles]


def _to_pycocotools(rle: dict[str, Any]) -> dict[str, Any]:
    """An RLE with ``counts`` as bytes (compressed) from str / bytes / list (uncompressed)."""
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):
        return mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    return {"size": [h, w], "counts": counts.encode() if isinstance(counts, str) else counts}


def decode_masks(rles: Sequence[dict[str, Any]]) -> np.ndarray:
    """``(K, H, W)`` bool masks from K COCO RLEs of one size.

    ``counts`` may be compressed (str or bytes) or uncompressed (a list of run lengths).
    """
    if len(rles) == 0:
        raise ValueError("decode_masks needs at least one RLE (the mask size comes from them)")
    sizes = {tuple(int(v) for v in r["size"]) for r in rles}
    if len(sizes) > 1:
        raise ValueError(f"all RLEs must have one size, got sizes {sorted(sizes)}")
    coco_rles = [_to_pycocotools(r) for r in rles]
    try:
        decoded = mask_utils.decode(coco_rles)
    except ValueError as e:  # runs longer than the mask
        raise DataError(f"cannot decode RLE masks: {e}") from None
    masks = decoded.transpose(2, 0, 1).astype(bool, order="C")
    # runs shorter than the mask leave pycocotools' buffer uninitialised: the area shows it
    # (one RLE per call: pycocotools' area of a list overflows past 255 RLEs under NumPy 2)
    areas = np.array([mask_utils.area(r) for r in coco_rles], dtype=np.int64)
    bad = np.flatnonzero(masks.reshape(len(masks), -1).sum(1) != areas)
    if bad.size:
        raise DataError(
            f"cannot decode RLE masks: the runs of mask {int(bad[0])} do not cover its "
            f"{masks.shape[1]}x{masks.shape[2]} pixels"
        )
    return masks


def segmentation_mask(segmentation: list | dict[str, Any], height: int, width: int) -> np.ndarray:
    """``(H, W)`` bool mask of a COCO annotation's ``segmentation``: a list of polygons
    ``[[x0, y0, x1, y1, ...], ...]`` (their union, rasterised by pycocotools) or an RLE
    ``{"size": [H, W], "counts": ...}`` (compressed or a list of run lengths).

    The annotation's structure is not checked here (:class:`~pixelgroup.data.CocoInstances`
    checks every annotation when it opens); runs that do not cover the mask raise
    :class:`DataError`.

    Example:
        >>> int(segmentation_mask([[0, 0, 4, 0, 4, 2, 0, 2]], 3, 5).sum())
        8
    """
    if isinstance(segmentation, list):
        polygons = [[float(v) for v in p] for p in segmentation]
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
        return mask_utils.decode(rle).astype(bool)
    return decode_masks([segmentation])[0]


def masks_to_results(
    image_id: str | int,
    masks: object,
    scores: object,
    category_ids: object | None = None,
) -> list[dict[str, Any]]:
    """COCO result records of one image.

    Args:
        image_id: the image's id (pixelgroup uses the file stem).
        masks: ``(K, H, W)`` bool masks at image resolution (array or tensor).
        scores: ``(K,)`` confidences.
        category_ids: ``(K,)`` positive class ids; None = 1 for all (class-agnostic).

    Returns:
        K JSON-ready dicts ``{"image_id", "category_id", "segmentation" (compressed RLE, str
        counts), "score", "area", "bbox" ([x, y, w, h])}``.

    Example:
        >>> m = np.zeros((1, 4, 4), bool); m[0, 1:3, 1:4] = True
        >>> r = masks_to_results("img", m, [0.9])[0]
        >>> r["category_id"], r["area"], r["bbox"]
        (1, 6, [1.0, 1.0, 3.0, 2.0])
    """
    masks = _as_masks(masks)
    score = _as_vector(scores, "scores", float)
    if score.shape != (len(masks),):
        raise ValueError(f"expected {len(masks)} scores (one per mask), got {score.size}")
    if not np.isfinite(score).all():
        raise ValueError(f"scores must be finite, got {score[~np.isfinite(score)][:3].tolist()}")
    if category_ids is None:
        classes = np.ones(len(masks), dtype=np.int64)
    else:
        classes = _as_vector(category_ids, "category_ids", np.int64)
        if classes.shape != (len(masks),):
            raise ValueError(
                f"expected {len(masks)} category_ids (one per mask), got {classes.size}"
            )
        if (classes < 1).any():
            raise ValueError(f"category_ids must be >= 1, got {int(classes[classes < 1][0])}")
    records = []
    for rle, s, c in zip(encode_masks(masks), score.tolist(), classes.tolist(), strict=True):
        coco_rle = _to_pycocotools(rle)
        records.append(
            {
                "image_id": image_id,
                "category_id": int(c),
                "segmentation": rle,
                "score": float(s),
                "area": int(mask_utils.area(coco_rle)),
                "bbox": [float(v) for v in mask_utils.toBbox(coco_rle)],
            }
        )
    return records


def crop_to_result(
    image_id: str | int,
    crop: np.ndarray,
    top: int,
    left: int,
    size: tuple[int, int],
    score: float,
) -> dict[str, Any]:
    """The COCO result record (as :func:`masks_to_results`'s, category 1) of the instance
    whose pixels are ``crop (h, w)`` bool placed at ``(top, left)`` of an image of ``size =
    (H, W)``. The runs of the image's column-major mask are computed from the crop's columns:
    time and memory O(h·w), whatever H and W.

    Example:
        >>> crop = np.array([[True, False], [True, True]])
        >>> r = crop_to_result("img", crop, 1, 2, (4, 5), 0.5)
        >>> m = np.zeros((1, 4, 5), bool); m[0, 1:3, 2:4] = crop
        >>> r == masks_to_results("img", m, [0.5])[0]
        True
    """
    if not np.isfinite(score):
        raise ValueError(f"score must be finite, got {score}")
    crop = np.asarray(crop, dtype=bool)
    height, width = size
    h, w = crop.shape
    if top < 0 or left < 0 or top + h > height or left + w > width:
        raise ValueError(f"crop {crop.shape} at ({top}, {left}) lies outside the image {size}")
    padded = np.zeros((h + 2, w), dtype=np.int8)
    padded[1:-1] = crop
    step = np.diff(padded, axis=0)  # (h + 1, w): +1 where a run starts, -1 past its end
    starts = np.flatnonzero(step.T == 1)  # column-major, as the image's runs
    ends = np.flatnonzero(step.T == -1)
    column, row = np.divmod(starts, h + 1)
    begin = (left + column) * height + top + row
    end = begin + (ends - starts)
    if len(begin) > 1:  # a run down to the image's last row continues at the next column's top
        joined = np.flatnonzero(end[:-1] == begin[1:])
        begin, end = np.delete(begin, joined + 1), np.delete(end, joined)
    edges = np.concatenate([[0], np.stack([begin, end], 1).ravel(), [height * width]])
    counts = np.diff(edges).tolist()
    if len(counts) > 1 and counts[-1] == 0:  # a mask down to the last pixel: no closing run
        counts.pop()
    rle = _to_pycocotools({"size": [height, width], "counts": counts})
    return {
        "image_id": image_id,
        "category_id": 1,
        "segmentation": {"size": [height, width], "counts": rle["counts"].decode()},
        "score": float(score),
        "area": int(mask_utils.area(rle)),
        "bbox": [float(v) for v in mask_utils.toBbox(rle)],
    }


@dataclass(frozen=True)
class ImageResults:
    """The result records of one image, in file order; masks are decoded on demand.

    Attributes:
        rles: K compressed RLEs (``counts`` as bytes), all of size ``size``.
        scores: ``(K,)`` float64.
        category_ids: ``(K,)`` int64 (1 where a record has no ``category_id``).
        size: ``(H, W)`` of the masks.
    """

    rles: tuple[dict[str, Any], ...]
    scores: np.ndarray
    category_ids: np.ndarray
    size: tuple[int, int]

    def masks(self) -> np.ndarray:
        """``(K, H, W)`` bool masks (H·W·K bytes: decode one image at a time)."""
        return decode_masks(self.rles)


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def read_results(
    source: str | os.PathLike | list[Any], *, num_classes: int | None = None
) -> dict[str, ImageResults]:
    """COCO result records grouped by image: ``{str(image_id): ImageResults}``.

    Args:
        source: a results JSON file, or its already parsed list of records. Each record is a
            dict with ``image_id`` (str or int), ``segmentation`` (COCO RLE, compressed or
            not), ``score`` (a finite number) and optionally ``category_id``.
        num_classes: when given, every record needs a ``category_id`` in 1..num_classes.

    Raises:
        FileNotFoundError: ``source`` is a path that does not exist.
        DataError: (a ``ValueError``) invalid JSON or a malformed record; one line naming the
            file and the record, e.g. ``p.json: record 3: score must be a finite number, got
            'high'``.

    Masks are not decoded here (a data set's proposals can exceed memory); call
    :meth:`ImageResults.masks` per image.
    """
    where = ""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        where = f"{path}: "
        records = read_json(path, "results file")
    else:
        records = source
    if not isinstance(records, list):
        raise DataError(
            f"{where}results must be a JSON list of records, got {type(records).__name__}"
        )
    if not records:
        raise DataError(f"{where}the results list is empty; expected at least one record")
    grouped: dict[str, tuple[list[dict[str, Any]], list[float], list[int], tuple[int, int]]] = {}
    first_record: dict[str, int] = {}  # where each image's mask size was first given
    for i, rec in enumerate(records):
        at = f"{where}record {i}"
        if not isinstance(rec, dict) or not {"image_id", "segmentation", "score"} <= set(rec):
            raise DataError(
                f"{at} must be a dict with image_id, segmentation and score, got {rec!r:.80}"
            )
        image_id, seg, score = rec["image_id"], rec["segmentation"], rec["score"]
        if isinstance(image_id, bool) or not isinstance(image_id, (str, int)):
            raise DataError(f"{at}: image_id must be a str or int, got {image_id!r:.40}")
        if not _is_number(score) or not math.isfinite(score):
            raise DataError(f"{at}: score must be a finite number, got {score!r:.40}")
        size = seg.get("size") if isinstance(seg, dict) else None
        if (
            not isinstance(size, list)
            or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
            or not isinstance(seg.get("counts"), (str, bytes, list))
        ):
            raise DataError(
                f"{at}: segmentation must be a COCO RLE {{'size': [H, W], 'counts': ...}}, "
                f"got {seg!r:.60}"
            )
        if "category_id" in rec or num_classes is not None:
            c = rec.get("category_id")
            high = num_classes if num_classes is not None else math.inf
            if isinstance(c, bool) or not isinstance(c, int) or not 1 <= c <= high:
                valid = f"in 1..{num_classes}" if num_classes is not None else ">= 1"
                raise DataError(f"{at}: category_id must be an int {valid}, got {c!r:.40}")
        else:
            c = 1
        key = str(image_id)
        h, w = size
        rles, scores, classes, first_size = grouped.setdefault(key, ([], [], [], (h, w)))
        first = first_record.setdefault(key, i)
        if (h, w) != first_size:
            raise DataError(
                f"{at}: mask is {h}x{w} but record {first}, the first of image {key!r}, is "
                f"{first_size[0]}x{first_size[1]}; one of them has the wrong size"
            )
        try:
            rles.append(_to_pycocotools(seg))
        except (TypeError, ValueError) as e:
            raise DataError(f"{at}: invalid uncompressed RLE counts: {e}") from None
        scores.append(float(score))
        classes.append(c)
    return {
        key: ImageResults(tuple(rles), np.asarray(scores), np.asarray(classes, np.int64), size)
        for key, (rles, scores, classes, size) in grouped.items()
    }
