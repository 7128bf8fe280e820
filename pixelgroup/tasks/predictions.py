"""Prediction files of the instance-style tasks: label PNG, overlay PNG, COCO results JSON.

Class-agnostic instances (:func:`write_instance_prediction`) and semantic instances
(:func:`write_semantic_prediction`, overlay captioned with class names) share the layout
``STEM_labels.png`` / ``STEM_overlay.png`` / ``STEM.json``; every file is written atomically.
:func:`write_results_json` gathers the records of many images into one ``results.json``
(``pycocotools.coco.COCO.loadRes`` reads it), merged with the one a previous run into the same
folder wrote, so that it always lists every image whose files the folder holds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from pixelgroup._atomic import atomic_path
from pixelgroup.data.coco import masks_to_results
from pixelgroup.data.io import write_png, write_tiff
from pixelgroup.errors import DataError
from pixelgroup.postprocess.semantic_instances import SemanticInstances
from pixelgroup.viz.captions import draw_captions
from pixelgroup.viz.colors import overlay

__all__ = [
    "write_instance_prediction",
    "write_semantic_prediction",
    "masks_to_labels",
    "write_results_json",
    "read_results_records",
    "RESULTS_NAME",
]

RESULTS_NAME = "results.json"
"""The combined COCO results file of a prediction folder."""


def _paths(out_dir: str | Path, stem: str) -> list[Path]:
    out_dir = Path(out_dir)
    return [
        out_dir / f"{stem}_labels.png",
        out_dir / f"{stem}_overlay.png",
        out_dir / f"{stem}.json",
    ]


def _write_json(records: list[dict], path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(records, indent=1) + "\n")


def write_instance_prediction(
    out_dir: str | Path, stem: str, image: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor
) -> list[Path]:
    """Write the instances ``labels (H, W)`` (0 background, 1..K) with ``scores (K,)`` of
    ``image (C, H, W)`` in [0, 1]: ``STEM_labels.png`` (uint16 ids; ``STEM_labels.tif``, uint32,
    when K > 65,535), ``STEM_overlay.png`` and ``STEM.json`` (COCO results, category 1, RLE
    masks). Returns the three paths."""
    paths = _paths(out_dir, stem)
    lab = labels.numpy()
    wide = lab.size > 0 and int(lab.max()) > np.iinfo(np.uint16).max
    score = scores.numpy()
    records = []
    for k in np.unique(lab[(lab > 0) & (lab <= len(score))]).tolist():  # O(H·W) memory
        records += masks_to_results(stem, (lab == k)[None], score[[k - 1]])
    if wide:
        paths[0] = paths[0].with_suffix(".tif")
        write_tiff(lab.astype(np.uint32), paths[0])
    else:
        write_png(lab.astype(np.uint16), paths[0])
    rgb = image.permute(1, 2, 0).numpy()
    write_png((overlay(rgb, lab) * 255).round().astype(np.uint8), paths[1])
    _write_json(records, paths[2])
    return paths


def read_results_records(out_dir: str | Path) -> list[dict]:
    """The records of an existing ``out_dir/results.json`` (``[]`` when there is none);
    raises :class:`DataError` naming it when it is not a list of records with an
    ``image_id``."""
    path = Path(out_dir) / RESULTS_NAME
    if not path.exists():
        return []
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        records = e
    if not isinstance(records, list) or not all(
        isinstance(r, dict) and "image_id" in r for r in records
    ):
        raise DataError(
            f"{path} is not a results list that new predictions can be merged into; move it "
            "away or predict into another folder"
        )
    return records


def write_results_json(out_dir: str | Path, stems: Sequence[str]) -> Path:
    """The records of ``out_dir/STEM.json`` for every stem, in order, written atomically as one
    ``out_dir/results.json`` (a COCO results list: ``COCO.loadRes`` reads it, given ground
    truth whose image ids are the file stems). An existing ``results.json`` is merged, not
    replaced: its records of other images stay first, those of ``stems`` (predicted again)
    are replaced. Returns its path."""
    new = set(stems)
    records = [r for r in read_results_records(out_dir) if r["image_id"] not in new]
    for stem in stems:
        records += json.loads((Path(out_dir) / f"{stem}.json").read_text())
    path = Path(out_dir) / RESULTS_NAME
    _write_json(records, path)
    return path


def masks_to_labels(masks: torch.Tensor) -> np.ndarray:
    """``masks (K, H, W)`` bool, best first -> ``(H, W)`` uint16 ids 1..K (0 = none).

    Where masks overlap the earlier (higher-scored) one wins.
    """
    labels = np.zeros(masks.shape[1:], dtype=np.uint16)
    for k in range(len(masks) - 1, -1, -1):
        labels[masks[k].numpy()] = k + 1
    return labels


def write_semantic_prediction(
    out_dir: str | Path,
    stem: str,
    image: torch.Tensor,
    instances: SemanticInstances,
    class_names: Sequence[str],
) -> list[Path]:
    """Write the semantic instances of ``image (3, H, W)`` in [0, 1] atomically.

    ``instances`` has ``masks (K, H, W)`` (best first), ``classes (K,)`` in 1..C and
    ``scores (K,)``; ``class_names[c - 1]`` names class c. Files: ``STEM_labels.png`` (uint16
    ids 1..K in that order), ``STEM_overlay.png`` (instances over the image, captioned
    "class score") and ``STEM.json`` (COCO results with ``category_id`` = class).
    """
    masks, classes, scores = (
        t.cpu() for t in (instances.masks, instances.classes, instances.scores)
    )
    if masks.shape[1:] != image.shape[1:]:
        raise ValueError(
            f"instance masks (K, H, W) must match the image (3, H, W), got {tuple(masks.shape)} "
            f"and {tuple(image.shape)}"
        )
    paths = _paths(out_dir, stem)
    records = masks_to_results(stem, masks.numpy(), scores.numpy(), classes.numpy())
    labels = masks_to_labels(masks)
    blended = (overlay(image.permute(1, 2, 0).numpy(), labels) * 255).round().astype(np.uint8)
    captions = [
        f"{class_names[c - 1]} {s:.2f}"
        for c, s in zip(classes.tolist(), scores.tolist(), strict=True)
    ]
    write_png(labels, paths[0])
    write_png(draw_captions(blended, labels, captions), paths[1])
    _write_json(records, paths[2])
    return paths
