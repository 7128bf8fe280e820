"""Multi-stage schedules: the ``stages:`` of a config trained in order, resumable across them.

Stage k of ``cfg.stages`` trains ``cfg`` with the stage's overrides
(:func:`pixelgroup.config.expand_stages`) from the final weights of the stage before (or of the
one its ``init_from`` names). The last stage writes into the run folder itself, so its
``checkpoint.pt`` is the schedule's model; each earlier stage writes into a sub-folder named
after it. ``schedule.json`` in the run folder holds the whole config, stages included, so
``resume`` needs no config: finished stages are skipped, an interrupted one continues exactly,
the next ones start.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from pixelgroup._atomic import write_json
from pixelgroup.config import ExperimentConfig, expand_stages, from_dict, to_dict
from pixelgroup.engine.checkpoint import load_checkpoint
from pixelgroup.engine.train import CHECKPOINT_NAME, TrainResult, train
from pixelgroup.errors import CheckpointError, ConfigError
from pixelgroup.tasks import get_task
from pixelgroup.tasks.base import task_loss_options

__all__ = ["train_schedule", "stage_dirs", "read_schedule", "SCHEDULE_NAME"]

SCHEDULE_NAME = "schedule.json"
"""The file in a run folder that holds a staged config (``to_dict`` of it)."""


def stage_dirs(cfg: ExperimentConfig, run_dir: str | Path) -> list[Path]:
    """The folder of each stage of ``cfg`` (see the module docstring): ``run_dir/<name>`` for
    every stage but the last, ``run_dir`` for the last (and for a config without stages)."""
    run_dir = Path(run_dir)
    names = [stage.name for stage, _ in expand_stages(cfg)]
    return [run_dir / name for name in names[:-1]] + [run_dir]


def _finished(checkpoint: Path, cfg: ExperimentConfig) -> bool:
    state = load_checkpoint(checkpoint)
    return int(state["epoch"]) >= cfg.train.epochs and int(state.get("step", 0)) == 0


def train_schedule(
    cfg: ExperimentConfig | None,
    run_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> list[TrainResult]:
    """Train every stage of ``cfg`` into ``run_dir``; returns one result per stage trained
    now (the last is the schedule's model). A config without stages is :func:`train` itself.

    With ``resume``, ``cfg`` may be None (read from ``run_dir/schedule.json``, or the
    checkpoint of a run without stages). Without it, a stage folder that already holds a
    checkpoint is an error unless ``overwrite``, checked before anything trains.
    """
    run_dir = Path(run_dir)
    if cfg is None and resume:
        cfg = read_schedule(run_dir)
    if cfg is None or not cfg.stages:
        return [train(cfg, run_dir, resume=resume, overwrite=overwrite, progress=progress)]
    stages = expand_stages(cfg)
    for k, (stage, stage_cfg) in enumerate(stages):  # every stage's task keys, before any trains
        try:
            task_loss_options(get_task(stage_cfg.task), stage_cfg)
        except ConfigError as e:
            raise ConfigError(f"stages[{k}] ({stage.name}): {e}") from None
    dirs = stage_dirs(cfg, run_dir)
    if not resume and not overwrite:
        for d in dirs:
            if (d / CHECKPOINT_NAME).is_file():
                raise CheckpointError(
                    f"{d} already holds a checkpoint of this schedule; continue it with "
                    f"--resume, or replace it with --overwrite (or pick another -o)"
                )
    write_json(to_dict(cfg), run_dir / SCHEDULE_NAME)
    results = []
    done: dict[str, Path] = {}
    for k, ((stage, stage_cfg), d) in enumerate(zip(stages, dirs, strict=True)):
        source = stage.init_from or (stages[k - 1][0].name if k else None)
        if source is not None:
            init = str(done[source])
            stage_cfg = dataclasses.replace(
                stage_cfg, train=dataclasses.replace(stage_cfg.train, init_from=init)
            )
        checkpoint = d / CHECKPOINT_NAME
        done[stage.name] = checkpoint
        again = resume and checkpoint.is_file()
        if again and _finished(checkpoint, stage_cfg):
            continue
        results.append(
            train(stage_cfg, d, resume=again, overwrite=overwrite and not again, progress=progress)
        )
    return results


def read_schedule(run_dir: str | Path) -> ExperimentConfig | None:
    """The staged config of a run folder (its ``schedule.json``), or None if it has none."""
    path = Path(run_dir) / SCHEDULE_NAME
    return from_dict(ExperimentConfig, _read_json(path)) if path.is_file() else None


def _read_json(path: Path) -> dict:
    try:
        values = json.loads(path.read_text())
    except ValueError as e:
        raise ConfigError(f"{path} is not a schedule (JSON): {e}") from None
    return values
