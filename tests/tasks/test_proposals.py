"""The `proposals` engine task: an untrained pipeline end to end on the VOC samples."""

from __future__ import annotations

import math

import pytest
import torch

from pixelgroup.config import ExperimentConfig, from_dict, to_dict
from pixelgroup.engine import evaluate, load_model, train
from pixelgroup.engine.checkpoint import build_model_seeded
from pixelgroup.tasks import get_task
from tests._tiny import TINY_DENSE_OPTIONS


def _cfg(root, **model_options):
    return from_dict(
        ExperimentConfig,
        {
            "task": "proposals",
            "data": {
                "name": "voc",
                "root": str(root),
                "options": {"size": [48, 64]},
                "batch_size": 2,
                "eval_split": "val",
            },
            "model": {
                "name": "dense",
                "options": {**TINY_DENSE_OPTIONS, **model_options},
            },
            "loss": {"num_iters": 1, "sample_ratio": 0.5},
            "train": {"epochs": 1, "iters_per_epoch": 2},
            "grouping": {"bandwidth": 0.2, "num_iters": 3, "min_area": 2},
        },
    )


@pytest.mark.slow
def test_untrained_pipeline_end_to_end(shared_data, tmp_path):
    cfg = _cfg(shared_data / "voc", num_classes=21)
    torch.manual_seed(0)
    model = build_model_seeded(cfg)
    metrics = evaluate(model, cfg, progress=False)
    assert metrics["num_images"] == 4 and metrics["num_instances"] == 12
    for key in ("AR@1", "AR@10", "AR@100", "R50@10", "box_AR@10"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["AR@1"] <= metrics["AR@10"] <= metrics["AR@100"]
    result = train(cfg, tmp_path, progress=False)
    assert len(result.history) == 2
    assert all(math.isfinite(h["loss"]) and h["semantic"] > 0 for h in result.history)
    reloaded, _, _ = load_model(result.checkpoint)
    assert evaluate(reloaded, cfg, progress=False)["num_instances"] == 12


def test_config_errors(shared_data):
    task = get_task("proposals")
    cfg = _cfg(shared_data / "voc")
    bad_name = from_dict(ExperimentConfig, {**to_dict(cfg), "data": {"name": "toy"}})
    with pytest.raises(ValueError, match="reads data.name 'voc'"):
        task.build_dataset(bad_name, "val")
    bad_option = from_dict(
        ExperimentConfig,
        {**to_dict(cfg), "data": {"name": "voc", "root": "x", "options": {"sise": [1, 2]}}},
    )
    with pytest.raises(
        ValueError,
        match="unknown config key 'data.options.sise'; valid keys here: ignore_index, size",
    ):
        task.build_dataset(bad_option, "val")
    no_root = from_dict(ExperimentConfig, {**to_dict(cfg), "data": {"name": "voc"}})
    with pytest.raises(ValueError, match="data.root must name"):
        task.build_dataset(no_root, "val")
    bad_model = from_dict(
        ExperimentConfig, {**to_dict(cfg), "model": {"name": "dense", "options": {"depth": 3}}}
    )
    with pytest.raises(ValueError, match="unknown config key 'model.options.depth'"):
        task.build_model(bad_model)
