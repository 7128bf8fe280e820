"""`pixelgroup predict` through each task's `postprocess` and `write`: voc_instance and boundary."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from pixelgroup.cli import main
from pixelgroup.config import ExperimentConfig, from_dict, load_config, to_dict
from pixelgroup.engine.checkpoint import build_model_seeded, save_checkpoint
from pixelgroup.metrics.instance_map import VOC_CLASSES
from pixelgroup.postprocess.semantic_instances import SemanticInstances
from pixelgroup.tasks.predictions import write_semantic_prediction
from pixelgroup.viz import overlay
from tests._tiny import TINY_DENSE_OPTIONS

VOC_INSTANCE = {
    "task": "voc_instance",
    "data": {"name": "voc", "root": "unused", "options": {"max_size": 64}},
    "model": {
        "name": "dense",
        "options": {**TINY_DENSE_OPTIONS, "num_classes": 21},
    },
    "loss": {"num_iters": 0},
    "grouping": {"bandwidth": 0.2, "num_iters": 3, "min_area": 2},
}
PERSON = VOC_CLASSES.index("person") + 1


def _checkpoint(cfg, model, path):
    save_checkpoint({"config": to_dict(cfg), "model": model.state_dict(), "epoch": 0}, path)
    return str(path)


def test_voc_instance_predict_writes_labels_overlay_and_coco(shared_data, tmp_path):
    cfg = from_dict(ExperimentConfig, VOC_INSTANCE)
    model = build_model_seeded(cfg)
    with torch.no_grad():  # untrained, but every pixel votes "person": instances must appear
        model.semantic.bias[PERSON] = 20.0
    ckpt = _checkpoint(cfg, model, tmp_path / "voc.pt")
    image = tmp_path / "2008_000215.png"
    Image.open(shared_data / "voc" / "2008_000215.jpg").convert("RGB").resize((64, 48)).save(image)
    out = tmp_path / "pred"
    assert main(["predict", "--checkpoint", ckpt, str(image), "-o", str(out), "--quiet"]) == 0

    labels = np.asarray(Image.open(out / "2008_000215_labels.png"))
    assert labels.shape == (48, 64) and labels.max() >= 1
    records = json.loads((out / "2008_000215.json").read_text())
    assert len(records) == labels.max()
    scores = [r["score"] for r in records]
    assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
    for k, r in enumerate(records, start=1):
        assert r["category_id"] == PERSON and r["image_id"] == "2008_000215"
        rle = dict(r["segmentation"], counts=r["segmentation"]["counts"].encode())
        mask = mask_utils.decode(rle).astype(bool)
        assert mask.shape == (48, 64) and mask[labels == k].all()

    drawn = np.asarray(Image.open(out / "2008_000215_overlay.png"))
    assert drawn.shape == (48, 64, 3) and drawn.dtype == np.uint8
    rgb = np.asarray(Image.open(image), dtype=np.float64) / 255
    plain = (overlay(rgb, labels) * 255).round().astype(np.uint8)
    changed = np.any(drawn != plain, axis=2)
    assert changed.any()  # the captions
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_boundary_predict_writes_raw_and_thinned_maps(tmp_path):
    cfg = load_config(
        ExperimentConfig,
        "configs/bsds.yaml",
        ["device=cpu", "model.options={backbone: resnet50, pretrained: false, stages: [1, 2]}"],
    )
    ckpt = _checkpoint(cfg, build_model_seeded(cfg), tmp_path / "bsds.pt")
    rgb = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "img.png")
    out = tmp_path / "pred"
    args = ["predict", "--checkpoint", ckpt, str(tmp_path / "img.png"), "-o", str(out), "--quiet"]
    assert main(args) == 0
    raw = np.asarray(Image.open(out / "raw" / "img.png"))
    thinned = np.asarray(Image.open(out / "nms" / "img.png"))
    assert raw.shape == thinned.shape == (40, 56) and raw.dtype == np.uint16
    assert raw.max() > 0 and np.all(thinned <= raw.astype(np.int64) + 1)


def test_semantic_prediction_without_instances_and_size_mismatch(tmp_path):
    none = SemanticInstances(
        torch.zeros(0, 6, 7, dtype=torch.bool), torch.zeros(0, dtype=torch.int64), torch.zeros(0)
    )
    write_semantic_prediction(tmp_path, "s", torch.rand(3, 6, 7), none, VOC_CLASSES)
    assert json.loads((tmp_path / "s.json").read_text()) == []
    assert not np.asarray(Image.open(tmp_path / "s_labels.png")).any()
    with pytest.raises(ValueError, match=r"must match the image \(3, H, W\), got \(0, 6, 7\)"):
        write_semantic_prediction(tmp_path / "bad", "s", torch.rand(3, 5, 7), none, VOC_CLASSES)
    assert not (tmp_path / "bad").exists()
