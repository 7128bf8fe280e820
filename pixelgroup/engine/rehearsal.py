"""Dress rehearsal of a paper recipe on synthetic data of the real dataset's layout and size.

Before renting a GPU a user asks: will this recipe run, how fast, in how much memory?
:func:`rehearse` answers on data written by :mod:`pixelgroup.data.synthetic` in the exact
on-disk layout of BSDS500, VOC 2012 or SBD. It runs the recipe **unchanged except for**
``data.root``, ``device`` and the number of iterations (``train.epochs`` 1 and
``train.iters_per_epoch``; with ``size="tiny"`` also the small data sizes its task asks for,
never a model or loss setting), every stage of its schedule (the config's ``stages:``; a later
stage starts from the previous one's checkpoint through ``train.init_from``). What data a
config can be rehearsed on, and its evaluator, come from its task (``Task.rehearsal``,
:mod:`pixelgroup.tasks.rehearsal`); this module names no task and no dataset.

1. train each stage ``iters`` iterations, then resume the last one for ``iters`` more
   (``train.epochs`` 1 -> 2, the resume path a crashed or extended run takes);
2. load the final checkpoint, evaluate it on the recipe's eval split (the task's metrics);
3. predict every image of that split (the task's prediction files);
4. run the task's dataset-level evaluation on those files (the library function behind e.g.
   ``pixelgroup eval-boundaries``; ``evaluate_files=False`` skips this step);
5. check that every file written (checkpoints, metrics, predictions, evaluator output) exists
   and parses.

It reports per recipe: seconds per training iteration (the median time between two optimiser
steps), seconds per evaluated and per predicted image, the peak memory of training and of
evaluation (CPU: the process's peak resident set size, ``VmHWM`` of ``/proc/self/status``
reset through ``/proc/self/clear_refs`` before each phase, so DataLoader workers are not
counted; CUDA: ``torch.cuda.max_memory_allocated``; both by
:class:`~pixelgroup.analysis.benchmark.PeakMemory`), and the output check. Timing includes
the synthetic images' loading and augmentation, as a real run's does.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.optim.optimizer as optim_hooks
from PIL import Image

from pixelgroup._atomic import write_json
from pixelgroup._native import cpu_info
from pixelgroup.analysis.benchmark import PeakMemory
from pixelgroup.config import (
    ExperimentConfig,
    StageConfig,
    expand_stages,
    load_config,
    override_config,
    resolve_config,
)
from pixelgroup.data.synthetic import LAYOUTS, write_layouts
from pixelgroup.engine.checkpoint import load_model
from pixelgroup.engine.evaluate import evaluate
from pixelgroup.engine.predict import predict_files
from pixelgroup.engine.train import CHECKPOINT_NAME, train
from pixelgroup.errors import ConfigError
from pixelgroup.tasks import Task, get_task
from pixelgroup.tasks.rehearsal import DatasetEvaluation, RehearsalPlan, release_images

__all__ = ["RecipeReport", "rehearse", "rehearse_recipe", "format_reports"]


@dataclass
class RecipeReport:
    """What :func:`rehearse_recipe` measured (see the module docstring); times in seconds,
    memory in MiB (``None`` where not measured)."""

    recipe: str
    config: str
    device: str
    stages: int
    iterations: list[int] = field(default_factory=list)
    sec_per_iter: list[float | None] = field(default_factory=list)
    train_seconds: list[float] = field(default_factory=list)
    eval_images: int = 0
    sec_per_eval_image: float | None = None
    sec_per_predict_image: float | None = None
    evaluator_seconds: float | None = None
    train_peak_rss_mib: float | None = None
    eval_peak_rss_mib: float | None = None
    train_peak_cuda_mib: float | None = None
    eval_peak_cuda_mib: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    evaluator_metrics: dict[str, Any] = field(default_factory=dict)
    files_checked: int = 0
    problems: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every step ran and every output file exists and parses."""
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        out = dict(vars(self))
        out["ok"] = self.ok
        return out


@contextmanager
def _step_times() -> Iterator[list[float]]:
    """The time of every optimiser step taken inside the block (a global step hook)."""
    times: list[float] = []
    handle = optim_hooks.register_optimizer_step_post_hook(
        lambda *_: times.append(time.perf_counter())
    )
    try:
        yield times
    finally:
        handle.remove()


def _sec_per_iter(times: list[float]) -> float | None:
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    return statistics.median(gaps) if gaps else None


def _check_file(path: Path) -> str | None:
    """None when ``path`` exists and parses as its suffix says (JSON, PNG; a checkpoint is
    parsed by the step that reads it next), else the problem."""
    if not path.is_file():
        return f"{path}: missing"
    try:
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".png":
            with Image.open(path) as im:
                im.load()
    except Exception as e:  # any parse failure is a finding of the rehearsal
        return f"{path}: does not parse ({type(e).__name__}: {e})"
    return None


def _plan(task: Task, cfg: ExperimentConfig, name: str, size: str) -> RehearsalPlan:
    plan = task.rehearsal(cfg, size)
    if plan is None:
        raise ConfigError(
            f"rehearse writes BSDS500, VOC 2012 and SBD layouts; config {name!r} reads "
            f"data.name {cfg.data.name!r} (task {cfg.task!r})"
        )
    return plan


def rehearse_recipe(
    config: str | Path,
    roots: dict[str, Path],
    out_dir: str | Path,
    *,
    size: str = "tiny",
    iters: int = 2,
    device: str = "cpu",
    evaluate_files: bool = True,
    keep_checkpoints: bool = True,
    progress: bool = False,
) -> RecipeReport:
    """Rehearse one recipe (a shipped config name or a YAML path) on the synthetic releases
    ``roots`` (from :func:`~pixelgroup.data.synthetic.write_layouts`); files go to
    ``out_dir``. See the module docstring; returns its :class:`RecipeReport`.
    ``keep_checkpoints=False`` deletes the checkpoints once checked (they are large)."""
    if iters < 1:
        raise ConfigError(f"the rehearsal needs iters >= 1, got {iters}")
    path = resolve_config(config)
    base = load_config(ExperimentConfig, path)
    task = get_task(base.task)
    plan = _plan(task, base, path.stem, size)
    overrides = [*plan.overrides, f"data.root={roots[plan.release]}", f"device={device}",
                 "train.epochs=1", f"train.iters_per_epoch={iters}"]  # fmt: skip
    stages = expand_stages(base, overrides)
    report = RecipeReport(path.stem, str(path), device, len(stages))
    out = Path(out_dir)
    with PeakMemory(device, interval=None) as memory:
        checkpoint = _train_stages(stages, path, out, report, progress, keep_checkpoints)
    report.train_peak_rss_mib, report.train_peak_cuda_mib = memory.rss_mib, memory.cuda_mib

    with PeakMemory(device, interval=None) as memory:
        model, cfg, _ = load_model(checkpoint, device=torch.device(device))
        images = release_images(plan.release, roots[plan.release], cfg.data.eval_split)
        start = time.perf_counter()
        report.metrics = evaluate(model, cfg, progress=progress)
        report.eval_images = len(images)
        report.sec_per_eval_image = (time.perf_counter() - start) / max(1, len(images))
        pred = out / "pred"
        start = time.perf_counter()
        written = predict_files(model, cfg, images, pred, progress=progress).paths
        report.sec_per_predict_image = (time.perf_counter() - start) / max(1, len(images))
        del model
    report.eval_peak_rss_mib, report.eval_peak_cuda_mib = memory.rss_mib, memory.cuda_mib
    write_json(report.metrics, out / "metrics.json")
    written.append(out / "metrics.json")
    if plan.evaluator is not None and evaluate_files:
        evaluation = plan.evaluator(cfg, pred, progress)
        written.append(_run_evaluator(evaluation, out / "evaluator.json", report))
    for path in written:
        problem = _check_file(path)
        report.files_checked += 1
        if problem:
            report.problems.append(problem)
    if not keep_checkpoints:
        _remove_checkpoints(checkpoint)
    return report


def _train_stages(
    stages: list[tuple[StageConfig, ExperimentConfig]],
    config: Path,
    out: Path,
    report: RecipeReport,
    progress: bool,
    keep_checkpoints: bool,
) -> Path:
    """Train each stage (from the previous one's checkpoint, or the one its ``init_from``
    names) into ``out/stage<k>``, the last one resumed once for as many iterations more;
    returns the last checkpoint."""
    done: dict[str, Path] = {}
    checkpoint = None
    for k, (stage, cfg) in enumerate(stages):
        run_dir = out / f"stage{k + 1}"
        source = stage.init_from or (stages[k - 1][0].name if k else None)
        if source is not None:
            cfg = override_config(cfg, [f"train.init_from={done[source]}"])
        report.commands.append(_command(config, stage.name, run_dir, resume=False))
        passes = [(cfg, False)]
        if k == len(stages) - 1:  # the resume path of the last stage
            passes.append((override_config(cfg, ["train.epochs=2"]), True))
        times: list[float] = []
        start = time.perf_counter()
        for run_cfg, resume in passes:
            if resume:
                report.commands.append(_command(None, None, run_dir, resume=True))
            with _step_times() as step_times:
                train(run_cfg, run_dir, resume=resume, overwrite=not resume, progress=progress)
            times.append(_sec_per_iter(step_times) or 0.0)
        report.train_seconds.append(time.perf_counter() - start)
        iters = cfg.train.iters_per_epoch or 1
        report.iterations.append(iters * len(passes))
        measured = [t for t in times if t > 0]
        report.sec_per_iter.append(
            statistics.median(measured) if measured else report.train_seconds[-1] / iters
        )
        previous, checkpoint = checkpoint, run_dir / CHECKPOINT_NAME
        done[stage.name] = checkpoint
        problem = _check_file(checkpoint)
        report.files_checked += 1
        if problem:
            report.problems.append(problem)
        if previous is not None and not keep_checkpoints and k == len(stages) - 1:
            for earlier in set(done.values()) - {checkpoint}:
                _remove_checkpoints(earlier)
    assert checkpoint is not None
    return checkpoint


def _run_evaluator(evaluation: DatasetEvaluation, result: Path, report: RecipeReport) -> Path:
    """Run the dataset-level evaluation, write its scores to ``result``, record its time and
    numeric scores (or the exception it raised) in ``report``; returns ``result``."""
    report.commands.append(f"{evaluation.command} --output {result}")
    start = time.perf_counter()
    try:
        scores = evaluation.run()
    except Exception as e:  # a bug in the evaluator is a finding, not the end of the run
        report.problems.append(f"{evaluation.command.split()[1]} raised {type(e).__name__}: {e}")
        scores = None
    report.evaluator_seconds = time.perf_counter() - start
    if scores is not None:
        write_json(scores, result)
        report.evaluator_metrics = {k: v for k, v in scores.items() if isinstance(v, (int, float))}
    return result


def _remove_checkpoints(checkpoint: Path) -> None:
    for p in checkpoint.parent.glob("checkpoint*.pt"):
        p.unlink(missing_ok=True)


def _command(config: Path | None, stage: str | None, run_dir: Path, resume: bool) -> str:
    """The training a step stands for, as a line of the report."""
    if resume:
        return f"pixelgroup train -o {run_dir} --resume --set train.epochs=2"
    return f"pixelgroup train --config {config} -o {run_dir}" + (
        f"  # stage {stage}" if stage else ""
    )


def rehearse(
    configs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    size: str = "tiny",
    iters: int = 2,
    device: str = "cpu",
    evaluate_files: bool = True,
    keep_checkpoints: bool = True,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write the synthetic releases at ``size`` into ``out_dir/data``, rehearse each config
    into ``out_dir/<name>``, and write ``out_dir/summary.json``; returns that summary
    (``{"size", "device", "iters", "machine", "recipes": {name: RecipeReport.as_dict()}}``).
    A step that fails (an exception) is recorded in that
    recipe's ``problems`` and the next recipe runs; a config that cannot be rehearsed is a
    :class:`ConfigError`. ``log`` (e.g. ``print``) is told when each recipe starts."""
    if size not in LAYOUTS:
        raise ConfigError(f"size must be one of {', '.join(LAYOUTS)}, got {size!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device cuda requested but torch.cuda.is_available() is False")
    out = Path(out_dir)
    roots = write_layouts(out / "data", size)
    summary: dict[str, Any] = {
        "size": size,
        "device": device,
        "iters": iters,
        "machine": machine_description(device),
        "recipes": {},
    }
    for config in configs:
        name = resolve_config(config).stem
        if log is not None:
            log(f"rehearsing {name} ({size}, {iters} iterations a stage, {device})")
        try:
            report = rehearse_recipe(
                config,
                roots,
                out / name,
                size=size,
                iters=iters,
                device=device,
                evaluate_files=evaluate_files,
                keep_checkpoints=keep_checkpoints,
                progress=progress,
            )
        except ConfigError:
            raise  # the recipe cannot be rehearsed at all: the user's to fix
        except Exception as e:  # a step failed: report it and rehearse the next recipe
            report = RecipeReport(name, str(resolve_config(config)), device, 0)
            where = traceback.extract_tb(e.__traceback__)[-1]
            report.problems.append(
                f"stopped by {type(e).__name__}: {e} ({where.filename}:{where.lineno})"
            )
        summary["recipes"][name] = report.as_dict()
        write_json(summary, out / "summary.json")
    write_json(summary, out / "summary.json")
    return summary


def machine_description(device: str) -> dict[str, Any]:
    """CPU model, AVX-512, threads, torch version and (for CUDA) the GPU name."""
    model, flags = cpu_info()
    cpu = platform.processor() or platform.machine()
    if model and cpu in ("", platform.machine()):
        cpu = model
    out: dict[str, Any] = {
        "cpu": cpu,
        "avx512f": " avx512f" in flags,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name()
    return out


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_reports(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table (one row per recipe)."""
    cuda = summary["device"].startswith("cuda")
    mem = "CUDA peak MiB train / eval" if cuda else "peak RSS MiB train / eval"
    lines = [
        f"| recipe | stages | s / iteration (per stage) | s / eval image | s / predicted image "
        f"| {mem} | outputs |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in summary["recipes"].items():
        if cuda:
            peaks = f"{_fmt(r['train_peak_cuda_mib'], 0)} / {_fmt(r['eval_peak_cuda_mib'], 0)}"
        else:
            peaks = f"{_fmt(r['train_peak_rss_mib'], 0)} / {_fmt(r['eval_peak_rss_mib'], 0)}"
        per_iter = " / ".join(_fmt(s) for s in r["sec_per_iter"])
        status = f"{r['files_checked']} ok" if r["ok"] else "; ".join(r["problems"])
        lines.append(
            f"| {name} | {r['stages']} | {per_iter} | {_fmt(r['sec_per_eval_image'])} | "
            f"{_fmt(r['sec_per_predict_image'])} | {peaks} | {status} |"
        )
    return "\n".join(lines)
