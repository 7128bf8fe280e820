"""Prediction files of the instance-style tasks: label PNG, overlay PNG, COCO results JSON.

Class-agnostic instances (:func:`write_instance_prediction`) and semantic instances
(:func:`write_semantic_prediction`, overlay captioned with class names) share the layout
``STEM_labels.png`` / ``STEM_overlay.png`` / ``STEM.json``; every file is written atomically.
An image larger than memory gets its labels written tile by tile into a tiled BigTIFF, with
its outlines (GeoJSON), COCO results and a downscaled overlay (:func:`write_tiled_labels`).
:func:`write_results_json` gathers the records of many images into one ``results.json``
(``pycocotools.coco.COCO.loadRes`` reads it), merged with the one a previous run into the same
folder wrote, so that it always lists every image whose files the folder holds.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from pixelgroup._atomic import atomic_path
from pixelgroup._memory import HeapTrimmer
from pixelgroup.data.coco import crop_to_result, masks_to_results
from pixelgroup.data.geojson import instance_crops, write_polygons
from pixelgroup.data.io import write_png, write_tiff
from pixelgroup.data.lazy_image import LazyImage
from pixelgroup.errors import DataError
from pixelgroup.postprocess.semantic_instances import SemanticInstances
from pixelgroup.postprocess.tiled_grouping import TileGroups, TileJoiner
from pixelgroup.postprocess.tiles import Box
from pixelgroup.viz.captions import draw_captions
from pixelgroup.viz.colors import overlay

__all__ = [
    "write_instance_prediction",
    "instance_outputs",
    "prediction_files",
    "write_tiled_labels",
    "LABEL_TILE",
    "OVERLAY_SIDE",
    "write_semantic_prediction",
    "masks_to_labels",
    "write_results_json",
    "read_results_records",
    "RESULTS_NAME",
]

RESULTS_NAME = "results.json"
"""The combined COCO results file of a prediction folder."""

LABEL_TILE = 256
"""Side of the tiles of a label TIFF written tile by tile (:func:`write_tiled_labels`), and of
the chunks of its temporary store."""


OVERLAY_SIDE = 2048
"""Longest side of the overlay PNG of an image written tile by tile (:func:`write_tiled_labels`):
the image and its labels sampled at a stride."""


def instance_outputs(out_dir: str | Path, stem: str) -> list[Path]:
    """Every file an instance prediction of image ``stem`` may write in ``out_dir``: those of
    :func:`write_instance_prediction` (``STEM_labels.png``, ``STEM_overlay.png``,
    ``STEM.json``, ``STEM_labels.tif`` past 65,535 instances) and of
    :func:`write_tiled_labels` (``STEM_labels.tif``, ``STEM.geojson``)."""
    out_dir = Path(out_dir)
    return [
        *prediction_files(out_dir, stem),
        out_dir / f"{stem}_labels.tif",
        out_dir / f"{stem}.geojson",
    ]


def prediction_files(out_dir: str | Path, stem: str) -> list[Path]:
    """``STEM_labels.png``, ``STEM_overlay.png`` and ``STEM.json`` in ``out_dir``: the files of
    :func:`write_instance_prediction` and :func:`write_semantic_prediction`."""
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
    paths = prediction_files(out_dir, stem)
    lab = labels.numpy()
    wide = lab.size > 0 and int(lab.max()) > np.iinfo(np.uint16).max
    score = scores.numpy()
    size = (int(lab.shape[0]), int(lab.shape[1]))
    boxes = ndimage.find_objects(np.where(lab <= len(score), lab, 0).astype(np.int64, copy=False))
    records = [  # each from its bounding box: O(H·W + the boxes' areas), not O(K·H·W)
        crop_to_result(stem, lab[box] == k, box[0].start, box[1].start, size, float(score[k - 1]))
        for k, box in enumerate(boxes, start=1)
        if box is not None
    ]
    if wide:
        paths[0] = paths[0].with_suffix(".tif")
        write_tiff(lab.astype(np.uint32), paths[0])
    else:
        write_png(lab.astype(np.uint16), paths[0])
    rgb = image.permute(1, 2, 0).numpy()
    write_png((overlay(rgb, lab) * 255).round().astype(np.uint8), paths[1])
    _write_json(records, paths[2])
    return paths


def write_tiled_labels(
    tiles: Iterable[TileGroups],
    size: tuple[int, int],
    out_dir: str | Path,
    stem: str,
    *,
    bandwidth: float,
    background_is_group: bool,
    overwrite: bool = False,
    geojson: bool = True,
    coco: bool = True,
    image: LazyImage | None = None,
) -> tuple[list[Path], torch.Tensor]:
    """The instances of an image of ``size = (H, W)`` from its tiles' groups
    (:class:`~pixelgroup.postprocess.tiled_grouping.TileJoiner`; ``bandwidth`` and
    ``background_is_group`` as in :func:`~pixelgroup.postprocess.tiled_grouping.join_tiles`),
    written as ``out_dir/STEM_labels.tif``: a tiled BigTIFF of :data:`LABEL_TILE` px tiles,
    zlib-compressed, uint16 ids (uint32 past 65,535 instances), 0 background; with
    ``geojson`` their outlines as ``out_dir/STEM.geojson`` (QuPath's detections,
    :func:`~pixelgroup.data.geojson.write_polygons`); with ``coco`` their COCO results as
    ``out_dir/STEM.json`` (category 1, compressed RLE at the image's size, as
    :func:`write_instance_prediction`'s, from each instance's bounding-box crop:
    :func:`~pixelgroup.data.coco.crop_to_result`); with ``image`` (the image read by window)
    ``out_dir/STEM_overlay.png``, the instances over the image sampled every s-th row and
    column, s the smallest stride that brings the long side to at most :data:`OVERLAY_SIDE`.
    Returns the paths written (the TIFF first) and ``scores (K,)``; the labels equal
    :func:`join_tiles`' map.

    Never holds a map of the image: each tile's core labels (as group ids) are spilled to a
    temporary zarr store in ``out_dir`` (removed at the end), then mapped to instance ids
    block by block while the TIFF is written (to a temp file renamed at the end); the
    outlines and the RLEs are read back around each instance's bounding box. Freed memory
    goes back to the system as the tiles come (``pixelgroup/_memory.py``). Existing files are
    replaced only with ``overwrite``; else a :class:`~pixelgroup.errors.DataError` before any
    work.
    """
    import tifffile
    import zarr

    out_dir = Path(out_dir)
    path = out_dir / f"{stem}_labels.tif"
    extra = {
        out_dir / f"{stem}.geojson": geojson,
        out_dir / f"{stem}.json": coco,
        out_dir / f"{stem}_overlay.png": image is not None,
    }
    for existing in [path, *(p for p, wanted in extra.items() if wanted)]:
        if existing.exists() and not overwrite:
            raise DataError(f"{existing} exists; pass --overwrite to replace it")
    spill = out_dir / f".{stem}_labels.spill.zarr"
    joiner = TileJoiner(size, bandwidth=bandwidth, background_is_group=background_is_group)
    block = (LABEL_TILE, LABEL_TILE)
    try:
        store = zarr.open_array(
            str(spill), mode="w", shape=size, chunks=block, dtype="uint32", fill_value=0
        )
        trim = HeapTrimmer()  # freed pages of each tile's work back to the system
        for t in tiles:
            ids = joiner.add(t)
            if ids.numel() and int(ids.max()) >= 2**32:  # (a core can be empty: rescaled)
                raise DataError(f"{stem}: more than 2**32 groups in its tiles; use larger tiles")
            store[t.core.slices()] = ids.numpy().astype(np.uint32)
            del ids
            trim()
        instance, scores = joiner.instances()
        dtype = np.uint16 if len(scores) <= np.iinfo(np.uint16).max else np.uint32
        lookup = instance.numpy().astype(dtype)
        boxes = _BoxAccumulator(len(scores))
        sampled = None if image is None else _Overlay(image, dtype)

        def read(box: Box) -> np.ndarray:
            rows, cols = box.slices()
            return lookup[np.asarray(store[rows, cols])]

        def blocks() -> Iterator[np.ndarray]:
            for top in range(0, size[0], LABEL_TILE):
                for left in range(0, size[1], LABEL_TILE):
                    box = Box(
                        top, left, min(top + LABEL_TILE, size[0]), min(left + LABEL_TILE, size[1])
                    )
                    labels = read(box)
                    boxes.add(labels, top, left)
                    if sampled is not None:
                        sampled.add(labels, box)
                    yield labels

        with atomic_path(path) as tmp:
            tifffile.imwrite(
                tmp,
                blocks(),
                shape=size,
                dtype=dtype,
                tile=block,
                bigtiff=True,
                photometric="minisblack",
                compression="zlib",
            )
        written = [path]
        if geojson:
            written.append(
                write_polygons(
                    read, boxes.boxes(), scores.numpy(), size, out_dir / f"{stem}.geojson"
                )
            )
        if coco:
            json_path = out_dir / f"{stem}.json"
            crops = instance_crops(read, boxes.boxes(), size)
            records = (
                crop_to_result(stem, mask, top, left, size, float(scores[k]))
                for k, top, left, mask in crops
            )
            with atomic_path(json_path) as tmp, open(tmp, "w") as f:
                f.write("[")
                for i, record in enumerate(records):
                    f.write((",\n" if i else "\n") + json.dumps(record))
                f.write("\n]\n")
            written.append(json_path)
        if sampled is not None:
            written.append(sampled.write(out_dir / f"{stem}_overlay.png"))
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    return written, scores


class _Overlay:
    """The overlay of an image written tile by tile: every ``stride``-th row and column of
    its labels and of ``image`` (as RGB), ``stride`` the smallest that brings the long side to
    at most :data:`OVERLAY_SIDE`, filled block by block."""

    def __init__(self, image: LazyImage, dtype: type) -> None:
        self.image = image
        self.stride = -(-max(image.size) // OVERLAY_SIDE)
        small = tuple(-(-n // self.stride) for n in image.size)
        self.labels: np.ndarray = np.zeros(small, dtype=dtype)
        self.rgb = np.zeros((*small, 3), dtype=np.float32)

    def add(self, labels: np.ndarray, box: Box) -> None:
        """The sampled pixels of ``box`` and its ``labels (h, w)``."""
        s = self.stride
        first_row, first_col = -box.top % s, -box.left % s
        rows = slice(first_row, box.bottom - box.top, s)
        cols = slice(first_col, box.right - box.left, s)
        part = labels[rows, cols]
        if part.size == 0:
            return
        top, left = (box.top + first_row) // s, (box.left + first_col) // s
        at = (slice(top, top + part.shape[0]), slice(left, left + part.shape[1]))
        self.labels[at] = part
        pixels = self.image.read(box)[:, rows, cols].numpy()
        rgb = pixels[:3] if len(pixels) >= 3 else np.repeat(pixels[:1], 3, axis=0)
        self.rgb[at] = rgb.transpose(1, 2, 0)

    def write(self, path: Path) -> Path:
        """The overlay as a PNG, blended a block of rows at a time (no float64 copy of the
        whole map)."""
        out = np.empty(self.rgb.shape, dtype=np.uint8)
        for top in range(0, len(self.rgb), LABEL_TILE):
            rows = slice(top, top + LABEL_TILE)
            out[rows] = (overlay(self.rgb[rows], self.labels[rows]) * 255).round()
        write_png(out, path)
        return path


class _BoxAccumulator:
    """The bounding box ``(top, left, bottom, right)`` of each instance 1..K, from blocks."""

    def __init__(self, count: int) -> None:
        big = torch.iinfo(torch.int64).max
        self._low = torch.full((2, count + 1), big, dtype=torch.int64)
        self._high = torch.full((2, count + 1), -1, dtype=torch.int64)

    def add(self, labels: np.ndarray, top: int, left: int) -> None:
        ids = torch.from_numpy(labels.astype(np.int64)).flatten()
        rows, cols = torch.meshgrid(
            torch.arange(labels.shape[0]) + top, torch.arange(labels.shape[1]) + left, indexing="ij"
        )
        for axis, where in enumerate((rows.flatten(), cols.flatten())):
            self._low[axis].scatter_reduce_(0, ids, where, "amin")
            self._high[axis].scatter_reduce_(0, ids, where + 1, "amax")

    def boxes(self) -> np.ndarray:
        """``(K, 4)`` int64 (an instance without pixels: an empty box at 0)."""
        low, high = self._low[:, 1:], self._high[:, 1:].clamp_min(0)
        return torch.stack(
            [low[0].clamp_max(high[0]), low[1].clamp_max(high[1]), high[0], high[1]], 1
        ).numpy()


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
    paths = prediction_files(out_dir, stem)
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
