"""COCO RLE I/O: round trips, result records against pycocotools, and malformed files."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from pixelgroup.data.coco import decode_masks, encode_masks, masks_to_results, read_results
from pixelgroup.errors import DataError


def _masks(seed=0, k=3, h=7, w=9):
    return np.random.default_rng(seed).random((k, h, w)) < 0.4


def test_encode_decode_round_trip():
    masks = _masks()
    rles = encode_masks(masks)
    assert [r["size"] for r in rles] == [[7, 9]] * 3
    assert all(isinstance(r["counts"], str) for r in rles)
    json.dumps(rles)  # JSON-ready
    np.testing.assert_array_equal(decode_masks(rles), masks)
    np.testing.assert_array_equal(decode_masks(encode_masks(torch.from_numpy(masks))), masks)
    assert encode_masks(np.zeros((0, 4, 4), bool)) == []


def test_decode_accepts_bytes_and_uncompressed_counts():
    m = np.array([[False, True], [True, False]])
    rle = mask_utils.encode(np.asfortranarray(m[:, :, None].astype(np.uint8)))[0]
    assert decode_masks([rle])[0].tolist() == m.tolist()  # bytes counts
    plain = {"size": [2, 2], "counts": [1, 2, 1]}  # column-major runs: 0, 1, 1, 0
    assert decode_masks([plain])[0].tolist() == m.tolist()


def test_decode_errors():
    with pytest.raises(ValueError, match="needs at least one RLE"):
        decode_masks([])
    rles = encode_masks(_masks(h=4)) + encode_masks(_masks(h=5))
    with pytest.raises(ValueError, match=r"one size, got sizes \[\(4, 9\), \(5, 9\)\]"):
        decode_masks(rles)
    with pytest.raises(DataError, match="cannot decode RLE masks"):
        decode_masks([{"size": [2, 2], "counts": "0O0O0O"}])  # runs longer than the mask


def test_decode_catches_runs_shorter_than_the_mask(monkeypatch):
    """pycocotools leaves the rest of the buffer uninitialised; stand-in: a buffer of ones."""
    from pixelgroup.data import coco

    monkeypatch.setattr(coco.mask_utils, "decode", lambda rles: np.ones((2, 2, len(rles)), "u1"))
    with pytest.raises(DataError, match="the runs of mask 0 do not cover its 2x2 pixels"):
        decode_masks([{"size": [2, 2], "counts": [1, 1]}])  # one 0, one 1: two pixels missing


def test_results_match_pycocotools():
    masks = _masks()
    masks[1] = False  # an empty mask: area 0, box of zeros
    records = masks_to_results("img", masks, torch.tensor([0.5, 0.9, 0.1]), [3, 1, 2])
    assert [r["category_id"] for r in records] == [3, 1, 2]
    assert [r["score"] for r in records] == pytest.approx([0.5, 0.9, 0.1])
    for rec, m in zip(records, masks, strict=True):
        assert list(rec) == ["image_id", "category_id", "segmentation", "score", "area", "bbox"]
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        assert rec["area"] == int(m.sum()) == mask_utils.area(rle)
        assert rec["bbox"] == [float(v) for v in mask_utils.toBbox(rle)]
        assert rec["segmentation"]["counts"] == rle["counts"].decode()
    assert records[1]["bbox"] == [0.0, 0.0, 0.0, 0.0]
    assert [r["category_id"] for r in masks_to_results(7, masks, [1, 1, 1])] == [1, 1, 1]
    assert masks_to_results("x", np.zeros((0, 3, 3), bool), []) == []


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((np.ones((2, 3, 3), bool), [1.0]), ValueError, "expected 2 scores"),
        ((np.ones((1, 3, 3), bool), [float("nan")]), ValueError, "scores must be finite"),
        ((np.ones((1, 3, 3), bool), [1.0], [1, 2]), ValueError, "expected 1 category_ids"),
        ((np.ones((1, 3, 3), bool), [1.0], [0]), ValueError, "category_ids must be >= 1, got 0"),
        ((np.ones((3, 3), bool), [1.0]), ValueError, r"masks must have shape \(K, H, W\)"),
        (([[[True]]], [1.0]), TypeError, "masks must be a .K, H, W. array or tensor, got list"),
    ],
)
def test_results_errors(args, error, match):
    with pytest.raises(error, match=match):
        masks_to_results("img", *args)


def test_read_results_groups_by_image(tmp_path):
    a, b = _masks(1), _masks(2, k=2, h=5, w=5)
    records = masks_to_results("a", a, [0.1, 0.2, 0.3], [4, 5, 6])
    records += masks_to_results(7, b, [0.9, 0.8])
    plain = {"size": [5, 5], "counts": [25]}  # an empty uncompressed mask of image 7
    records.append({"image_id": 7, "segmentation": plain, "score": 1})  # no category_id
    path = tmp_path / "results.json"
    path.write_text(json.dumps(records))
    for source in (path, str(path), records):
        out = read_results(source)
        assert list(out) == ["a", "7"]
        assert out["a"].size == (7, 9) and out["7"].size == (5, 5)
        np.testing.assert_array_equal(out["a"].masks(), a)
        np.testing.assert_array_equal(out["7"].masks(), np.concatenate([b, np.zeros((1, 5, 5))]))
        assert out["a"].scores.tolist() == [0.1, 0.2, 0.3]
        assert out["a"].category_ids.tolist() == [4, 5, 6]
        assert out["7"].category_ids.tolist() == [1, 1, 1]  # 1 where a record has none
    assert read_results(records[:3], num_classes=6)["a"].category_ids.tolist() == [4, 5, 6]


def _good():
    return masks_to_results("img", _masks(), [0.1, 0.2, 0.3])


@pytest.mark.parametrize(
    ("records", "match"),
    [
        ({"a": 1}, "results must be a JSON list of records, got dict"),
        ([], "the results list is empty"),
        ([{"image_id": "x"}], "record 0 must be a dict with image_id, segmentation and score"),
        ([1], "record 0 must be a dict"),
        ([{**_good()[0], "score": "high"}], "record 0: score must be a finite number, got 'high'"),
        ([{**_good()[0], "score": True}], "record 0: score must be a finite number, got True"),
        ([{**_good()[0], "score": float("nan")}], "record 0: score must be a finite number"),
        ([{**_good()[0], "image_id": [1]}], r"record 0: image_id must be a str or int, got \[1\]"),
        ([{**_good()[0], "segmentation": [1, 2]}], "record 0: segmentation must be a COCO RLE"),
        ([{**_good()[0], "segmentation": {"size": [0, 3], "counts": ""}}], "must be a COCO RLE"),
        ([{**_good()[0], "segmentation": {"size": [3, 3]}}], "must be a COCO RLE"),
        ([*_good(), {**_good()[0], "category_id": 0}], "record 3: category_id must be an int >= 1"),
        (
            [_good()[0], {**masks_to_results("img", _masks(h=4), [1, 1, 1])[0]}],
            "record 1: mask is 4x9 but record 0, the first of image 'img', is 7x9",
        ),
        (
            [{**_good()[0], "segmentation": {"size": [2, 2], "counts": ["a"]}}],
            "record 0: invalid uncompressed RLE counts",
        ),
    ],
)
def test_read_results_errors_name_the_record(records, match, tmp_path):
    with pytest.raises(DataError, match=match):
        read_results(records)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(records))
    with pytest.raises(DataError, match=f"^{re.escape(str(path))}: "):  # the file is named first
        read_results(path)


def test_read_results_category_range():
    records = masks_to_results("img", _masks(), [0.1, 0.2, 0.3], [1, 2, 21])
    with pytest.raises(DataError, match=r"record 2: category_id must be an int in 1\.\.20, got 21"):
        read_results(records, num_classes=20)
    del records[1]["category_id"]
    with pytest.raises(
        DataError, match=r"record 1: category_id must be an int in 1\.\.20, got None"
    ):
        read_results(records, num_classes=20)


def test_read_results_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="results file not found"):
        read_results(tmp_path / "none.json")
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(DataError, match="broken.json is not valid JSON"):
        read_results(tmp_path / "broken.json")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DataError, match="is not a UTF-8 text"):
        read_results(tmp_path / "binary.json")


def test_decode_more_than_255_masks():
    """pycocotools' area() of a list of more than 255 RLEs overflows under NumPy 2; a full-size
    VOC proposals file has images with ~1000 masks."""
    masks = np.zeros((300, 5, 4), dtype=bool)
    masks[np.arange(300), np.arange(300) % 5, np.arange(300) % 4] = True
    assert np.array_equal(decode_masks(encode_masks(masks)), masks)


def test_the_record_of_a_crop_is_that_of_the_whole_mask():
    """crop_to_result (an instance of an image larger than memory, from its bounding-box
    crop) equals masks_to_results of the image's mask: runs across columns (crops of the
    image's full height), down to the last pixel, from the first, empty crops."""
    from pixelgroup.data.coco import crop_to_result

    rng = np.random.default_rng(0)
    cases = [((4, 3), (0, 0), np.ones((4, 3), bool)), ((4, 3), (3, 2), np.ones((1, 1), bool))]
    cases.append(((5, 6), (1, 1), np.zeros((2, 2), bool)))
    for _ in range(500):
        height, width = (int(v) for v in rng.integers(1, 12, 2))
        h, w = int(rng.integers(1, height + 1)), int(rng.integers(1, width + 1))
        top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        cases.append(((height, width), (top, left), rng.random((h, w)) < rng.random()))
    for size, (top, left), crop in cases:
        mask = np.zeros((1, *size), bool)
        mask[0, top : top + crop.shape[0], left : left + crop.shape[1]] = crop
        expected = masks_to_results("img", mask, [0.25])[0]
        assert crop_to_result("img", crop, top, left, size, 0.25) == expected, (size, top, left)
    with pytest.raises(ValueError, match="lies outside the image"):
        crop_to_result("img", np.ones((3, 3), bool), 2, 0, (4, 4), 0.5)
