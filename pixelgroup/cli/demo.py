"""``pixelgroup demo``: the toy tutorial end to end (train, evaluate, figures)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pixelgroup.cli import UserError, add_overrides_argument, add_threads_argument, set_threads

EPILOG = """examples:
  pixelgroup demo                                   # configs/toy.yaml into runs/demo/
  pixelgroup demo --set train.epochs=1 -o runs/quick
  pixelgroup demo --skip-train                      # re-evaluate and redraw runs/demo
  pixelgroup demo --skip-train --set grouping.bandwidth=0.2

Writes OUTPUT/checkpoint.pt, OUTPUT/metrics.json and the figures OUTPUT/figures/*.png."""


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
        "--config", type=Path, default=Path("configs/toy.yaml"), help="default: configs/toy.yaml"
    )
    add_overrides_argument(p, "override a config value (repeatable)")
    p.add_argument("-o", "--output", type=Path, default=Path("runs/demo"), help="run folder")
    p.add_argument(
        "--skip-train", action="store_true", help="use the existing OUTPUT/checkpoint.pt"
    )
    add_threads_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pixelgroup._atomic import write_json
    from pixelgroup.cli.eval import format_table
    from pixelgroup.config import load_config
    from pixelgroup.engine import NonFiniteLossError, evaluate, load_model, train
    from pixelgroup.engine.checkpoint import override_config
    from pixelgroup.engine.train import CHECKPOINT_NAME
    from pixelgroup.engine.tutorial import make_figures
    from pixelgroup.experiment import ExperimentConfig

    set_threads(args.threads)
    progress = not args.quiet
    checkpoint = args.output / CHECKPOINT_NAME
    start = time.perf_counter()
    if not args.skip_train:
        if not args.config.is_file():
            raise UserError(f"config not found: {args.config} (run from the repository root)")
        cfg = load_config(ExperimentConfig, args.config, args.overrides)
        print(f"[1/3] training into {args.output}")
        try:
            train(cfg, args.output, progress=progress)
        except NonFiniteLossError as e:
            raise UserError(str(e)) from None
    trained = time.perf_counter()
    model, cfg, state = load_model(checkpoint)
    if args.skip_train:  # grouping / evaluation settings may change without retraining
        cfg = override_config(cfg, args.overrides)
    print(f"[2/3] evaluating on the {cfg.data.eval_split} split")
    metrics = evaluate(model, cfg, progress=progress)
    write_json(metrics, args.output / "metrics.json")
    print(format_table(metrics))
    print("[3/3] drawing figures")
    figures = make_figures(model, cfg, args.output / "figures", history=state["history"])
    done = time.perf_counter()
    print(
        f"\ndone in {done - start:.0f} s (training {trained - start:.0f} s, evaluation and "
        f"figures {done - trained:.0f} s)"
    )
    print(f"checkpoint: {checkpoint}\nmetrics:    {args.output / 'metrics.json'}")
    for path in figures:
        print(f"figure:     {path}")
    return 0
