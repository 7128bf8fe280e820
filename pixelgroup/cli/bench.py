"""``pixelgroup bench``: GBMS speed and memory, grouping vs scikit-learn, merged inference, the
BSDS boundary benchmark against pyEdgeEval.

The measurements live in :mod:`pixelgroup.analysis.benchmark`; this module parses arguments,
prints the tables and writes them to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pixelgroup.cli import UserError, set_threads

# torch and the harness are imported when the command runs: --help stays fast

EPILOG = """examples:
  pixelgroup bench --quick
  pixelgroup bench --suite targets --bsds ../shared/data/bsds   # issue 31's targets, here
  pixelgroup bench --threads 1 --toy ../shared/data/toy-gbms/loops_bandwidth0.2.mat --out all.md
  pixelgroup bench --sizes 4096 16384 --dims 32 --iters 5 --impls tiled sdpa
  pixelgroup bench --sections gbms --sizes 65536 --dims 32 --impls tiled
  pixelgroup bench --device cuda --sections gbms --sizes 262144 --dims 32 --batch 8 --impls sdpa
  pixelgroup bench --sections boundary --bsds ../shared/data/bsds

Sections: `gbms` (forward / forward+backward of T loops, GFLOP/s against this machine's
fp32 GEMM measured in the same run), `grouping` (group_pixels vs sklearn MeanShift on
von Mises-Fisher mixtures and on the toy embeddings), `merge` (merged-point inference vs
plain GBMS on the toy embeddings at T = 10 and 20), `boundary` (eval-boundaries' evaluator vs
pyEdgeEval, one process each, 99 thresholds, Sobel maps of the --bsds images with one and with
five annotators; --quick: 3 thresholds on 96x96 crops). The toy rows read --toy (the original's
loops_bandwidth0.2.mat) and are skipped with a note when it is not given; the boundary section
needs --bsds (a folder of BSDS <id>.mat files) and skips pyEdgeEval when it is not installed.

--suite targets prints instead, for this machine (CPU model, kind, flags, threads, load),
every performance target of issue 31 with its ratio measured side by side in one run: the
toy training step with and without flush-to-zero (subnormal floats), the demo's training time
from it, the tiled GBMS forward against the fp32 GEMM rate, the default layer against its torch
products at D = 3 and 8, group_pixels against scikit-learn with and without a busy process,
eval-boundaries against pyEdgeEval on one image (with --bsds); a few minutes (--quick: less)."""

SECTIONS = ("gbms", "grouping", "merge", "boundary")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="benchmark the GBMS layer, group_pixels and merged inference",
        description="Time and memory of the GBMS implementations, group_pixels against "
        "scikit-learn MeanShift, and merged-point inference; prints Markdown tables.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run in seconds")
    p.add_argument(
        "--suite",
        choices=("sections", "targets"),
        default="sections",
        help="the --sections tables (default), or every target of issue 31 on this machine",
    )
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--sizes", type=int, nargs="+", default=[4096, 16384, 65536], help="N")
    p.add_argument("--dims", type=int, nargs="+", default=[8, 32, 64], help="D")
    p.add_argument("--iters", type=int, default=5, help="T, GBMS loops per call")
    p.add_argument("--batch", type=int, default=1, help="B, images per GBMS call")
    p.add_argument("--bandwidth", type=float, default=0.1, help="δ")
    p.add_argument(
        "--impls", nargs="+", default=["tiled", "sdpa", "dense"], help="auto, tiled, sdpa, dense"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: one less than the cores; OMP_NUM_THREADS where set)",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument(
        "--toy", type=Path, default=None, help="toy GBMS fixture .mat (toy rows skipped without)"
    )
    p.add_argument("--toy-images", type=int, default=30, help="toy images to use (max 30)")
    p.add_argument(
        "--bsds",
        type=Path,
        default=None,
        help="folder of BSDS <id>.mat files for the boundary section (skipped without)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="also write the tables here (.md)")
    p.set_defaults(run=run)


def _log(line: str) -> None:
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)  # partial results survive an interrupted run


def run(args: argparse.Namespace) -> int:
    import torch

    from pixelgroup.analysis import benchmark

    if args.quick:
        args.sizes, args.dims, args.iters, args.toy_images = [512, 1024], [8], 2, 1
    if args.out is not None:
        from pixelgroup.cli.paths import check_writable_file

        check_writable_file(args.out, "--out", overwrite=True)  # before the measurements
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but CUDA is not available")
    needs_toy = {"grouping", "merge"} & set(args.sections)
    if args.toy is not None and needs_toy and not args.toy.is_file():
        raise UserError(f"--toy file not found: {args.toy}")
    if args.bsds is not None and "boundary" in args.sections:
        if not args.bsds.is_dir():
            raise UserError(f"--bsds is not a folder: {args.bsds}")
        if not any(args.bsds.glob("*.mat")):
            raise UserError(f"--bsds holds no <id>.mat ground-truth files: {args.bsds}")
    set_threads(args.threads)
    if args.suite == "targets":
        return _targets(args)
    sections = {
        "gbms": lambda: benchmark.bench_gbms(
            args.sizes,
            args.dims,
            args.impls,
            iters=args.iters,
            batch=args.batch,
            bandwidth=args.bandwidth,
            device=device,
            seed=args.seed,
            gemm_n=512 if args.quick else 2048,
            log=_log,
            progress=True,
        ),
        "grouping": lambda: benchmark.bench_grouping(
            quick=args.quick,
            toy=args.toy,
            toy_images=min(args.toy_images, 5),
            seed=args.seed,
            log=_log,
            progress=True,
        ),
        "merge": lambda: benchmark.bench_merge(args.toy, args.toy_images),
        "boundary": lambda: benchmark.bench_boundary(
            args.bsds,
            3 if args.quick else 99,
            crop=96 if args.quick else None,
            log=_log,
            progress=True,
        ),
    }
    out = [
        f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs visible; load average {os.getloadavg()[0]:.1f} at start",
        "",
    ]
    for name in args.sections:
        out += [f"### {name}", "", *sections[name](), ""]
    out.append(f"load average {os.getloadavg()[0]:.1f} at the end")
    return _report(out, args.out)


def _targets(args: argparse.Namespace) -> int:
    from pixelgroup.analysis.targets import bench_targets

    if args.bsds is not None and not args.bsds.is_dir():
        raise UserError(f"--bsds is not a folder: {args.bsds}")
    from pixelgroup.config import ExperimentConfig, load_config, resolve_config
    from pixelgroup.engine.train import FixedBatchStep

    step = FixedBatchStep.from_config(load_config(ExperimentConfig, resolve_config("toy"), []))
    lines = bench_targets(step, step.iterations, bsds=args.bsds, quick=args.quick, log=_log)
    return _report(lines, args.out)


def _report(lines: list[str], out: Path | None) -> int:
    """Print the report's ``lines``, also into ``out`` (written atomically) when given."""
    from pixelgroup._atomic import write_text

    text = "\n".join(lines) + "\n"
    print(text)
    if out is not None:
        write_text(text, out)
        print(f"wrote {out}")
    return 0
