"""``pixelgroup train``: train an embedding model from an experiment config."""

from __future__ import annotations

import argparse
from pathlib import Path

from pixelgroup.cli import UserError, add_overrides_argument, add_threads_argument, set_threads

EPILOG = """examples:
  pixelgroup train --config toy                # a shipped config, by name (or a YAML path)
  pixelgroup train --config toy --set train.epochs=2 --set optim.lr=1e-3 -o runs/t
  pixelgroup train -o runs/t --resume          # continue runs/t/checkpoint.pt exactly
  pixelgroup train -o runs/t --resume --set train.epochs=4   # extend a finished run

The config (YAML values, see pixelgroup/config.py) is stored in every checkpoint, so
`pixelgroup eval` and `pixelgroup predict` need only the checkpoint. A run folder that holds a
checkpoint is never replaced unasked: --resume continues it, --overwrite starts it anew. With
--resume, --set may change only train.epochs, train.checkpoint_every, data.num_workers,
model.test_bn and train.init_from. A config with `stages:` (e.g. voc_instance) runs every
stage in order, each from the previous one's weights: the last writes RUN_DIR/checkpoint.pt,
the others RUN_DIR/<stage>/checkpoint.pt; --resume skips finished stages and continues the
interrupted one. --set changes the config before each stage applies its own overrides (to
change a stage's setting, edit its overrides; --set 'stages=[]' trains the config as one
stage)."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train an embedding model (checkpoint each epoch)",
        description="Train with the recurrent grouping loss; writes RUN_DIR/checkpoint.pt "
        "after every epoch and RUN_DIR/config.json.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config", help="experiment YAML or shipped config name (default: built-in defaults)"
    )
    add_overrides_argument(p, "override a config value, e.g. loss.num_iters=5 (repeatable)")
    p.add_argument("-o", "--output", type=Path, help="run folder (default: runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue RUN_DIR/checkpoint.pt")
    p.add_argument(
        "--overwrite", action="store_true", help="replace a checkpoint already in RUN_DIR"
    )
    add_threads_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pixelgroup.cli.paths import check_writable_dir
    from pixelgroup.config import (
        ExperimentConfig,
        from_dict,
        load_config,
        override_config,
        resolve_config,
    )
    from pixelgroup.engine import CHECKPOINT_NAME, NonFiniteLossError, load_checkpoint
    from pixelgroup.engine.schedule import read_schedule, stage_dirs, train_schedule

    set_threads(args.threads)
    if args.resume and args.config:
        raise UserError("--resume uses the config stored in the checkpoint; drop --config")
    if args.resume and args.overwrite:
        raise UserError("--resume continues the checkpoint and --overwrite replaces it; pick one")
    config = None if args.config is None else resolve_config(args.config)
    run_dir = args.output or Path("runs") / (config.stem if config else "default")
    check_writable_dir(run_dir, "-o")
    if args.resume:
        stored = read_schedule(run_dir)  # a staged run: its whole schedule
        if stored is None:
            state = load_checkpoint(run_dir / CHECKPOINT_NAME)
            stored = from_dict(ExperimentConfig, state["config"])
        cfg = override_config(stored, args.overrides)
    else:
        cfg = load_config(ExperimentConfig, config, args.overrides)
    try:
        results = train_schedule(
            cfg, run_dir, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet
        )
    except NonFiniteLossError as e:
        raise UserError(str(e)) from None
    if not results or results[-1].dist.is_main:  # under torchrun every rank returns here
        if results and results[-1].tuned is not None:
            print(results[-1].tuned.report())
        print(f"checkpoint: {stage_dirs(cfg, run_dir)[-1] / CHECKPOINT_NAME}")
    return 0
