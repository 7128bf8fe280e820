"""``pixelgroup export``: a checkpoint's model and its GBMS loops as one ONNX / TorchScript file."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from pixelgroup.cli import UserError
from pixelgroup.errors import PixelgroupError

FORMATS = ("onnx", "torchscript")

#: the default --stride gives a 512 x 512 image at most this many points in the loops, whose
#: N x N float32 kernel is then at most 64 MiB per image
POINTS_AT_512 = 4096

EPILOG = """examples:
  pixelgroup export --checkpoint runs/demo/checkpoint.pt --format onnx -o runs/demo/toy.onnx
  pixelgroup export --checkpoint runs/demo/checkpoint.pt --format torchscript \\
      -o runs/demo/toy.pt --num-iters 5 --bandwidth 0.25 --overwrite

The graph maps images (B, 3, H, W) float32 in [0, 1] (any B, H, W) to `shifted`, the unit
embedding after T GBMS loops (on the stride x stride pooled embedding), `embedding`, the model's
own unit embedding, and `semantic` logits for a model with a semantic head. T and the bandwidth
default to the checkpoint's grouping.num_iters / bandwidth, and BatchNorm normalises as in
`pixelgroup eval` (model.test_bn: running statistics, or each image's own). The loops hold an
N x N float32 kernel (4 N^2 bytes per image) for the N = (H_e / S) * (W_e / S) points of the
model's H_e x W_e embedding pooled by the stride S; the default S is the smallest stride >=
grouping.stride that keeps N <= 4096 at 512 x 512 (64 MiB; 4 MiB at 256 x 256, 1 GiB at
1024 x 1024). The command prints the stride it used and that memory. Run the ONNX file with
onnxruntime (pip install 'pixelgroup[export]'), the TorchScript file with torch.jit.load;
docs/export.md shows a deployment in 15 lines."""


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
        help="average-pool the embedding by this factor before the loops (default: the "
        "smallest stride >= grouping.stride that keeps a 512 x 512 image at <= 4096 points)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    p.set_defaults(run=run)


def _embedding_scale(model: Any) -> float:
    """H_e / H of ``model``'s embedding, from one small example (0 if it has none)."""
    import torch

    with torch.no_grad():
        out = model(torch.zeros(1, getattr(model, "in_channels", 3), 64, 64))
    embedding = getattr(out, "embedding", None)
    return 0.0 if embedding is None else embedding.shape[-1] / 64


def default_stride(model: Any, configured: int) -> int:
    """The smallest stride >= ``configured`` (grouping.stride) at which a 512 x 512 image gives
    the loops at most :data:`POINTS_AT_512` points."""
    side = 512 * _embedding_scale(model)  # the embedding's side at 512 x 512
    return max(configured, math.ceil(side / math.isqrt(POINTS_AT_512)))


def run(args: argparse.Namespace) -> int:
    from pixelgroup.cli.paths import check_writable_file

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
    check_writable_file(args.output, "-o", overwrite=args.overwrite, inputs=[args.checkpoint])

    from pixelgroup.engine.checkpoint import load_model
    from pixelgroup.engine.export import export_onnx, export_torchscript
    from pixelgroup.tasks import get_task

    model, cfg, _ = load_model(args.checkpoint)
    g = cfg.grouping
    num_iters = g.num_iters if args.num_iters is None else args.num_iters
    bandwidth = g.bandwidth if args.bandwidth is None else args.bandwidth
    stride = default_stride(model, g.stride) if args.stride is None else args.stride
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
    except PixelgroupError as e:  # e.g. a boundary model: name the checkpoint and its task
        raise UserError(f"{args.checkpoint} (task {cfg.task!r}): {e}") from None
    print(
        f"{args.format}: {args.output} "
        f"(num_iters={num_iters}, bandwidth={bandwidth}, stride={stride}, "
        f"test_bn={cfg.model.test_bn})"
    )
    points = math.ceil(512 * _embedding_scale(model) / stride) ** 2
    mib = 4 * points**2 / 2**20
    size = f"{mib:.0f} MiB" if mib < 1024 else f"{mib / 1024:.0f} GiB"
    print(
        f"memory: the loops' {points} x {points} float32 kernel takes {size} per 512 x 512 "
        "image (about twice that at peak in onnxruntime), growing with the square of the "
        "pixel count; --stride S divides it by S^4"
    )
    return 0
