"""``pixelgroup tune``: choose grouping.bandwidth and grouping.min_area on the val split."""

from __future__ import annotations

import argparse
from pathlib import Path

from pixelgroup.cli import (
    UserError,
    add_overrides_argument,
    add_threads_argument,
    device_from_overrides,
    override_checkpoint_config,
    set_threads,
)

EPILOG = """examples:
  pixelgroup tune --checkpoint runs/toy/checkpoint.pt
  pixelgroup tune --checkpoint runs/toy/checkpoint.pt --bandwidths 0.2 0.25 0.3 --min-areas 8 16
  pixelgroup tune --checkpoint runs/toy/checkpoint.pt --metric AP50 --dry-run

The model runs once over the split; its outputs are then grouped with every (bandwidth,
min_area) of the grid (by default the stored bandwidth times 0.6 ... 2 and the stored
min_area times 0.25, 0.5, 1, 2; the stored setting is always included) and scored with the
task's evaluator. The setting with the largest --metric (by default the config's
grouping.tune_metric: AP70, the instance task's AP at IoU 0.7, or acc50, matched objects at
IoU 0.5, for --config cells; the first in the table on a tie) is written into the
checkpoint's config (atomically, the replaced file kept as checkpoint.prev.pt; config.json
beside it rewritten), so `pixelgroup eval` and `predict` use it; --dry-run only prints the
table. --set changes the stored config for the sweep (e.g. data.options.eval_length to tune
on fewer images, grouping.max_points). `pixelgroup train --set train.tune_split=val` runs
the same sweep after its last step."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "tune",
        help="choose grouping.bandwidth and min_area on val, store them in the checkpoint",
        description="Sweep grouping.bandwidth and grouping.min_area on a validation split, "
        "print the table and store the best setting in the checkpoint.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint.pt from train")
    p.add_argument("--split", default="val", help="split to tune on (default: val)")
    p.add_argument(
        "--metric",
        help="evaluator key to maximise (default: the config's grouping.tune_metric: AP70, "
        "or acc50 for --config cells)",
    )
    p.add_argument(
        "--bandwidths",
        type=float,
        nargs="+",
        help="grouping.bandwidth values (default: the stored one times "
        "0.6 0.7 0.8 0.9 1.0 1.1 1.2 1.4 1.6 2.0)",
    )
    p.add_argument(
        "--min-areas",
        type=int,
        nargs="+",
        help="grouping.min_area values in image pixels (default: the stored one times "
        "0.25 0.5 1 2)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the table, change nothing")
    add_overrides_argument(p, "override a stored config value for the sweep (repeatable)")
    add_threads_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pixelgroup.engine import load_model
    from pixelgroup.engine.tune import store_grouping, tune_grouping

    set_threads(args.threads)
    if args.bandwidths is not None and any(b <= 0 for b in args.bandwidths):
        raise UserError(f"--bandwidths must be > 0, got {args.bandwidths}")
    if args.min_areas is not None and any(a < 0 for a in args.min_areas):
        raise UserError(f"--min-areas must be >= 0, got {args.min_areas}")
    model, cfg, _ = load_model(args.checkpoint)
    cfg = override_checkpoint_config(cfg, args.overrides, args.checkpoint)
    model = model.to(device_from_overrides(cfg.device, args.overrides))
    result = tune_grouping(
        model,
        cfg,
        args.split,
        bandwidths=args.bandwidths,
        min_areas=args.min_areas,
        metric=args.metric,
        progress=not args.quiet,
    )
    print(result.report())
    if args.dry_run:
        print("--dry-run: checkpoint unchanged")
    else:
        store_grouping(args.checkpoint, result)
        print(f"stored in {args.checkpoint} (grouping.bandwidth, grouping.min_area)")
    return 0
