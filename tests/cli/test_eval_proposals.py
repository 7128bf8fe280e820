"""`pixelgroup eval-proposals`: AR lines and JSON on the VOC samples, and its errors."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from pixelgroup.cli import main
from pixelgroup.data.coco import masks_to_results
from pixelgroup.data.voc import MatInstances, instance_masks


@pytest.fixture
def voc(shared_data):
    return shared_data / "voc"


def _gt_records(voc, shift=0):
    records = []
    ds = MatInstances(voc)
    for image_id, sample in zip(ds.image_ids, ds, strict=True):
        masks = torch.roll(instance_masks(sample.instance), shift, dims=2)
        scores = np.linspace(1.0, 0.5, len(masks))
        records += masks_to_results(image_id, masks, scores)
    return records


def _write(tmp_path, records, name="props.json"):
    path = tmp_path / name
    path.write_text(json.dumps(records))
    return path


def test_perfect_proposals(voc, tmp_path, capsys):
    props = _write(tmp_path, _gt_records(voc))
    png = tmp_path / "ar.png"
    reference = ["--reference", "paper AR=11:0.56,18:0.58,60:0.61", "--reference", "x=10:0.1"]
    assert main(["eval-proposals", str(props), str(voc), "--plot", str(png), *reference]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "AR@1 0.333" in lines  # 1 of 3, 3, 2, 4 instances per image: 4 of 12
    assert "AR@10 1.000" in lines and "R50@10 1.000" in lines and "box_AR@10 1.000" in lines
    assert "images 4 instances 12" in lines
    result = json.loads((tmp_path / "props.eval.json").read_text())
    assert result["AR@100"] == 1.0 and result["num_instances"] == 12
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_shifted_proposals_lower_ar(voc, tmp_path, capsys):
    props = _write(tmp_path, _gt_records(voc, shift=40))
    out = tmp_path / "out.json"
    assert main(["eval-proposals", str(props), str(voc), "--output", str(out)]) == 0
    ar = json.loads(out.read_text())["AR@10"]
    assert 0.0 < ar < 1.0


def test_subset(voc, tmp_path, capsys):
    records = [r for r in _gt_records(voc) if r["image_id"] == "2008_000359"]
    props = _write(tmp_path, records)
    assert main(["eval-proposals", str(props), str(voc)]) == 2
    assert "3 of 4 GT images have no proposals" in capsys.readouterr().err
    assert main(["eval-proposals", str(props), str(voc), "--subset"]) == 0
    assert "images 1 instances 2" in capsys.readouterr().out


def test_errors(voc, tmp_path, capsys):
    def error(records, gt=voc, name="p.json"):
        path = _write(tmp_path, records, name) if records is not None else tmp_path / "none.json"
        assert main(["eval-proposals", str(path), str(gt)]) == 2
        return capsys.readouterr().err

    assert "proposals file not found" in error(None)
    assert "p.json: the results list is empty" in error([])
    good = _gt_records(voc)
    small = masks_to_results("2008_000215", np.ones((1, 10, 10), bool), [1.0])
    assert "proposal masks are 10x10 but the image is 375x500" in error(small + good[3:])
    assert "not in" in error(good + masks_to_results("nope", np.ones((1, 4, 4), bool), [1.0]))
    assert "p.json: record 0 must be a dict" in error([{"image_id": "x"}])
    bad_score = dict(good[0], score="high")
    assert "p.json: record 0: score must be a finite number, got 'high'" in error([bad_score])
    assert "segmentation must be a COCO RLE" in error([dict(good[0], segmentation=[1, 2])])
    (tmp_path / "broken.json").write_text("[{")
    assert main(["eval-proposals", str(tmp_path / "broken.json"), str(voc)]) == 2
    assert "is not valid JSON" in capsys.readouterr().err
    assert "is not a VOC 2012 root" in error(good, gt=tmp_path)


def test_duplicate_gt_ids(tmp_path, capsys):
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "SegmentationObject", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / d).mkdir(parents=True)
    (voc / "ImageSets/Segmentation/val.txt").write_text("a\na\n")
    props = _write(tmp_path, masks_to_results("a", np.ones((1, 4, 4), bool), [1.0]))
    assert main(["eval-proposals", str(props), str(tmp_path)]) == 2
    assert "lists image ids more than once: ['a']" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--reference", "paper=11:0.56"], "--reference needs --plot"),
        (["--plot", "{tmp}/ar.png", "--reference", "paper"], "--reference must be LABEL=K:VALUE"),
        (["--plot", "{tmp}/ar.png", "--reference", "p=11:1.5"], "'11:1.5' is not a point K:VALUE"),
        (["--plot", "{tmp}/ar.png", "--reference", "p=x:0.5"], "'x:0.5' is not a point"),
        (["--plot", "{tmp}/ar.jpg"], "--plot must end in .png"),
        (["--plot", "{tmp}/dir.png"], "--plot .*dir.png is a folder"),
        (["--output", "{tmp}"], "--output .* is a folder; give a file name"),
        (["--output", "{tmp}/props.json/out.json"], "props.json is a file, not a folder"),
    ],
)
def test_argument_errors_before_any_work(voc, tmp_path, capsys, extra, message):
    props = _write(tmp_path, [])  # would fail later: every check here comes first
    (tmp_path / "dir.png").mkdir()
    argv = ["eval-proposals", str(props), str(voc), *[a.format(tmp=tmp_path) for a in extra]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("pixelgroup eval-proposals: error: ") and len(err.splitlines()) == 1
    assert re.search(message, err), err
