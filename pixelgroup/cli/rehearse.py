"""``pixelgroup rehearse``: a paper recipe's dress rehearsal on synthetic data of the real
layout and size (will it run, how fast, in how much memory?)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pixelgroup.cli import UserError, add_threads_argument, set_threads

# torch and the library are imported when the command runs: --help stays fast

PAPER_RECIPES = ("bsds", "voc_proposals", "voc_instance", "voc_semantic")

EPILOG = """examples:
  pixelgroup rehearse -o runs/rehearsal                      # the four paper recipes, tiny
  pixelgroup rehearse --config voc_instance --size full --iters 3 -o runs/rh --threads 2
  pixelgroup rehearse --config bsds --config voc_proposals --size full --device cuda -o runs/rh

Writes synthetic BSDS500 (BSR/BSDS500/data/{images,groundTruth}/{train,val,test}), VOC 2012
(VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,SegmentationObject,ImageSets/Segmentation})
and SBD (benchmark_RELEASE/dataset/{img,cls,inst,train.txt,val.txt}) releases into OUT/data
(--size full: the real image sizes, 481x321 and 500x375; tiny: small images), then runs each
recipe unchanged except data.root, device and the iterations: every stage of its schedule
(the next one from the previous checkpoint), a resume, eval, predict on the eval split and the
dataset-level evaluator (eval-boundaries / eval-proposals / eval-instances). Reports seconds
per iteration and per image, peak memory (CPU RSS; CUDA max allocated) and whether every
output file exists and parses, on screen (a Markdown table) and in OUT/summary.json. The
exit status is 1 when a recipe had a problem."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "rehearse",
        help="dress rehearsal of a recipe on synthetic data of the real layout and size",
        description="Run a recipe end to end (train, resume, eval, predict, dataset-level "
        "evaluator) on a synthetic dataset in the real on-disk layout, and report time per "
        "iteration and per image, peak memory and whether every output parses.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config",
        action="append",
        default=[],
        help="a paper recipe (bsds, voc_proposals, voc_instance, voc_semantic) or a YAML "
        "(repeatable; default: the four paper recipes)",
    )
    p.add_argument("--size", default="tiny", help="tiny (default) or full (the real sizes)")
    p.add_argument("--iters", type=int, default=2, help="iterations a stage (default 2)")
    p.add_argument(
        "--device", default=None, help="cpu or cuda (default: cuda when available, else cpu)"
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    p.add_argument(
        "--no-keep-checkpoints",
        dest="keep_checkpoints",
        action="store_false",
        help="delete each recipe's checkpoints once checked (they are large)",
    )
    add_threads_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import warnings

    from pixelgroup.cli.paths import check_writable_dir
    from pixelgroup.engine.rehearsal import format_reports, rehearse

    set_threads(args.threads)
    if args.size not in ("tiny", "full"):
        raise UserError(f"--size must be tiny or full, got {args.size!r}")
    if args.iters < 1:
        raise UserError(f"--iters must be >= 1, got {args.iters}")
    device = args.device
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise UserError(f"--device must be cpu or cuda, got {device!r}")
    check_writable_dir(args.output, "-o")
    with warnings.catch_warnings():
        # the recipes' data.num_workers are for the machines they were written for; a smaller
        # one runs them as well, so torch's warning about more workers than CPUs is noise here
        warnings.filterwarnings("ignore", "This DataLoader will create", UserWarning)
        summary = rehearse(
            args.config or list(PAPER_RECIPES),
            args.output,
            size=args.size,
            iters=args.iters,
            device=device,
            keep_checkpoints=args.keep_checkpoints,
            progress=not args.quiet,
            log=print,
        )
    machine = summary["machine"]
    gpu = f", {machine['gpu']}" if "gpu" in machine else ""
    print(
        f"\n{args.size} rehearsal on {device} ({machine['cpu']}, "
        f"{'AVX-512' if machine['avx512f'] else 'no AVX-512'}, "
        f"{machine['torch_threads']} torch threads{gpu})"
    )
    print(format_reports(summary))
    print(f"summary: {args.output / 'summary.json'}")
    return 0 if all(r["ok"] for r in summary["recipes"].values()) else 1
