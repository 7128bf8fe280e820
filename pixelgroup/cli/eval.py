"""``pixelgroup eval``: metrics of a checkpoint on its evaluation split."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """examples:
  pixelgroup eval --checkpoint runs/demo/checkpoint.pt
  pixelgroup eval --checkpoint runs/toy/checkpoint.pt --split val -o val_metrics.json
  pixelgroup eval --checkpoint runs/toy/checkpoint.pt --set grouping.num_iters=20

The model and data come from the config stored in the checkpoint; --set changes the stored
config for this evaluation only (e.g. grouping settings or data.options.eval_length)."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint (table + metrics.json)",
        description="Evaluate a checkpoint on its evaluation split: for instance models, "
        "class-agnostic AP@0.5 / AP@0.7, mean best overlap, covering and adjusted Rand index.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint.pt from train")
    p.add_argument("--split", help="split to evaluate (default: data.eval_split of the config)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a stored config value for this evaluation (repeatable)",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        help="metrics JSON (default: metrics.json beside the checkpoint)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def format_table(metrics: dict[str, float]) -> str:
    """Two-column text table of a metrics dict."""
    width = max(len(k) for k in metrics)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  ------"]
    for key, value in metrics.items():
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"{key:<{width}}  {text}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from pixelgroup.engine import evaluate, load_model
    from pixelgroup.engine.checkpoint import override_config
    from pixelgroup.engine.train import write_json

    model, cfg, _ = load_model(args.checkpoint)
    cfg = override_config(cfg, args.overrides)
    output = args.output or args.checkpoint.parent / "metrics.json"
    metrics = evaluate(model, cfg, args.split, progress=not args.quiet)
    print(format_table(metrics))
    write_json(metrics, output)
    print(f"metrics: {output}")
    return 0
