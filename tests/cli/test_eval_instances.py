"""`pixelgroup eval-instances`: mAP lines and JSON on the VOC samples, and its errors."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from pixelgroup.cli import main
from pixelgroup.data.coco import masks_to_results
from pixelgroup.data.voc import MatInstances
from pixelgroup.metrics.instance_map import instances_from_maps


@pytest.fixture
def voc(shared_data):
    return shared_data / "voc"


def _gt_records(voc, shift=0, wrong_class=False):
    records = []
    ds = MatInstances(voc)
    for image_id, sample in zip(ds.image_ids, ds, strict=True):
        masks, classes = instances_from_maps(sample.instance, sample.semantic)
        masks = torch.roll(masks, shift, dims=2)
        classes = classes % 20 + 1 if wrong_class else classes
        scores = np.linspace(1.0, 0.5, len(masks))
        records += masks_to_results(image_id, masks, scores, classes)
    return records


def _write(tmp_path, records, name="preds.json"):
    path = tmp_path / name
    path.write_text(json.dumps(records))
    return path


def test_perfect_predictions(voc, tmp_path, capsys):
    preds = _write(tmp_path, _gt_records(voc))
    assert main(["eval-instances", str(preds), str(voc)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "mAP@0.5 1.000" in lines and "mAP@0.7 1.000" in lines
    assert "images 4 instances 12 predictions 12" in lines
    assert "acc50 1.000 f1_50 1.000 pq50 1.000 acc50_95 1.000" in lines
    result = json.loads((tmp_path / "preds.eval.json").read_text())
    assert result["mAP@0.7"] == 1.0 and result["num_classes_present"] >= 1
    assert result["acc95"] == result["miou75"] == 1.0 and result["tp50"] == 12


def test_wrong_classes_and_shifted_masks(voc, tmp_path, capsys):
    out = tmp_path / "out.json"
    assert main(["eval-instances", str(_write(tmp_path, _gt_records(voc, wrong_class=True))),
                 str(voc), "--output", str(out)]) == 0  # fmt: skip
    result = json.loads(out.read_text())
    assert result["mAP@0.5"] == 0.0 and result["acc50"] == 1.0  # the matching ignores classes
    assert main(["eval-instances", str(_write(tmp_path, _gt_records(voc, shift=30))),
                 str(voc), "--output", str(out), "--overwrite"]) == 0  # fmt: skip
    result = json.loads(out.read_text())
    assert result["mAP@0.7"] <= result["mAP@0.5"] < 1.0
    assert result["acc50_95"] <= result["acc50"] < 1.0
    # one 1-pixel mask: no match, so the mean matched IoU is undefined and written as null
    sample = MatInstances(voc)[0]
    dot = torch.zeros(1, *sample.instance.shape, dtype=torch.bool)
    dot[0, 0, 0] = True
    records = masks_to_results(MatInstances(voc).image_ids[0], dot, [1.0], [1])
    assert main(["eval-instances", str(_write(tmp_path, records)), str(voc), "--subset",
                 "--output", str(out), "--overwrite"]) == 0  # fmt: skip
    assert "NaN" not in out.read_text()
    result = json.loads(out.read_text())
    assert result["miou50"] is None and (result["tp50"], result["fp50"]) == (0, 1)


def test_subset_and_missing_images(voc, tmp_path, capsys):
    records = [r for r in _gt_records(voc) if r["image_id"] == "2008_000359"]
    preds = _write(tmp_path, records)
    assert main(["eval-instances", str(preds), str(voc), "--subset"]) == 0
    assert "mAP@0.5 1.000" in capsys.readouterr().out.splitlines()
    assert main(["eval-instances", str(preds), str(voc)]) == 0  # others' instances missed
    assert "mAP@0.5 1.000" not in capsys.readouterr().out.splitlines()
    result = json.loads((tmp_path / "preds.eval-2.json").read_text())  # the first is kept
    assert result["fp50"] == 0 and result["fn50"] == 12 - result["tp50"] > 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"category_id": 21},
            "preds.json: record 0: category_id must be an int in 1..20, got 21",
        ),
        ({"category_id": 0}, "category_id must be an int in 1..20"),
        ({"category_id": "cat"}, "got 'cat'"),
        ({"image_id": "nope"}, "1 prediction image ids are not in"),
    ],
)
def test_bad_records(voc, tmp_path, capsys, change, message):
    records = _gt_records(voc)
    records[0].update(change)
    before = set(tmp_path.iterdir())
    assert main(["eval-instances", str(_write(tmp_path, records)), str(voc)]) == 2
    err = capsys.readouterr().err
    assert "pixelgroup eval-instances: error:" in err
    assert re.search(message, err), err
    assert {p.name for p in set(tmp_path.iterdir()) - before} == {"preds.json"}  # no output


def test_missing_category_and_files(voc, tmp_path, capsys):
    records = _gt_records(voc)
    del records[1]["category_id"]
    assert main(["eval-instances", str(_write(tmp_path, records)), str(voc)]) == 2
    assert "record 1: category_id must be an int in 1..20, got None" in capsys.readouterr().err
    assert main(["eval-instances", str(tmp_path / "none.json"), str(voc)]) == 2
    assert "predictions file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert main(["eval-instances", str(bad), str(voc)]) == 2
    assert "is not valid JSON" in capsys.readouterr().err


def test_mismatched_sizes_and_output_folder(voc, tmp_path, capsys):
    records = _gt_records(voc)
    small = masks_to_results("2008_000215", np.ones((1, 10, 10), bool), [1.0], [1])
    preds = _write(tmp_path, small + [r for r in records if r["image_id"] != "2008_000215"])
    assert main(["eval-instances", str(preds), str(voc)]) == 2
    err = capsys.readouterr().err
    assert "image '2008_000215': prediction masks are 10x10 but the image is 375x500" in err
    assert main(["eval-instances", str(preds), str(voc), "--output", str(tmp_path)]) == 2
    assert "--output" in capsys.readouterr().err


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["eval-instances", "--help"])
    assert "pixelgroup eval-instances preds.json" in capsys.readouterr().out
