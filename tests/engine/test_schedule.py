"""Multi-stage schedules from ``stages:`` (engine/schedule.py, config.expand_stages)."""

from __future__ import annotations

import dataclasses
import sys

import pytest
import torch
import yaml

from pixelgroup.cli import main
from pixelgroup.config import (
    ExperimentConfig,
    expand_stages,
    from_dict,
    load_config,
    resolve_config,
    to_dict,
)
from pixelgroup.engine import load_checkpoint
from pixelgroup.engine.checkpoint import save_checkpoint
from pixelgroup.engine.schedule import stage_dirs, train_schedule
from pixelgroup.errors import CheckpointError, ConfigError
from tests._tiny import tiny_config

STAGES = [
    {"name": "embedding", "overrides": {"loss.num_iters": 0}},
    {"name": "loops", "overrides": {"loss.num_iters": 1, "train.epochs": 2}},
]


def _staged(stages=STAGES) -> ExperimentConfig:
    values = to_dict(tiny_config(train={"epochs": 1, "iters_per_epoch": 1}))
    return from_dict(ExperimentConfig, {**values, "stages": stages})


def _same_weights(a, b, buffers: bool = True) -> bool:
    """The checkpoints' parameters (and BatchNorm buffers) are equal."""
    keys = [k for k in a["model"] if buffers or not ("running_" in k or "batches" in k)]
    return all(torch.equal(a["model"][k], b["model"][k]) for k in keys)


def test_stages_run_in_order_each_from_the_previous_weights(tmp_path):
    cfg = _staged()
    results = train_schedule(cfg, tmp_path, progress=False)
    assert [r.checkpoint for r in results] == [
        tmp_path / "embedding" / "checkpoint.pt",
        tmp_path / "checkpoint.pt",
    ]
    first, last = (load_checkpoint(r.checkpoint) for r in results)
    assert first["config"]["loss"]["num_iters"] == 0 and first["epoch"] == 1
    assert last["config"]["loss"]["num_iters"] == 1 and last["epoch"] == 2
    assert last["config"]["train"]["init_from"] == str(results[0].checkpoint)
    assert last["config"]["stages"] == []  # a stage's checkpoint holds that stage's config
    assert "loss_iter1" in last["history"][0] and "loss_iter1" not in first["history"][0]
    assert stage_dirs(cfg, tmp_path) == [tmp_path / "embedding", tmp_path]
    assert from_dict(ExperimentConfig, yaml.safe_load((tmp_path / "schedule.json").read_text()))


def test_resume_continues_across_stages_exactly(tmp_path, monkeypatch):
    cfg = _staged()
    straight = load_checkpoint(train_schedule(cfg, tmp_path / "a", progress=False)[-1].checkpoint)
    saves = []

    def crash_in_stage_two(state, path):  # killed after stage 2's first epoch
        save_checkpoint(state, path)
        saves.append(path)
        if len(saves) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(
        sys.modules["pixelgroup.engine.train"], "save_checkpoint", crash_in_stage_two
    )
    with pytest.raises(KeyboardInterrupt):
        train_schedule(cfg, tmp_path / "b", progress=False)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["epoch"] == 1
    stage1 = (tmp_path / "b" / "embedding" / "checkpoint.pt").stat().st_mtime_ns
    results = train_schedule(None, tmp_path / "b", resume=True, progress=False)
    assert len(results) == 1  # the finished first stage is not trained again
    assert (tmp_path / "b" / "embedding" / "checkpoint.pt").stat().st_mtime_ns == stage1
    resumed = load_checkpoint(results[0].checkpoint)
    assert resumed["epoch"] == 2 and _same_weights(straight, resumed)
    assert train_schedule(None, tmp_path / "b", resume=True, progress=False) == []


def test_an_existing_stage_is_not_replaced_unasked(tmp_path):
    cfg = _staged()
    train_schedule(cfg, tmp_path, progress=False)
    with pytest.raises(CheckpointError, match=r"embedding already holds a checkpoint"):
        train_schedule(cfg, tmp_path, progress=False)
    assert len(train_schedule(cfg, tmp_path, overwrite=True, progress=False)) == 2


@pytest.mark.parametrize(
    ("stages", "match"),
    [
        ([{"name": "a"}, {"name": "a"}], r"stages\[1\].name 'a' names two stages"),
        ([{"name": ""}], r"stages\[0\].name must be a plain folder name"),
        ([{"name": "x/y"}], r"stages\[0\].name must be a plain folder name"),
        ([{"name": "a", "init_from": "b"}, {"name": "b"}], r"stages\[0\].init_from must name"),
        ([{"name": "a", "overrides": {"optim.nope": 1}}], r"stages\[0\] \(a\): unknown config"),
        ([{"name": "a", "overrides": {"stages": []}}], r"cannot change the stages"),
    ],
)
def test_bad_stages(stages, match):
    with pytest.raises(ConfigError, match=match):
        expand_stages(_staged(stages))


def test_a_later_stage_with_an_unknown_loss_key_stops_before_any_stage_trains(tmp_path):
    """The loss keys belong to the task, which checks every stage's before the first trains."""
    stages = [*STAGES[:1], {"name": "loops", "overrides": {"loss.bce_weight": 0}}]
    with pytest.raises(
        ConfigError,
        match=r"^stages\[1\] \(loops\): unknown config key 'loss.bce_weight'; valid keys here: "
        r"bandwidth, center_weight, iter_weights, ",
    ):
        train_schedule(_staged(stages), tmp_path, progress=False)
    assert not any(tmp_path.iterdir())


def test_init_from_names_an_earlier_stage(tmp_path):
    stages = [*STAGES, {"name": "again", "init_from": "embedding", "overrides": {"optim.lr": 0}}]
    results = train_schedule(_staged(stages), tmp_path, progress=False)
    last = load_checkpoint(results[-1].checkpoint)
    assert last["config"]["train"]["init_from"] == str(tmp_path / "embedding" / "checkpoint.pt")
    # lr 0: stage 1's parameters (BatchNorm statistics still move in training)
    assert _same_weights(load_checkpoint(results[0].checkpoint), last, buffers=False)


@pytest.mark.parametrize("name", ["bsds", "voc_instance", "voc_proposals"])
def test_shipped_paper_recipes_hold_their_second_stage(name):
    stages = expand_stages(load_config(ExperimentConfig, resolve_config(name)))
    assert len(stages) == 2
    (_, first), (_, second) = stages
    assert second.optim.lr == 0.0001 and second.train.epochs == 10
    assert (
        dataclasses.replace(second, optim=first.optim, train=first.train, loss=first.loss) == first
    )


def test_cli_trains_and_resumes_a_staged_config(tmp_path, capsys):
    path = tmp_path / "staged.yaml"
    path.write_text(yaml.safe_dump(to_dict(_staged())))
    run = tmp_path / "run"
    assert main(["train", "--config", str(path), "-o", str(run), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == f"checkpoint: {run / 'checkpoint.pt'}"
    first = load_checkpoint(run / "checkpoint.pt")
    (run / "checkpoint.pt").unlink()  # stage 2 lost: --resume trains it again from stage 1
    assert main(["train", "-o", str(run), "--resume", "--quiet"]) == 0
    assert _same_weights(first, load_checkpoint(run / "checkpoint.pt"))
