"""``pixelgroup eval``: metrics of a checkpoint on its evaluation split."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from pixelgroup.cli import (
    UserError,
    add_overrides_argument,
    add_threads_argument,
    add_tile_arguments,
    check_tile_arguments,
    device_from_overrides,
    override_checkpoint_config,
    set_threads,
)

EPILOG = """examples:
  pixelgroup eval --checkpoint runs/demo/checkpoint.pt
  pixelgroup eval --checkpoint runs/toy/checkpoint.pt --split val -o val_metrics.json
  pixelgroup eval --checkpoint runs/toy/checkpoint.pt --set grouping.num_iters=20
  pixelgroup eval --task semantic --checkpoint runs/toy_semantic/checkpoint.pt
  pixelgroup eval --checkpoint runs/cells/checkpoint.pt --tile 256 --halo 64

The model and data come from the config stored in the checkpoint; --set changes the stored
config for this evaluation only (e.g. grouping settings or data.options.eval_length).
Metrics go to metrics.json beside the checkpoint, or metrics-2.json, metrics-3.json, ... when
that exists (earlier results are kept); an explicit -o FILE that exists needs --overwrite, and
the checkpoint is never replaced. A metric that is undefined (e.g. COCO's APm without medium
objects, every instance score on a split without instances) is printed as "–" and written
as null. Images larger than 1024 px on a side go through the model in tiles of 512 px
(--tile, --halo), as in predict: the labels are those of the image seen whole; one over
1024 px is grouped in blocks of 512 px joined across blocks, never the whole embedding at
once (docs/large_images.md). --set cannot change task,
model.name or model.options: the checkpoint fixes them.
--task names the task the checkpoint must have been trained for (instance, semantic,
boundary, proposals, voc_instance); it guards scripts against evaluating the wrong model."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint (table + metrics.json)",
        description="Evaluate a checkpoint on its evaluation split with its task's metrics: "
        "instance (class-agnostic AP@0.5 / AP@0.7, mean best overlap, covering, adjusted Rand "
        "index, object matching acc50..acc95 / F1 / PQ, COCO mask AP), semantic (mIoU, pixel "
        "accuracy, boundary F), boundary (ODS / OIS / AP / R50), "
        "proposals (AR@k) or voc_instance (mAP^r@0.5 / 0.7).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint.pt from train")
    p.add_argument("--task", help="expected task of the checkpoint (error if it differs)")
    p.add_argument("--split", help="split to evaluate (default: data.eval_split of the config)")
    add_overrides_argument(p, "override a stored config value for this evaluation (repeatable)")
    add_tile_arguments(
        p,
        "run the model on tiles of N x N px (a multiple of 16) of an image larger than N on a "
        "side, as predict does (default: 512 for images larger than 1024 and than a tile's "
        "window, 512 + 2 halo; 0: never)",
        "px of context around each tile, a multiple of 16 >= 16 (default: the model's, as in "
        "predict)",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        help="metrics JSON (default: metrics.json beside the checkpoint, or the first free "
        "metrics-N.json)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing -o FILE")
    add_threads_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def format_table(metrics: dict[str, float]) -> str:
    """Two-column text table of a metrics dict; an undefined (NaN) value is "–", explained
    below the table."""
    width = max(len(k) for k in metrics)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  ------"]
    undefined = False
    for key, value in metrics.items():
        if isinstance(value, float) and not math.isfinite(value):
            text, undefined = "–", True
        else:
            text = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"{key:<{width}}  {text}")
    if metrics.get("instances") == 0:
        lines.append("note: the split has no instances; the instance scores are undefined (–)")
    elif undefined:
        lines.append("note: – is undefined (nothing to score, e.g. no objects of that size)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from pixelgroup._atomic import write_json
    from pixelgroup.cli.paths import check_writable_file, fresh_path
    from pixelgroup.engine import evaluate, load_model

    set_threads(args.threads)
    check_tile_arguments(args.tile, args.halo)
    if args.output is not None:
        check_writable_file(args.output, "-o", overwrite=args.overwrite, inputs=[args.checkpoint])
    model, cfg, _ = load_model(args.checkpoint)
    if args.task is not None and args.task != cfg.task:
        raise UserError(
            f"{args.checkpoint} was trained for task {cfg.task!r}, not {args.task!r}; "
            "evaluate it without --task or pick a checkpoint of that task"
        )
    cfg = override_checkpoint_config(cfg, args.overrides, args.checkpoint)
    model = model.to(device_from_overrides(cfg.device, args.overrides))
    output = args.output or fresh_path(args.checkpoint.parent / "metrics.json")
    metrics = evaluate(
        model, cfg, args.split, progress=not args.quiet, tile=args.tile, halo=args.halo
    )
    print(format_table(metrics))
    write_json(metrics, output)
    print(f"metrics: {output}")
    return 0
