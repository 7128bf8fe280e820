"""Ablation: does the auxiliary grouping loss help toy semantic segmentation?

Trains ``configs/toy_semantic.yaml`` (the ``semantic`` task) with ``loss.aux_weight`` 0 (plain
cross-entropy) and each weight in ``--weights`` over ``--seeds`` (same data; the seed drives
model init, batch order and pixel sampling), evaluates every run on the toy test split and
reports mean ± std (sample std, n - 1) of mIoU, pixel accuracy and boundary F per weight.

    .venv/bin/python experiments/semantic_ablation.py --seeds 0 1 2 --weights 0 1 --figures

A run is exactly ``pixelgroup train`` of the config with ``--set seed=S --set
loss.aux_weight=W``. A run folder
whose ``run.json`` holds the same config is reused, not retrained (training is deterministic on
the CPU), so seeds can be added later. Writes ``results.json`` (every run's metrics, final
training losses and time, the summary with per-seed paired differences) and
``<out name>.png`` into ``--out``; ``--figures`` copies the PNG to ``docs/figures/semantic/``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from pixelgroup._atomic import atomic_path
from pixelgroup.config import ExperimentConfig, load_config, to_dict
from pixelgroup.engine import evaluate, load_model, train
from pixelgroup.engine.train import write_json
from pixelgroup.tasks import get_task
from pixelgroup.tasks.base import task_loss_options
from pixelgroup.viz.figures import save_figure

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("mIoU", "pixel_acc", "boundary_F")
TAIL = 50  # final training losses are averaged over the last TAIL iterations


def _run(cfg: ExperimentConfig, run_dir: Path) -> dict[str, Any]:
    """Train and evaluate ``cfg`` in ``run_dir``, or reuse ``run_dir/run.json`` written by an
    earlier call with the same config (training is deterministic on the CPU)."""
    record = run_dir / "run.json"
    if record.is_file():
        stored = json.loads(record.read_text())
        if stored["config"] == to_dict(cfg):
            return {**stored["run"], "reused": True}
    t0 = time.perf_counter()
    history = train(cfg, run_dir, progress=False).history
    seconds = time.perf_counter() - t0
    model, cfg, _ = load_model(run_dir / "checkpoint.pt")
    metrics = evaluate(model, cfg, progress=False)
    tail = history[-TAIL:]
    run = {
        "aux_weight": task_loss_options(get_task(cfg.task), cfg).aux_weight,
        "seed": cfg.seed,
        "metrics": metrics,
        "train_seconds": seconds,
        "final_ce": float(np.mean([h["ce"] for h in tail])),
        "final_pair": float(np.mean([h["pair"] for h in tail])) if "pair" in tail[0] else None,
        "ce_curve": [h["ce"] for h in history],
    }
    write_json({"config": to_dict(cfg), "run": run}, record)
    return {**run, "reused": False}


def _summary(runs: list[dict[str, Any]], weights: list[float]) -> dict[str, dict[str, Any]]:
    out = {}
    for w in weights:
        rows = [r for r in runs if r["aux_weight"] == w]
        entry: dict[str, Any] = {"n": len(rows)}
        for m in METRICS:
            values = np.array([r["metrics"][m] for r in rows])
            entry[m] = {
                "mean": float(values.mean()),
                "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                "values": values.tolist(),
            }
        base = {r["seed"]: r for r in runs if r["aux_weight"] == weights[0]}
        pairs = [(r, base[r["seed"]]) for r in rows if r["seed"] in base]
        if w != weights[0] and pairs:
            for m in METRICS:
                diff = np.array([r["metrics"][m] - b["metrics"][m] for r, b in pairs])
                entry[m]["paired_diff_vs_" + f"{weights[0]:g}"] = {
                    "mean": float(diff.mean()),
                    "std": float(diff.std(ddof=1)) if len(diff) > 1 else 0.0,
                    "wins": int((diff > 0).sum()),
                }
        out[str(w)] = entry
    return out


def _plot(runs: list[dict[str, Any]], weights: list[float], path: Path, title: str) -> None:
    """One panel per metric: each seed as a dot, mean ± std as a bar; and the CE curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS) + 1, figsize=(4.0 * (len(METRICS) + 1), 3.4))
    colors = plt.get_cmap("tab10")
    for ax, m in zip(axes, METRICS, strict=False):
        for i, w in enumerate(weights):
            values = np.array([r["metrics"][m] for r in runs if r["aux_weight"] == w])
            std = values.std(ddof=1) if len(values) > 1 else 0.0
            ax.errorbar(i, values.mean(), yerr=std, fmt="s", color=colors(i), capsize=6, ms=8)
            ax.scatter(np.full(len(values), i) + 0.12, values, color=colors(i), s=14, alpha=0.7)
        for seed in sorted({r["seed"] for r in runs}):  # one grey line per seed (paired runs)
            xs, ys = zip(
                *[
                    (i + 0.12, r["metrics"][m])
                    for i, w in enumerate(weights)
                    for r in runs
                    if r["aux_weight"] == w and r["seed"] == seed
                ],
                strict=True,
            )
            ax.plot(xs, ys, color="0.6", lw=0.6, zorder=0)
        ax.set_xticks(range(len(weights)), [f"aux {w:g}" for w in weights])
        ax.set_xlim(-0.5, len(weights) - 0.5)
        ax.set_title(f"test {m}: mean ± std; dots, lines = seeds", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    ax = axes[-1]
    for i, w in enumerate(weights):
        for k, r in enumerate(run for run in runs if run["aux_weight"] == w):
            ce = np.array(r["ce_curve"])
            width = min(TAIL, len(ce))
            smooth = np.convolve(ce, np.ones(width) / width, mode="valid")
            label = f"aux {w:g}" if k == 0 else None
            ax.plot(np.arange(width, len(ce) + 1), smooth, color=colors(i), lw=1, label=label)
    ax.set_xlabel("iteration")
    ax.set_ylabel(f"training CE (mean of {TAIL})")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="example:\n  .venv/bin/python experiments/semantic_ablation.py --seeds 0 1 2 "
        "--weights 0 1 --figures",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=ROOT / "configs" / "toy_semantic.yaml",
        help="experiment YAML (default: configs/toy_semantic.yaml)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="model seeds")
    parser.add_argument(
        "--weights", type=float, nargs="+", default=[0.0, 1.0], help="loss.aux_weight values"
    )
    parser.add_argument("--set", action="append", default=[], help="extra config overrides")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: busy CPU)")
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "runs" / "semantic_ablation",
        help="run folders, results.json and <out name>.png (default: runs/semantic_ablation)",
    )
    parser.add_argument("--figures", action="store_true", help="copy the PNG to docs/figures")
    args = parser.parse_args(argv)
    if any(w < 0 for w in args.weights):
        parser.error(f"--weights must be >= 0, got {args.weights}")
    torch.set_num_threads(args.threads)
    runs = []
    grid = [(w, s) for w in args.weights for s in args.seeds]
    for w, seed in tqdm(grid, desc="runs"):
        cfg = load_config(
            ExperimentConfig,
            args.config,
            [*args.set, f"seed={seed}", f"loss.aux_weight={w}"],
        )
        run = _run(cfg, args.out / f"aux{w:g}_seed{seed}")
        runs.append(run)
        tqdm.write(
            f"aux {w:g} seed {seed}: "
            + ", ".join(f"{m} {run['metrics'][m]:.4f}" for m in METRICS)
            + f" ({run['train_seconds']:.0f} s){' (reused)' if run['reused'] else ''}"
        )
    summary = _summary(runs, args.weights)
    for w, entry in summary.items():
        print(
            f"aux_weight {w}: "
            + ", ".join(f"{m} {entry[m]['mean']:.4f} ± {entry[m]['std']:.4f}" for m in METRICS)
            + f"  (n = {entry['n']})"
        )
        for m in METRICS:
            for key, d in entry[m].items():
                if key.startswith("paired_diff"):
                    print(
                        f"  {m} {key}: {d['mean']:+.4f} ± {d['std']:.4f} "
                        f"(higher in {d['wins']} of {entry['n']} seeds)"
                    )
    write_json(
        {"config": str(args.config), "set": args.set, "runs": runs, "summary": summary},
        args.out / "results.json",
    )
    png = args.out / f"{args.out.name}.png"
    title = (
        f"{args.config.name}, pair loss on "
        f"{task_loss_options(get_task(cfg.task), cfg).aux_labels} labels, "
        f"{len(args.seeds)} seeds x "
        + (
            f"{cfg.train.epochs * cfg.train.iters_per_epoch} iters"
            if cfg.train.iters_per_epoch
            else f"{cfg.train.epochs} epochs"
        )
    )
    _plot(runs, args.weights, png, title)
    if args.figures:
        dest = ROOT / "docs" / "figures" / "semantic"
        dest.mkdir(parents=True, exist_ok=True)
        with atomic_path(dest / png.name) as tmp:
            shutil.copy(png, tmp)
    print(f"results: {args.out / 'results.json'}\nplot: {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
