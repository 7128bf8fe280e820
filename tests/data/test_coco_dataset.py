"""The COCO dataset: polygons and RLEs, crowd regions, categories, and every malformed file.

``write_tiny_coco`` and ``write_tiny_folder`` also build the tiny datasets of the end-to-end
tests (tests/cli/test_own_data.py, tests/test_own_data_doc.py).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from pixelgroup.data import DATASETS, IGNORE_LABEL, CocoInstances, build_dataset
from pixelgroup.errors import ConfigError, DataError

# (H, W) and PIL mode of the tiny images: mixed sizes, grey, RGBA, palette, RGB
SHAPES = [(48, 64, "L"), (56, 40, "RGBA"), (64, 64, "P"), (40, 52, "RGB")]


def _scene(seed: int, h: int, w: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """A dark background with a box, an ellipse and a second box (the last on top): rgb and
    the three visible masks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    rgb = np.full((h, w, 3), 20, np.uint8)
    masks = [
        (yy >= 4) & (yy < h // 2) & (xx >= 4) & (xx < w // 2),
        ((yy - 0.7 * h) / (0.2 * h)) ** 2 + ((xx - 0.7 * w) / (0.2 * w)) ** 2 <= 1,
        (yy >= 6) & (yy < 16) & (xx >= w - 18) & (xx < w - 4),
    ]
    for m in masks:
        rgb[m] = rng.integers(100, 256, 3)
    return rgb, masks


def _save(rgb: np.ndarray, mode: str, path: Path) -> None:
    im = Image.fromarray(rgb)
    if mode == "L":
        im = im.convert("L")
    elif mode == "RGBA":
        im = im.convert("RGBA")
    elif mode == "P":
        im = im.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    im.save(path)


def _rle(mask: np.ndarray, compressed: bool = True) -> dict:
    if compressed:
        r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode()}
    flat = mask.flatten(order="F").astype(np.int8)
    change = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    counts = np.diff(np.concatenate([[0], change]))
    return {"size": list(mask.shape), "counts": [int(c) for c in counts]}


def write_tiny_coco(root: Path, splits: dict[str, int] | None = None) -> Path:
    """A COCO export under ``root``: ``images/SPLIT/*.png`` and
    ``annotations/instances_SPLIT.json``; per image a box as a polygon, an ellipse as a
    compressed RLE and a box as an uncompressed RLE; the first image of each split also has a
    crowd region. Images mix sizes and modes (:data:`SHAPES`). Returns ``root``."""
    splits = {"train": 4, "val": 2} if splits is None else splits
    categories = [{"id": 3, "name": "box"}, {"id": 7, "name": "ellipse"}]
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for s, (split, n) in enumerate(splits.items()):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for i in range(n):
            h, w, mode = SHAPES[i % len(SHAPES)]
            rgb, (box, ellipse, top) = _scene(10 * s + i, h, w)
            name = f"{split}_{i}.png"
            _save(rgb, mode, root / "images" / split / name)
            image_id = 100 * s + i + 1
            images.append({"id": image_id, "file_name": name, "width": w, "height": h})
            ys, xs = np.nonzero(box)
            x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            polygon = [float(v) for v in (x0, y0, x1, y0, x1, y1, x0, y1)]
            for seg, cat in ((polygon, 3), (_rle(ellipse), 7), (_rle(top, False), 3)):
                seg = [seg] if cat == 3 and isinstance(seg, list) else seg
                annotations.append({"image_id": image_id, "category_id": cat, "segmentation": seg})
            if i == 0:
                crowd = np.zeros((h, w), bool)
                crowd[h - 6 :, : w // 3] = True
                annotations.append(
                    {"image_id": image_id, "category_id": 7, "segmentation": _rle(crowd)}
                    | {"iscrowd": 1}
                )
        for k, ann in enumerate(annotations):
            ann.setdefault("iscrowd", 0)
            ann["id"] = k + 1
        data = {"images": images, "annotations": annotations, "categories": categories}
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
    return root


def coco_options(splits=("train", "val")) -> dict:
    """``data.options`` of :func:`write_tiny_coco`'s layout (paths relative to data.root)."""
    return {
        s: {"images": f"images/{s}", "annotations": f"annotations/instances_{s}.json"}
        for s in splits
    }


def write_tiny_folder(root: Path, splits: dict[str, int] | None = None) -> Path:
    """The same scenes as a folder dataset ``root/SPLIT/{images,masks}``. Returns ``root``."""
    splits = {"train": 4, "val": 2} if splits is None else splits
    for s, (split, n) in enumerate(splits.items()):
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "masks").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            h, w, mode = SHAPES[i % len(SHAPES)]
            rgb, masks = _scene(10 * s + i, h, w)
            _save(rgb, mode, root / split / "images" / f"{split}_{i}.png")
            ids = np.zeros((h, w), np.uint8)
            for k, m in enumerate(masks):
                ids[m] = k + 1
            Image.fromarray(ids).save(root / split / "masks" / f"{split}_{i}.png")
    return root


@pytest.fixture
def coco(tmp_path):
    return write_tiny_coco(tmp_path)


def _open(root: Path, split: str = "train", **kw) -> CocoInstances:
    return CocoInstances(
        root / "images" / split, root / "annotations" / f"instances_{split}.json", **kw
    )


def _edit(root: Path, change, split: str = "train") -> None:
    path = root / "annotations" / f"instances_{split}.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_reads_polygons_rles_crowd_and_categories(coco):
    ds = _open(coco)
    assert len(ds) == 4 and ds.category_ids == [3, 7] and ds.class_names == ["box", "ellipse"]
    for i, (h, w, _) in enumerate(SHAPES):
        sample = ds[i]
        assert sample.image.shape == (3, h, w) and sample.image.dtype == torch.float32
        assert sample.instance.shape == sample.semantic.shape == (h, w)
        _, (box, ellipse, top) = _scene(i, h, w)
        inst = sample.instance.numpy()
        # ids 1..K in annotation order; the small top box covers part of the first box
        assert np.array_equal(inst[top], np.full(top.sum(), 3))
        assert np.array_equal(inst[ellipse & ~top], np.full((ellipse & ~top).sum(), 2))
        assert (inst[box & ~top] == 1).all() and set(np.unique(inst)) <= {-1, 0, 1, 2, 3}
        sem = sample.semantic.numpy()
        assert (sem[inst == 2] == 2).all() and (sem[inst == 1] == 1).all()  # contiguous ids
        assert ((inst == IGNORE_LABEL) == (sem == IGNORE_LABEL)).all()
        assert (inst == IGNORE_LABEL).any() == (i == 0)  # the crowd region of image 0


def test_instance_ids_skip_hidden_annotations(coco):
    def hide(data):  # a fourth annotation entirely under the first box's top box
        first = data["annotations"][2]
        data["annotations"].insert(0, dict(copy.deepcopy(first), id=99, category_id=7))

    _edit(coco, hide)
    inst = _open(coco)[1].instance
    assert sorted(inst.unique().tolist()) == [0, 1, 2, 3]


def test_resize_and_registry(coco):
    ds = build_dataset(
        "coco",
        str(coco),
        "val",
        {
            "val": {"images": "images/val", "annotations": "annotations/instances_val.json"},
            "size": [32, 32],
        },
    )
    assert len(ds) == 2 and ds[1].image.shape == (3, 32, 32) and ds[0].instance.shape == (32, 32)
    assert "coco" in DATASETS
    absolute = {"train": {"images": str(coco / "images/train"), "annotations": "x.json"}}
    with pytest.raises(FileNotFoundError, match="COCO annotations not found: .*x.json"):
        build_dataset("coco", None, "train", absolute)


@pytest.mark.parametrize(
    ("split", "options", "match"),
    [
        ("test", {"train": {"images": "a", "annotations": "b"}}, r"data.options.test is not set"),
        ("val", {}, r"split 'val' of the coco dataset needs data.options.val"),
        ("train", {"train": {"images": "a"}}, r"data.options.train.annotations is missing"),
        ("extra", {}, r"splits train, val and test .* not 'extra'"),
        ("train", {"train": "a"}, r"data.options.train: expected a mapping"),
        (
            "train",
            {"train": {"images": "a", "annotation": "b"}},
            r"'data.options.train.annotation'",
        ),
        ("train", {"size": [4]}, r"data.options.size must be \[H, W\]"),
    ],
)
def test_option_errors(split, options, match):
    with pytest.raises(ConfigError, match=match):
        build_dataset("coco", "/nowhere", split, options)


def test_missing_files(coco):
    with pytest.raises(FileNotFoundError, match="COCO images folder not found"):
        CocoInstances(coco / "nope", coco / "annotations" / "instances_train.json")
    (coco / "images" / "train" / "train_1.png").unlink()
    with pytest.raises(FileNotFoundError, match="image not found: .*train_1.png"):
        _open(coco)


def _set(path, value):
    """A change to one annotation file: ``path`` is a tuple of keys/indices."""

    def change(data):
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (_set(("annotations",), {}), r"needs a list 'annotations'"),
        (_set(("images", 1, "width"), 0), r"images\[1\] needs 'id', 'file_name' and positive"),
        (_set(("images", 1, "width"), 99), r"train_1.png: image is 40x56 \(W x H\) but .* 99x56"),
        (_set(("images", 1, "id"), 1), r"image id 1 appears twice"),
        (_set(("categories", 1, "id"), 3), r"category id 3 appears twice"),
        (_set(("annotations", 0, "image_id"), 42), r"annotation 1: image_id 42 is not in"),
        (_set(("annotations", 0, "category_id"), 5), r"annotation 1 \(image train_0.png\): cat"),
        (_set(("annotations", 0, "iscrowd"), 2), r"iscrowd must be 0 or 1, got 2"),
        (_set(("annotations", 0, "segmentation"), []), r"annotation 1 .* has no segmentation"),
        (_set(("annotations", 0, "segmentation"), [[1, 2, 3]]), r"at least 3 points"),
        (
            _set(("annotations", 0, "segmentation"), [[0, 0, 80, 0, 80, 5]]),
            r"annotation 1 \(image train_0.png\): polygon point \(80, 0\) lies outside the 64x48",
        ),
        (
            _set(("annotations", 1, "segmentation", "size"), [48, 60]),
            r"annotation 2 \(image train_0.png\): RLE size 48x60 != image size 48x64",
        ),
        (_set(("annotations", 2, "segmentation", "counts"), [5, 5]), r"adding up to 48\*64"),
        (_set(("annotations", 1, "segmentation", "counts"), 3), r"'counts' must be a string"),
    ],
)
def test_malformed_annotations_fail_when_opened(coco, change, match):
    _edit(coco, change)
    with pytest.raises(DataError, match=match):
        _open(coco)


def test_bad_json_and_broken_rle(coco):
    path = coco / "annotations" / "instances_val.json"
    path.write_text("{not json")
    with pytest.raises(DataError, match="instances_val.json is not valid JSON"):
        _open(coco, "val")
    path.write_text("[]")
    with pytest.raises(DataError, match="expected a COCO JSON object, got a list"):
        _open(coco, "val")
    _edit(coco, _set(("annotations", 1, "segmentation", "counts"), "0000"))
    ds = _open(coco)  # a compressed RLE is decoded when its sample is read
    with pytest.raises(DataError, match="instances_train.json: image train_0.png: cannot decode"):
        ds[0]
