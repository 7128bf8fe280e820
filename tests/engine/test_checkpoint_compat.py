"""Checkpoints written before the tasks/ layout (pixelgroup 0.1.0 as of the layout change) still
load, evaluate and resume."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from pixelgroup.engine import evaluate, load_checkpoint, load_model, train

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoint_v0_toy.pt"


def test_old_checkpoint_loads_evaluates_and_resumes(tmp_path):
    """``checkpoint_v0_toy.pt``: tests/_tiny.py's TINY config with epochs 1, trained by the
    code before the layout change (``pixelgroup.engine.tasks``, ``pixelgroup.experiment``)."""
    model, cfg, state = load_model(FIXTURE)
    assert cfg.task == "instance" and cfg.model.name == "toy" and state["epoch"] == 1
    metrics = evaluate(model, cfg, progress=False)
    assert {"AP50", "AP70", "ARI"} <= set(metrics)
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(FIXTURE, run / "checkpoint.pt")
    old = load_checkpoint(run / "checkpoint.pt")
    stored = old["config"]
    stored["train"]["epochs"] = 2
    torch.save(old, run / "checkpoint.pt")
    result = train(None, run, resume=True, progress=False)
    assert len(result.history) == 2 * len(old["history"])
    assert result.history[: len(old["history"])] == old["history"]
