"""``pixelgroup export``: a checkpoint's model and its GBMS loops as one ONNX / TorchScript file."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from pixelgroup.cli import UserError

FORMATS = ("onnx", "torchscript")

EPILOG = """examples:
  pixelgroup export --checkpoint runs/demo/checkpoint.pt --format onnx -o runs/demo/toy.onnx
  pixelgroup export --checkpoint runs/demo/checkpoint.pt --format torchscript \\
      -o runs/demo/toy.pt --num-iters 5 --bandwidth 0.25 --overwrite

The graph maps images (B, 3, H, W) float32 in [0, 1] (any B, H, W) to `shifted`, the unit
embedding after T GBMS loops (on the stride x stride pooled embedding), `embedding`, the model's
own unit embedding, and `semantic` logits for a model with a semantic head. T, the bandwidth
and the stride default to the checkpoint's grouping settings (grouping.num_iters / bandwidth /
stride), and BatchNorm normalises as in `pixelgroup eval` (model.test_bn: running statistics,
or each image's own); the loops hold an N x N kernel for N = (H / stride) * (W / stride)
pixels. Run the ONNX file with onnxruntime (pip install 'pixelgroup[export]'), the TorchScript
file with torch.jit.load; docs/export.md shows a deployment in 15 lines."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a checkpoint with its mean-shift loops to ONNX or TorchScript",
        description="Write one graph from images to the embedding after T GBMS loops (and the "
        "model's embedding and semantic logits) as ONNX or traced TorchScript, with dynamic "
        "batch, height and width.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint.pt from train")
    p.add_argument("--format", required=True, metavar="{onnx,torchscript}", help="file format")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="FILE", help="file to write")
    p.add_argument(
        "--num-iters",
        type=int,
        metavar="T",
        help="T GBMS loops in the graph (default: grouping.num_iters)",
    )
    p.add_argument(
        "--bandwidth",
        type=float,
        metavar="DELTA",
        help="δ of the loops (default: grouping.bandwidth)",
    )
    p.add_argument(
        "--stride",
        type=int,
        metavar="S",
        help="average-pool the embedding by this factor before the loops "
        "(default: grouping.stride)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    p.set_defaults(run=run)


def _check_output(path: Path, overwrite: bool) -> None:
    """A one-line error now rather than a traceback after the export."""
    if path.is_dir():
        raise UserError(f"-o {path} is a folder; give the file to write")
    if path.exists() and not overwrite:
        raise UserError(f"{path} exists; pass --overwrite to replace it")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent  # atomic_path creates the missing folders below this one
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {path}: {parent} is not a writable folder")


def run(args: argparse.Namespace) -> int:
    if args.format not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {args.format!r}")
    if args.num_iters is not None and args.num_iters < 0:
        raise UserError(f"--num-iters must be >= 0, got {args.num_iters}")
    if args.bandwidth is not None and not 0 < args.bandwidth < float("inf"):
        raise UserError(f"--bandwidth must be a finite number > 0, got {args.bandwidth}")
    if args.stride is not None and args.stride < 1:
        raise UserError(f"--stride must be >= 1, got {args.stride}")
    if not args.checkpoint.is_file():
        raise UserError(f"checkpoint not found: {args.checkpoint}")
    _check_output(args.output, args.overwrite)

    from pixelgroup.engine.checkpoint import load_model
    from pixelgroup.engine.export import export_onnx, export_torchscript
    from pixelgroup.tasks import get_task

    model, cfg, _ = load_model(args.checkpoint)
    g = cfg.grouping
    num_iters = g.num_iters if args.num_iters is None else args.num_iters
    bandwidth = g.bandwidth if args.bandwidth is None else args.bandwidth
    stride = g.stride if args.stride is None else args.stride
    export = export_onnx if args.format == "onnx" else export_torchscript
    try:
        export(
            model,
            args.output,
            num_iters=num_iters,
            bandwidth=bandwidth,
            stride=stride,
            test_bn=cfg.model.test_bn,
            in_channels=get_task(cfg.task).in_channels(cfg),
        )
    except ImportError as e:
        raise UserError(str(e)) from None
    except ValueError as e:  # e.g. a boundary model: name the checkpoint and its task
        raise UserError(f"{args.checkpoint} (task {cfg.task!r}): {e}") from None
    print(
        f"{args.format}: {args.output} "
        f"(num_iters={num_iters}, bandwidth={bandwidth}, stride={stride}, "
        f"test_bn={cfg.model.test_bn})"
    )
    return 0
