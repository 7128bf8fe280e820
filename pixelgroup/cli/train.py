"""``pixelgroup train``: train an embedding model from an experiment config."""

from __future__ import annotations

import argparse
from pathlib import Path

from pixelgroup.cli import UserError, add_overrides_argument, add_threads_argument, set_threads

EPILOG = """examples:
  pixelgroup train --config configs/toy.yaml
  pixelgroup train --config configs/toy.yaml --set train.epochs=2 --set optim.lr=0.001 -o runs/t
  pixelgroup train -o runs/t --resume          # continue runs/t/checkpoint.pt exactly

The config (YAML values, see pixelgroup/experiment.py) is stored in every checkpoint, so
`pixelgroup eval` and `pixelgroup predict` need only the checkpoint."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train an embedding model (checkpoint each epoch)",
        description="Train with the recurrent grouping loss; writes RUN_DIR/checkpoint.pt "
        "after every epoch and RUN_DIR/config.json.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", type=Path, help="experiment YAML (default: built-in defaults)")
    add_overrides_argument(p, "override a config value, e.g. loss.num_iters=5 (repeatable)")
    p.add_argument("-o", "--output", type=Path, help="run folder (default: runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue RUN_DIR/checkpoint.pt")
    add_threads_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pixelgroup.config import load_config
    from pixelgroup.engine import NonFiniteLossError, train
    from pixelgroup.experiment import ExperimentConfig

    set_threads(args.threads)
    if args.resume and (args.config or args.overrides):
        raise UserError("--resume uses the config stored in the checkpoint; drop --config/--set")
    run_dir = args.output or Path("runs") / (args.config.stem if args.config else "default")
    cfg = None if args.resume else load_config(ExperimentConfig, args.config, args.overrides)
    try:
        result = train(cfg, run_dir, resume=args.resume, progress=not args.quiet)
    except NonFiniteLossError as e:
        raise UserError(str(e)) from None
    if result.dist.is_main:  # under torchrun every rank returns here; one line is enough
        print(f"checkpoint: {result.checkpoint}")
    return 0
