"""Instance outlines as GeoJSON polygons, the convention QuPath imports (File > Import objects).

:func:`write_polygons` writes a ``FeatureCollection`` with one ``Feature`` per instance: a
``Polygon`` (its outline, traced by ``skimage.measure.find_contours`` on pixel edges, in
image pixel coordinates ``[x, y]``, the ring closed) and ``properties`` ``{"objectType":
"detection", "id": k, "score": s}``. The label map is never needed whole: instances are
traced from windows read around their bounding boxes, one tile's worth at a time, so an
image larger than memory is outlined in bounded memory (``tasks/predictions.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from pixelgroup._atomic import atomic_path
from pixelgroup.postprocess.tiles import Box

__all__ = ["write_polygons", "outline", "instance_crops"]


def outline(mask: np.ndarray) -> list[list[float]]:
    """The closed outline ``[[x, y], ...]`` of the largest part of ``mask (h, w)`` bool,
    through the midpoints of its border pixels' outer edges (``find_contours`` at 0.5 on the
    mask padded by one pixel; pixel ``(r, c)`` covers ``[c, c + 1) x [r, r + 1)``); holes and
    smaller parts are left out. Empty for an empty mask.

    Example:
        >>> outline(np.ones((1, 1), bool))
        [[1.0, 0.5], [0.5, 0.0], [0.0, 0.5], [0.5, 1.0], [1.0, 0.5]]
    """
    from skimage.measure import find_contours

    contours = find_contours(np.pad(mask, 1).astype(np.float32), 0.5)
    if not contours:
        return []
    # back to the unpadded mask, pixel (r, c) covering [r, r + 1) x [c, c + 1) as in QuPath
    ring = max(contours, key=len) - 0.5
    points = [[float(c), float(r)] for r, c in ring]
    return points if points[0] == points[-1] else [*points, points[0]]


def instance_crops(
    read: Callable[[Box], np.ndarray], boxes: np.ndarray, size: tuple[int, int], tile: int = 512
) -> Iterator[tuple[int, int, int, np.ndarray]]:
    """``(k, top, left, mask (h, w) bool)`` for each instance k + 1 of ``boxes`` that has
    pixels: its mask within its bounding box ``top, left, bottom, right``.

    Args:
        read: the instance ids ``(h, w)`` of a box of the image (0 background, 1..K).
        boxes: ``(K, 4)`` int: each instance's ``top, left, bottom, right`` (end exclusive).
        size: ``(H, W)`` of the image.
        tile: instances come in groups by the ``tile`` x ``tile`` cell holding their box's
            top-left corner, cropped from one window covering the group's boxes.

    Memory: one window (a cell grown by its instances' extents) at a time.
    """
    cells = (boxes[:, 0] // tile) * -(-size[1] // tile) + boxes[:, 1] // tile
    order = np.argsort(cells, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(cells[order]) != 0])
    for group in np.split(order, starts[1:]) if len(order) else []:
        b = boxes[group]
        window = Box(int(b[:, 0].min()), int(b[:, 1].min()), int(b[:, 2].max()), int(b[:, 3].max()))
        labels = read(window)
        for k in group.tolist():
            top, left, bottom, right = (int(v) for v in boxes[k])
            if bottom <= top or right <= left:
                continue
            crop = labels[
                top - window.top : bottom - window.top, left - window.left : right - window.left
            ]
            yield k, top, left, crop == k + 1


def write_polygons(
    read: Callable[[Box], np.ndarray],
    boxes: np.ndarray,
    scores: np.ndarray,
    size: tuple[int, int],
    path: str | Path,
    tile: int = 512,
) -> Path:
    """Write the outlines of instances 1..K as a GeoJSON ``FeatureCollection`` (see the
    module docstring) atomically to ``path``.

    Args:
        read, boxes, size, tile: as in :func:`instance_crops`, which reads the instances.
        scores: ``(K,)`` each instance's score.

    Memory: one window (a cell grown by its instances' extents) at a time.
    """
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write('{"type": "FeatureCollection", "features": [')
        first = True
        for k, top, left, mask in instance_crops(read, boxes, size, tile):
            ring = outline(mask)
            if not ring:
                continue
            feature = {
                "type": "Feature",
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[x + left, y + top] for x, y in ring]],
                },
                "properties": {
                    "objectType": "detection",
                    "id": k + 1,
                    "score": float(scores[k]),
                },
            }
            f.write(("\n" if first else ",\n") + json.dumps(feature))
            first = False
        f.write("\n]}\n")
    return Path(path)
