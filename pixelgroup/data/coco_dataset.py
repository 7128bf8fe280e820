"""``CocoInstances``: train and evaluate on a COCO export (CVAT, Label Studio, Roboflow, ...).

One split is a folder of images and a COCO *instances* JSON describing them::

    {"images": [{"id": 1, "file_name": "0001.jpg", "width": 640, "height": 480}, ...],
     "annotations": [{"id": 7, "image_id": 1, "category_id": 3, "iscrowd": 0,
                      "segmentation": [[x0, y0, x1, y1, ...]] or {"size": [H, W], "counts": ...}},
                     ...],
     "categories": [{"id": 3, "name": "coin"}, ...]}

``file_name`` is read relative to the images folder. Segmentations are polygons or RLEs
(compressed or not), decoded with pycocotools (:func:`~pixelgroup.data.coco.segmentation_mask`).
A sample's ``instance`` map holds ids 1..K in annotation order (only the instances with a
visible pixel; where annotations overlap the smaller one is on top), 0 on background and
:data:`IGNORE_LABEL` on ``iscrowd`` regions not covered by an instance; ``semantic`` holds the
category's contiguous index 1..C (:attr:`CocoInstances.category_ids` maps it back to the COCO
id), 0 and :data:`IGNORE_LABEL` likewise.

The whole JSON is checked when the dataset opens (structure, ids, every polygon and RLE
against its image's size, and every image file's size against the JSON, from file headers),
so a bad annotation stops the run before training, in one line naming the file. Images of any
mode are read as RGB (:func:`~pixelgroup.data.io.read_image`); ``size = (H, W)`` resizes every
sample so that images of mixed sizes batch together.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from pixelgroup._config_io import option
from pixelgroup.data.coco import segmentation_mask
from pixelgroup.data.io import image_size, read_image, read_json
from pixelgroup.data.sample import InstanceSample
from pixelgroup.data.transforms import ResizeSample
from pixelgroup.errors import DataError

__all__ = ["CocoOptions", "CocoSplit", "CocoInstances", "IGNORE_LABEL"]

_log = logging.getLogger(__name__)

IGNORE_LABEL = -1
"""Label of ``iscrowd`` pixels in ``instance`` and ``semantic`` maps: no loss, no score."""

_POLYGON_SLACK = 1.0  # pixels a polygon vertex may lie outside its image (rounding in exports)


@dataclass(frozen=True)
class CocoSplit:
    """One split of a COCO dataset: a folder of ``images`` and the COCO instances JSON
    (``annotations``) that describes them; relative paths are read from ``data.root``. Both
    are required (they default to ``None`` only so that a missing one is a
    :class:`~pixelgroup.errors.ConfigError` naming it when the split is opened)."""

    images: str | None = None
    annotations: str | None = None


@dataclass(frozen=True)
class CocoOptions:
    """``data.name: coco`` (:class:`CocoInstances`): one :class:`CocoSplit` per split
    (``{images: DIR, annotations: FILE}``; a split that is not set is an error only when it is
    used); ``size: [H, W]`` resizes every sample (needed for batches of images of mixed
    sizes)."""

    train: CocoSplit | None = None
    val: CocoSplit | None = None
    test: CocoSplit | None = None
    size: tuple[int, ...] | None = option(None, min=1)


@dataclass(frozen=True)
class _Annotation:
    segmentation: Any
    crowd: bool
    category: int  # contiguous index 1..C


@dataclass(frozen=True)
class _Image:
    path: Path
    image_id: int | str
    height: int
    width: int
    annotations: tuple[_Annotation, ...]


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _read_json(path: Path) -> dict[str, Any]:
    data = read_json(path, "COCO annotations")
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a COCO JSON object, got a {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(
                f"{path}: a COCO instances file needs a list {key!r} "
                f"(got {type(data.get(key)).__name__})"
            )
    return data


def _zero_area(seg: object) -> bool:
    """Whether ``seg`` (checked) is polygons that all enclose no area (shoelace formula)."""
    if not isinstance(seg, list):
        return False
    for polygon in seg:
        x, y = np.asarray(polygon, dtype=np.float64).reshape(-1, 2).T
        if abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) > 0:
            return False
    return True


def _check_segmentation(seg: object, height: int, width: int, at: str) -> None:
    """One annotation's polygons or RLE checked against its ``height x width`` image."""
    if isinstance(seg, dict):
        size, counts = seg.get("size"), seg.get("counts")
        if not isinstance(size, list) or len(size) != 2 or not all(_is_int(v) for v in size):
            raise DataError(f"{at}: RLE segmentation needs 'size': [H, W], got {seg!r:.60}")
        if size != [height, width]:
            raise DataError(f"{at}: RLE size {size[0]}x{size[1]} != image size {height}x{width}")
        if isinstance(counts, list):
            if not all(_is_int(c) and c >= 0 for c in counts) or sum(counts) != height * width:
                raise DataError(
                    f"{at}: uncompressed RLE counts must be run lengths adding up to "
                    f"{height}*{width} = {height * width} pixels"
                )
        elif not isinstance(counts, str) or not counts:
            raise DataError(f"{at}: RLE 'counts' must be a string or a list, got {counts!r:.40}")
        return
    if not isinstance(seg, list) or not seg:
        raise DataError(
            f"{at} has no segmentation (got {seg!r:.40}); bounding-box-only annotations "
            "cannot train instance masks"
        )
    for polygon in seg:
        if (
            not isinstance(polygon, list)
            or len(polygon) < 6
            or len(polygon) % 2
            or not all(_is_number(v) for v in polygon)
        ):
            raise DataError(
                f"{at}: a polygon must be a list of x, y numbers with at least 3 points, "
                f"got {polygon!r:.60}"
            )
        xy = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
        outside = (xy < -_POLYGON_SLACK) | (xy > np.array([width, height]) + _POLYGON_SLACK)
        if outside.any():
            bad = xy[outside.any(1)][0]
            raise DataError(
                f"{at}: polygon point ({bad[0]:g}, {bad[1]:g}) lies outside the "
                f"{width}x{height} (W x H) image"
            )


def _categories(data: dict[str, Any], path: Path) -> tuple[list[int], list[str]]:
    ids, names = [], []
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or not _is_int(cat.get("id")):
            raise DataError(f"{path}: categories[{i}] needs an integer 'id', got {cat!r:.60}")
        if cat["id"] in ids:
            raise DataError(f"{path}: category id {cat['id']} appears twice")
        ids.append(cat["id"])
        names.append(str(cat.get("name", cat["id"])))
    order = sorted(range(len(ids)), key=lambda k: ids[k])
    return [ids[k] for k in order], [names[k] for k in order]


class CocoInstances(Dataset):
    """Images + COCO instance annotations (see the module docstring).

    Args:
        images: the folder that ``file_name`` is relative to.
        annotations: the COCO instances JSON.
        size: ``(H, W)`` to resize every sample to (image bilinear, maps nearest), or None.

    Items are :class:`~pixelgroup.data.InstanceSample` with ``image (3, H, W)`` in [0, 1]
    and ``(H, W)`` int64 ``instance`` / ``semantic`` maps.

    Attributes:
        category_ids: COCO category id of each contiguous class index 1..C
            (``category_ids[c - 1]``).
        class_names: the category names in the same order.
        image_ids: the COCO image id of each item.

    Raises:
        FileNotFoundError: the JSON, the images folder or an image file is missing.
        DataError: a malformed JSON or annotation, or an image whose size differs from the
            JSON's; one line naming the file (and the annotation).

    Cost: opening reads the JSON, checks every annotation and reads every image file's
    header (about a millisecond each); a sample decodes only its own annotations.
    """

    def __init__(
        self,
        images: str | Path,
        annotations: str | Path,
        size: tuple[int, int] | None = None,
    ) -> None:
        self.images_dir, self.annotations_path = Path(images), Path(annotations)
        data = _read_json(self.annotations_path)
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f"COCO images folder not found: {self.images_dir}")
        path = self.annotations_path
        self.category_ids, self.class_names = _categories(data, path)
        index = {cid: k + 1 for k, cid in enumerate(self.category_ids)}

        by_id: dict[int | str, dict[str, Any]] = {}
        for i, im in enumerate(data["images"]):
            ok = isinstance(im, dict) and isinstance(im.get("file_name"), str)
            ok = ok and isinstance(im.get("id"), (int, str)) and not isinstance(im["id"], bool)
            ok = ok and all(_is_int(im.get(k)) and im[k] > 0 for k in ("width", "height"))
            if not ok:
                raise DataError(
                    f"{path}: images[{i}] needs 'id', 'file_name' and positive integer 'width' "
                    f"and 'height', got {im!r:.80}"
                )
            if im["id"] in by_id:
                raise DataError(f"{path}: image id {im['id']!r} appears twice")
            file = self.images_dir / im["file_name"]
            actual = image_size(file)  # header only; FileNotFoundError when missing
            if actual != (im["height"], im["width"]):
                raise DataError(
                    f"{file}: image is {actual[1]}x{actual[0]} (W x H) but {path} says "
                    f"{im['width']}x{im['height']} (EXIF orientation applied)"
                )
            by_id[im["id"]] = im

        per_image: dict[int | str, list[_Annotation]] = {k: [] for k in by_id}
        instances = dict.fromkeys(by_id, 0)  # per image: not crowd, not of zero area
        zero_area = 0
        for i, ann in enumerate(data["annotations"]):
            at = f"{path}: annotation {ann.get('id', i) if isinstance(ann, dict) else i}"
            if not isinstance(ann, dict):
                raise DataError(f"{at} must be an object, got {ann!r:.60}")
            im = by_id.get(ann.get("image_id"))  # type: ignore[arg-type]
            if im is None:
                raise DataError(f"{at}: image_id {ann.get('image_id')!r:.40} is not in 'images'")
            at = f"{at} (image {im['file_name']})"
            if ann.get("category_id") not in index:
                raise DataError(
                    f"{at}: category_id {ann.get('category_id')!r:.40} is not in 'categories'"
                )
            crowd = ann.get("iscrowd", 0)
            if not _is_int(crowd) or crowd not in (0, 1):
                raise DataError(f"{at}: iscrowd must be 0 or 1, got {crowd!r:.40}")
            seg = ann.get("segmentation")
            _check_segmentation(seg, im["height"], im["width"], at)
            flat = _zero_area(seg)
            zero_area += flat
            instances[im["id"]] += not crowd and not flat
            per_image[im["id"]].append(_Annotation(seg, bool(crowd), index[ann["category_id"]]))

        self.items = [
            _Image(
                self.images_dir / im["file_name"],
                image_id,
                im["height"],
                im["width"],
                tuple(per_image[image_id]),
            )
            for image_id, im in by_id.items()
        ]
        if not self.items:
            raise DataError(f"{path} lists no images")
        empty = sum(n == 0 for n in instances.values())
        if empty == len(self.items):
            raise DataError(
                f"{path}: none of its {empty} images has an instance annotation (crowd "
                "regions and zero-area polygons do not count); there is nothing to learn or "
                "score"
            )
        if empty or zero_area:
            _log.warning(
                "%s: %d of %d images have no instance annotation (all background); %d "
                "annotations are polygons of zero area",
                path,
                empty,
                len(self.items),
                zero_area,
            )
        self.image_ids = [item.image_id for item in self.items]
        self.resize = None if size is None else ResizeSample(size)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def sizes(self) -> list[tuple[int, int]]:
        """``(H, W)`` of every sample as :meth:`__getitem__` returns it (after ``size``)."""
        if self.resize is not None:
            return [self.resize.size] * len(self.items)
        return [(item.height, item.width) for item in self.items]

    def label_maps(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(instance, semantic)`` ``(H, W)`` int64 maps of item ``index`` at its image's size."""
        item = self.items[index]
        h, w = item.height, item.width
        instance = np.zeros((h, w), np.int64)
        semantic = np.zeros((h, w), np.int64)
        masks, classes = [], []
        for k, ann in enumerate(item.annotations):
            try:
                mask = segmentation_mask(ann.segmentation, h, w)
            except DataError as e:
                raise DataError(f"{self.annotations_path}: image {item.path.name}: {e}") from None
            if ann.crowd:
                instance[mask], semantic[mask] = IGNORE_LABEL, IGNORE_LABEL
            else:
                masks.append((k, mask))
                classes.append(ann.category)
        # paint larger instances first so that a small one lying on a large one stays visible
        order = sorted(range(len(masks)), key=lambda j: -int(masks[j][1].sum()))
        for j in order:
            instance[masks[j][1]] = j + 1
            semantic[masks[j][1]] = classes[j]
        present = np.unique(instance[instance > 0])
        remap = np.zeros(len(masks) + 1, np.int64)
        remap[present] = np.arange(1, len(present) + 1)
        instance[instance > 0] = remap[instance[instance > 0]]
        return instance, semantic

    def __getitem__(self, index: int) -> InstanceSample:
        instance, semantic = self.label_maps(index)
        sample = InstanceSample(
            image=read_image(self.items[index].path),
            instance=torch.from_numpy(instance),
            semantic=torch.from_numpy(semantic),
        )
        return sample if self.resize is None else self.resize(sample)

    def __repr__(self) -> str:
        return (
            f"CocoInstances({str(self.annotations_path)!r}, images={len(self)}, "
            f"classes={len(self.category_ids)})"
        )
