"""Choose the grouping settings on a validation split: one model pass, every setting scored.

:func:`collect_outputs` runs the model once over a split and keeps its outputs with their
batches; :func:`sweep_grouping` scores every ``(bandwidth, min_area)`` of a grid on them with
the task's own evaluator (which groups each embedding as ``cfg.grouping`` says) and picks the
setting with the largest value of one metric; :func:`store_grouping` writes the winner into a
checkpoint's config, so that ``pixelgroup eval`` and ``predict`` use it.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from pixelgroup.config import ExperimentConfig
from pixelgroup.engine.checkpoint import load_checkpoint, save_checkpoint
from pixelgroup.engine.inference import InferenceRunner
from pixelgroup.errors import ConfigError
from pixelgroup.tasks import get_task

__all__ = ["collect_outputs", "sweep_grouping", "store_grouping", "SweepResult"]


@dataclass(frozen=True)
class SweepResult:
    """Scores of a grid of grouping settings.

    Attributes:
        metric: the key of the evaluator's output that chose the winner.
        rows: one ``{"bandwidth", "min_area", **metrics}`` dict per setting, in grid order.
        best: the row of the largest ``metric`` (the first such row on a tie).
    """

    metric: str
    rows: list[dict[str, float]]
    best: dict[str, float]


def collect_outputs(
    model: nn.Module, cfg: ExperimentConfig, split: str, *, progress: bool = True
) -> list[tuple[Any, Any]]:
    """``(output, batch)`` of every batch of ``split``: the model runs once, through
    :class:`~pixelgroup.engine.inference.InferenceRunner` (eval mode, ``cfg.model.test_bn``),
    outputs kept on the CPU. Memory: every output of the split (e.g. 200 toy images of a
    ``(3, 64, 64)`` embedding: 10 MB)."""
    task = get_task(cfg.task)
    run = InferenceRunner.from_config(model, cfg)
    loader = DataLoader(
        task.build_dataset(cfg, split),
        batch_size=cfg.data.batch_size,
        collate_fn=task.collate,
        num_workers=cfg.data.num_workers,
    )
    kept = []
    for batch in tqdm(loader, desc=f"tune: model on {split}", disable=not progress):
        kept.append((_to_cpu(run(task.batch_image(batch))), batch))
    return kept


def _to_cpu(output: Any) -> Any:
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        return dataclasses.replace(
            output,
            **{
                f.name: getattr(output, f.name).cpu()
                for f in dataclasses.fields(output)
                if isinstance(getattr(output, f.name), torch.Tensor)
            },
        )
    return output.cpu() if isinstance(output, torch.Tensor) else output


def sweep_grouping(
    cfg: ExperimentConfig,
    outputs: Sequence[tuple[Any, Any]],
    bandwidths: Sequence[float],
    min_areas: Sequence[int],
    metric: str,
    *,
    progress: bool = True,
) -> SweepResult:
    """Score every ``(bandwidth, min_area)`` of the grid on ``outputs`` (from
    :func:`collect_outputs`) with ``cfg``'s task evaluator; the rest of ``cfg.grouping`` is
    kept. Raises :class:`ConfigError` when the evaluator reports no ``metric`` (naming those it
    reports) or the grid is empty. Cost: one grouping of every image per setting."""
    if not bandwidths or not min_areas:
        raise ConfigError("the sweep needs at least one bandwidth and one min_area")
    task = get_task(cfg.task)
    grid = list(itertools.product(bandwidths, min_areas))
    rows: list[dict[str, float]] = []
    for bandwidth, min_area in tqdm(grid, desc="tune: settings", disable=not progress):
        grouping = dataclasses.replace(cfg.grouping, bandwidth=bandwidth, min_area=min_area)
        evaluator = task.build_evaluator(dataclasses.replace(cfg, grouping=grouping))
        evaluator.reset()
        for output, batch in outputs:
            evaluator.process(output, batch)
        metrics = evaluator.evaluate()
        if metric not in metrics:
            raise ConfigError(
                f"the {cfg.task} evaluator reports no metric {metric!r}; "
                f"choose one of {', '.join(metrics)}"
            )
        rows.append({"bandwidth": float(bandwidth), "min_area": int(min_area), **metrics})
    best = max(rows, key=lambda row: row[metric])  # max keeps the first of equal rows
    return SweepResult(metric=metric, rows=rows, best=best)


def store_grouping(path: str | Path, result: SweepResult, split: str) -> None:
    """Write the winning ``grouping.bandwidth`` and ``grouping.min_area`` into the config of
    the checkpoint at ``path`` (atomically, the replaced one kept as ``*.prev.pt``), with the
    sweep under the checkpoint's ``"tune"`` key."""
    state = load_checkpoint(path)
    grouping = dict(state["config"].get("grouping", {}))
    grouping["bandwidth"] = result.best["bandwidth"]
    grouping["min_area"] = int(result.best["min_area"])
    state["config"] = {**state["config"], "grouping": grouping}
    state["tune"] = {"metric": result.metric, "split": split, "rows": result.rows}
    save_checkpoint(state, path)
