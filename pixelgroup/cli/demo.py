"""``pixelgroup demo``: the toy tutorial end to end (train, evaluate, figures)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pixelgroup.cli import UserError, add_overrides_argument, add_threads_argument, set_threads

EPILOG = """examples:
  pixelgroup demo                                   # the shipped toy config into runs/demo/
  pixelgroup demo --set train.epochs=1 -o runs/quick
  pixelgroup demo --skip-train                      # re-evaluate and redraw runs/demo
  pixelgroup demo --skip-train --set grouping.bandwidth=0.2
  pixelgroup demo --config toy3d -o runs/demo3d  # the 3-D toy (nuclei stacks, docs/volumes.md)

Writes OUTPUT/checkpoint.pt, OUTPUT/metrics.json and the figures OUTPUT/figures/*.png. Run
again with the same config, it reuses the finished checkpoint (or resumes an interrupted one);
a different config into a folder that holds a checkpoint needs --overwrite or another -o.
With --skip-train --set ..., the new metrics and figures go beside the run's own
(metrics-2.json, figures-2/, ...), which are kept."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the toy tutorial: train, evaluate, draw figures",
        description="Train the toy model on synthetic multi-digit canvases, evaluate it on "
        "the test split and draw the tutorial figures.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config", default="toy", help="YAML file or shipped config name (default: toy)"
    )
    add_overrides_argument(p, "override a config value (repeatable)")
    p.add_argument("-o", "--output", type=Path, default=Path("runs/demo"), help="run folder")
    p.add_argument(
        "--skip-train", action="store_true", help="use the existing OUTPUT/checkpoint.pt"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="retrain into OUTPUT even if it holds a run"
    )
    add_threads_argument(
        p,
        default=1,
        why="; 2 trained 1.3x faster on a quiet 2-core machine but 2x slower while another "
        "process held a core, docs/toy.md",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pixelgroup._atomic import write_json
    from pixelgroup.cli.eval import format_table
    from pixelgroup.cli.paths import check_writable_dir, fresh_path
    from pixelgroup.config import (
        ExperimentConfig,
        from_dict,
        load_config,
        override_config,
        resolve_config,
    )
    from pixelgroup.engine import (
        CHECKPOINT_NAME,
        InferenceRunner,
        NonFiniteLossError,
        evaluate,
        load_checkpoint,
        load_model,
        train,
    )
    from pixelgroup.tasks import get_task

    set_threads(args.threads)
    import torch

    threads = torch.get_num_threads()
    progress = not args.quiet
    checkpoint = args.output / CHECKPOINT_NAME
    check_writable_dir(args.output, "-o")
    beside = False  # results of a changed evaluation go beside the run's own
    start = time.perf_counter()
    if args.skip_train:
        beside = bool(args.overrides) and not args.overwrite
    else:
        cfg = load_config(ExperimentConfig, resolve_config(args.config), args.overrides)
        state = None
        if checkpoint.is_file() and not args.overwrite:
            state = load_checkpoint(checkpoint)
            if from_dict(ExperimentConfig, state["config"]) != cfg:
                raise UserError(
                    f"{args.output} holds a run of another config; pass --overwrite to retrain "
                    f"it, -o for a new folder, or --skip-train to evaluate it"
                )
        if state is not None and state["epoch"] >= cfg.train.epochs:
            print(f"[1/3] reusing the finished run in {args.output} (same config)")
        else:
            resume = state is not None
            print(f"[1/3] {'resuming' if resume else 'training'} into {args.output}")
            try:
                train(cfg, args.output, resume=resume, overwrite=args.overwrite, progress=progress)
            except NonFiniteLossError as e:
                raise UserError(str(e)) from None
    trained = time.perf_counter()
    model, cfg, state = load_model(checkpoint)
    if args.skip_train:  # grouping / evaluation settings may change without retraining
        cfg = override_config(cfg, args.overrides)
    print(f"[2/3] evaluating on the {cfg.data.eval_split} split")
    metrics = evaluate(model, cfg, progress=progress)
    metrics_path, figures_dir = args.output / "metrics.json", args.output / "figures"
    if beside:
        metrics_path, figures_dir = fresh_path(metrics_path), fresh_path(figures_dir)
    write_json(metrics, metrics_path)
    print(format_table(metrics))
    print("[3/3] drawing figures")
    figures = get_task(cfg.task).figures(
        InferenceRunner.from_config(model, cfg), cfg, figures_dir, history=state.get("history")
    )
    done = time.perf_counter()
    print(
        f"\ndone in {done - start:.0f} s (training {trained - start:.0f} s, evaluation and "
        f"figures {done - trained:.0f} s; {threads} torch thread{'s' * (threads > 1)})"
    )
    print(f"checkpoint: {checkpoint}\nmetrics:    {metrics_path}")
    for path in figures:
        print(f"figure:     {path}")
    return 0
