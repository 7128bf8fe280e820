"""The `voc_instance` task: untrained pipeline on the VOC samples to mAP^r, options, errors."""

from __future__ import annotations

import math

import pytest
import torch

from pixelgroup.config import ExperimentConfig, from_dict
from pixelgroup.engine import evaluate, load_model, train
from pixelgroup.engine.checkpoint import build_model_seeded
from pixelgroup.tasks import get_task
from tests._tiny import TINY_DENSE_OPTIONS


def _cfg(root, data_options=None, **model_options):
    return from_dict(
        ExperimentConfig,
        {
            "task": "voc_instance",
            "data": {
                "name": "voc",
                "root": str(root),
                "options": {"max_size": 64, **(data_options or {})},
                "batch_size": 1,
                "eval_split": "val",
            },
            "model": {
                "name": "dense",
                "options": {**TINY_DENSE_OPTIONS, "num_classes": 21, **model_options},
            },
            "loss": {"num_iters": 0, "sample_ratio": 0.35},
            "train": {"epochs": 1, "iters_per_epoch": 2},
            "grouping": {"bandwidth": 0.2, "num_iters": 3, "min_area": 2},
        },
    )


@pytest.mark.slow
def test_untrained_pipeline_end_to_end(shared_data, tmp_path):
    cfg = _cfg(shared_data / "voc")
    metrics = evaluate(build_model_seeded(cfg), cfg, progress=False)
    assert metrics["num_images"] == 4 and metrics["num_instances"] == 12
    for key in ("mAP@0.5", "mAP@0.7"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["mAP@0.7"] <= metrics["mAP@0.5"]
    result = train(cfg, tmp_path, progress=False)
    assert len(result.history) == 2
    assert all(math.isfinite(h["loss"]) and h["semantic"] > 0 for h in result.history)
    reloaded, stored, _ = load_model(result.checkpoint)
    assert stored.task == "voc_instance"
    assert evaluate(reloaded, stored, progress=False)["num_instances"] == 12


def test_datasets_augment_train_only(shared_data):
    cfg = _cfg(shared_data / "voc")
    task = get_task("voc_instance")
    train_ds, val_ds = task.build_dataset(cfg, "train"), task.build_dataset(cfg, "val")
    a, v = train_ds[0], val_ds[0]
    assert max(a.image.shape[1:]) <= 64 and a.image.shape[1] % 8 == 0 and a.image.shape[2] % 8 == 0
    assert tuple(v.image.shape[1:]) == (48, 64)  # 375 x 500 -> long side 64, multiples of 8
    assert torch.equal(val_ds[0].image, v.image)


def test_frozen_stages():
    cfg = _cfg("unused", backbone="resnet50", frozen_stages=3)
    model = get_task("voc_instance").build_model(cfg)
    frozen = [model.backbone.stem, *model.backbone.layers[:2]]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in model.backbone.layers[2].parameters())


def test_errors(shared_data):
    task = get_task("voc_instance")
    voc = shared_data / "voc"
    with pytest.raises(ValueError, match="data.options.augment: expected bool, got 'yes'"):
        task.build_dataset(_cfg(voc, {"augment": "yes"}), "train")
    with pytest.raises(ValueError, match="data.options.size does not apply to the voc_instance"):
        task.build_dataset(_cfg(voc, {"size": [48, 64]}), "train")
    with pytest.raises(
        ValueError,
        match="unknown config key 'data.options.sise'; valid keys here: augment, ignore_index, "
        "max_size, size",
    ):
        task.build_dataset(_cfg(voc, {"sise": [48, 64]}), "train")
    with pytest.raises(ValueError, match="data.options.max_size must be >= 8"):
        task.build_dataset(_cfg(voc, {"max_size": 4}), "train")
    with pytest.raises(ValueError, match="frozen_stages must be an int in 0..5"):
        task.build_model(_cfg(voc, frozen_stages=9))
    with pytest.raises(ValueError, match="frozen_stages needs a ResNet backbone"):
        task.build_model(_cfg(voc, frozen_stages=2))
    cfg = _cfg(voc, num_classes=None)
    with pytest.raises(ValueError, match="needs a model with a semantic head"):
        evaluate(build_model_seeded(cfg), cfg, progress=False)
