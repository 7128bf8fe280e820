"""Seconds per training iteration of the toy recipe (``make demo``), split into its parts.

Times ``--steps`` iterations (after ``--warmup``) of ``configs/toy.yaml`` with ``--set``
overrides: the network's forward, the loss, the backward pass and the optimiser step, on one
fixed batch from the toy dataset. Each variant (``--variant "NAME=override;override"``) is
timed in turn, interleaved over ``--rounds`` rounds (best round reported), so the ratios are
side by side on the same machine state. ``--busy K`` keeps K other processes spinning on the
CPU meanwhile (a machine that is not quiet). Prints a Markdown table with the CPU model and kind.

    .venv/bin/python benchmarks/toy_train_step.py --threads 1 --steps 5 \\
        --variant today= --variant narrow="model.options.width=24;model.options.num_blocks=4"
"""

from __future__ import annotations

import argparse
import multiprocessing
import time

import torch

from pixelgroup.analysis.benchmark import cpu_description
from pixelgroup.config import ExperimentConfig, load_config, resolve_config
from pixelgroup.engine.checkpoint import build_model_seeded
from pixelgroup.errors import PixelgroupError
from pixelgroup.tasks import get_task


def _build(overrides: list[str]):
    cfg = load_config(ExperimentConfig, resolve_config("toy"), overrides)
    task = get_task(cfg.task)
    dataset = task.build_dataset(cfg, "train")
    batch = task.collate([dataset[i] for i in range(cfg.data.batch_size)])
    model = build_model_seeded(cfg)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    return cfg, task.build_loss(cfg), batch, model, optimizer


def _step(parts, times: dict[str, float]) -> None:
    cfg, loss_fn, batch, model, optimizer = parts
    generator = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    output = model(batch.image)
    t1 = time.perf_counter()
    loss = loss_fn(output, batch, generator)["loss"]
    t2 = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    t3 = time.perf_counter()
    optimizer.step()
    t4 = time.perf_counter()
    parts_dt = {"net": t1 - t0, "loss": t2 - t1, "backward": t3 - t2, "step": t4 - t3}
    for key, dt in parts_dt.items():
        times[key] = times.get(key, 0.0) + dt


def _spin() -> None:
    while True:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=OVERRIDES")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--busy", type=int, default=0, help="competing busy processes")
    args = parser.parse_args()
    competitors = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.busy)]
    for process in competitors:
        process.start()
    torch.set_num_threads(args.threads)
    variants = {}
    for spec in args.variant or ["today="]:
        name, _, overrides = spec.partition("=")
        try:
            variants[name] = _build([o for o in overrides.split(";") if o])
        except PixelgroupError as error:  # a misspelt override: one line, exit 2
            parser.error(f"--variant {spec!r}: {error} (separate overrides with ';')")
    for parts in variants.values():
        for _ in range(args.warmup):
            _step(parts, {})
    best: dict[str, dict[str, float]] = {}
    for _ in range(args.rounds):
        for name, parts in variants.items():
            times: dict[str, float] = {}
            for _ in range(args.steps):
                _step(parts, times)
            times = {k: v / args.steps for k, v in times.items()}
            times["total"] = sum(times.values())
            if name not in best or times["total"] < best[name]["total"]:
                best[name] = times
    for process in competitors:
        process.terminate()
    print(
        f"{cpu_description()}, {args.threads} thread(s), {args.busy} competing process(es), "
        f"best of {args.rounds} rounds\n"
    )
    base = next(iter(best.values()))["total"]
    print("| variant | net fwd | loss fwd | backward | step | s / iteration | vs first |")
    print("|---|---|---|---|---|---|---|")
    for name, t in best.items():
        cols = " | ".join(f"{t[k]:.3f}" for k in ("net", "loss", "backward", "step", "total"))
        print(f"| {name} | {cols} | {t['total'] / base:.2f} |")


if __name__ == "__main__":
    main()
