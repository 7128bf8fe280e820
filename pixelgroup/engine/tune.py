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
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from pixelgroup._atomic import write_json
from pixelgroup.config import ExperimentConfig
from pixelgroup.engine.checkpoint import load_checkpoint, save_checkpoint
from pixelgroup.engine.evaluate import eval_input_size
from pixelgroup.engine.inference import InferenceRunner
from pixelgroup.errors import ConfigError
from pixelgroup.tasks import get_task

__all__ = [
    "collect_outputs",
    "sweep_grouping",
    "store_grouping",
    "tune_grouping",
    "SweepResult",
    "BANDWIDTH_FACTORS",
    "MIN_AREA_FACTORS",
]

BANDWIDTH_FACTORS = (0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.4, 1.6, 2.0)
"""The default bandwidths: these multiples of the stored ``grouping.bandwidth``."""

MIN_AREA_FACTORS = (0.25, 0.5, 1.0, 2.0)
"""The default ``grouping.min_area`` values: these multiples of the stored one (rounded; the
toy's 16 gives 4, 8, 16, 32, the cells config's 30 gives 8, 15, 30, 60)."""


@dataclass(frozen=True)
class SweepResult:
    """Scores of a grid of grouping settings.

    Attributes:
        metric: the key of the evaluator's output that chose the winner.
        rows: one ``{"bandwidth", "min_area", **metrics}`` dict per setting, in grid order.
        best: the row of the largest ``metric``; on a tie the one nearest the config's own
            setting (a tie is no reason to move: a smaller ``min_area`` that ties on a few val
            images fragments objects elsewhere, docs/real_data.md).
        split: the split whose outputs were scored (``None``: not known).
    """

    metric: str
    rows: list[dict[str, float]]
    best: dict[str, float]
    split: str | None = None

    def report(self) -> str:
        """The sweep as a Markdown table, the winner marked, and a line naming it."""
        lines = [f"| bandwidth | min_area | {self.metric} |", "|---|---|---|"]
        for row in self.rows:
            mark = " (best)" if row is self.best else ""
            value = f"{row[self.metric]:.4f}{mark}"
            lines.append(f"| {row['bandwidth']:g} | {row['min_area']} | {value} |")
        best = f"bandwidth {self.best['bandwidth']:g}, min_area {self.best['min_area']}"
        where = self.split or "these outputs"
        lines.append(f"best on {where}: {best} ({self.metric} {self.best[self.metric]:.4f})")
        return "\n".join(lines)


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
    scale = task.inference_scale(cfg)
    for batch in tqdm(loader, desc=f"tune: model on {split}", disable=not progress):
        images = task.batch_image(batch)
        kept.append((_to_cpu(run(images, input_size=eval_input_size(images, scale))), batch))
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
    top = max(row[metric] for row in rows)
    stored, area = cfg.grouping.bandwidth, cfg.grouping.min_area_pixels()

    def change(row: dict[str, float]) -> float:  # how far a setting moves from the stored one
        moved_area = math.log((row["min_area"] + 1) / (area + 1))
        return abs(math.log(row["bandwidth"] / stored)) + abs(moved_area)

    best = min((row for row in rows if row[metric] == top), key=change)
    return SweepResult(metric=metric, rows=rows, best=best)


def tune_grouping(
    model: nn.Module,
    cfg: ExperimentConfig,
    split: str,
    *,
    bandwidths: Sequence[float] | None = None,
    min_areas: Sequence[int] | None = None,
    metric: str | None = None,
    progress: bool = True,
) -> SweepResult:
    """One model pass over ``split`` (:func:`collect_outputs`), then :func:`sweep_grouping`
    over ``bandwidths`` (default: the stored ``grouping.bandwidth`` times
    :data:`BANDWIDTH_FACTORS`) x ``min_areas`` (default: the stored ``grouping.min_area`` times
    :data:`MIN_AREA_FACTORS`), the stored setting always included, maximising
    ``metric`` (default ``cfg.grouping.tune_metric``)."""
    stored, area = cfg.grouping.bandwidth, cfg.grouping.min_area_pixels()
    chosen = bandwidths or [round(f * stored, 6) for f in BANDWIDTH_FACTORS]
    areas = min_areas or [round(f * area) for f in MIN_AREA_FACTORS]
    outputs = collect_outputs(model, cfg, split, progress=progress)
    result = sweep_grouping(
        cfg,
        outputs,
        sorted({*chosen, stored}),
        sorted({*areas, area}),
        metric or cfg.grouping.tune_metric,
        progress=progress,
    )
    return dataclasses.replace(result, split=split)


def store_grouping(path: str | Path, result: SweepResult) -> None:
    """Write the winning ``grouping.bandwidth`` and ``grouping.min_area`` into the config of
    the checkpoint at ``path`` (atomically, the replaced one kept as ``*.prev.pt``), with the
    sweep under the checkpoint's ``"tune"`` key; a ``config.json`` beside it is rewritten to
    match."""
    state = load_checkpoint(path)
    grouping = dict(state["config"].get("grouping", {}))
    grouping["bandwidth"] = result.best["bandwidth"]
    grouping["min_area"] = int(result.best["min_area"])
    state["config"] = {**state["config"], "grouping": grouping}
    state["tune"] = {"metric": result.metric, "split": result.split, "rows": result.rows}
    save_checkpoint(state, path)
    beside = Path(path).with_name("config.json")
    if beside.is_file():
        write_json(state["config"], beside)
