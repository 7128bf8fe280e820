"""``pixelgroup eval-boundaries``: the BSDS benchmark (ODS, OIS, AP, R50) on a folder of PNGs."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from pixelgroup.cli import UserError

# numpy, the metrics and the plots are imported when the command runs: --help stays fast

EPILOG = """examples:
  pixelgroup eval-boundaries runs/bsds/pred_nms ~/data/BSR/BSDS500/data/groundTruth/test
  pixelgroup eval-boundaries preds/ ../shared/data/bsds --plot pr.png --label "my detector"
  pixelgroup eval-boundaries preds/ gt/ --thresholds 25 --workers 8 --output scores.json
  pixelgroup eval-boundaries preds/ gt/ --plot pr.png --reference HED=0.780 --reference COB=0.793

PRED_DIR holds <id>.png boundary maps (8- or 16-bit grayscale, higher = more boundary, the size
of the image), thinned or not: every map is thinned again after thresholding, as in the BSDS
benchmark. GT_DIR is a BSDS500 groundTruth/<split> folder (one .mat per image, every annotator)
or a folder of <id>.mat samples holding a single 'GT' map. Every GT image needs a prediction.
--reference LABEL=F draws a result known only by its F (e.g. a paper's ODS) as a dashed iso-F
line in the plot. Binary maps have one operating point, so their AP (the area under the
precision-recall curve, as the BSDS toolbox computes it) is 0 even when ODS is 1; compare them
by ODS / OIS. An existing --output or --plot file needs --overwrite; an input file is never
replaced."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval-boundaries",
        help="BSDS boundary benchmark (ODS/OIS/AP/R50) of a folder of PNG boundary maps",
        description="Score boundary maps with the BSDS500 benchmark: pixel correspondence "
        "within 0.0075 of the image diagonal, accumulated over annotators, 99 thresholds.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("pred_dir", type=Path, metavar="PRED_DIR")
    p.add_argument("gt_dir", type=Path, metavar="GT_DIR")
    p.add_argument("--thresholds", type=int, default=99, help="number of thresholds (99)")
    p.add_argument("--max-dist", type=float, default=0.0075, help="match radius / diagonal")
    p.add_argument(
        "--no-thin", action="store_true", help="skip thinning the thresholded maps (non-standard)"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes (default: all CPUs; 1 = no extra process)",
    )
    p.add_argument(
        "--output",
        type=Path,
        help="results JSON (default: PRED_DIR/eval_boundaries.json, or the first free "
        "eval_boundaries-N.json)",
    )
    p.add_argument("--plot", type=Path, help="also write the precision-recall curve to this PNG")
    p.add_argument("--label", default=None, help="curve label in the plot (default: PRED_DIR)")
    p.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="LABEL=F",
        help="a reference F drawn as an iso-F line in --plot (repeatable)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing --output / --plot file"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def _check_arguments(args: argparse.Namespace) -> dict[str, float]:
    """Argument errors, before reading anything; returns the parsed references."""
    from pixelgroup.cli._offline import parse_f_references

    if args.thresholds < 1:
        raise UserError(f"--thresholds must be >= 1, got {args.thresholds}")
    if not 0.0 <= args.max_dist < math.inf:
        raise UserError(
            f"--max-dist must be a number >= 0 (a fraction of the image diagonal, 0.0075 in "
            f"BSDS), got {args.max_dist}"
        )
    if args.workers is not None and args.workers < 1:
        raise UserError(
            f"--workers must be >= 1 (1 = no extra process; leave it out for all CPUs), "
            f"got {args.workers}"
        )
    references = parse_f_references(args.reference)
    if references and args.plot is None:
        raise UserError("--reference needs --plot")
    return references


def run(args: argparse.Namespace) -> int:
    from pixelgroup._atomic import write_json
    from pixelgroup.cli._offline import check_output_path
    from pixelgroup.cli.paths import fresh_path
    from pixelgroup.data.boundary_maps import evaluate_boundary_maps
    from pixelgroup.viz import plot_pr_curves

    references = _check_arguments(args)
    for name, folder in (("PRED_DIR", args.pred_dir), ("GT_DIR", args.gt_dir)):
        if not folder.is_dir():
            raise UserError(f"{name} is not a folder: {folder}")
    output = args.output or fresh_path(args.pred_dir / "eval_boundaries.json")
    gt_files = sorted(args.gt_dir.glob("*.mat"))
    inputs = [args.gt_dir, *(args.pred_dir / f"{g.stem}.png" for g in gt_files)]
    check_output_path(output, "--output", overwrite=args.overwrite, inputs=inputs)
    if args.plot is not None:
        check_output_path(
            args.plot, "--plot", overwrite=args.overwrite, inputs=inputs, suffix=".png"
        )
    scores, binary = evaluate_boundary_maps(
        args.pred_dir,
        args.gt_dir,
        thresholds=args.thresholds,
        max_dist=args.max_dist,
        apply_thinning=not args.no_thin,
        workers=args.workers,
        progress=not args.quiet,
    )
    results = scores.to_dict()
    results["num_images"] = len(gt_files)
    write_json(results, output)
    r50 = "n/a (precision never reaches 0.5)" if results["R50"] is None else f"{scores.r50:.3f}"
    print(f"ODS {scores.ods:.3f}  (threshold {scores.ods_threshold:.3f})")
    print(f"OIS {scores.ois:.3f}")
    note = "  (binary maps: one operating point, so AP is 0 as in the BSDS toolbox)"
    print(f"AP  {scores.ap:.3f}{note if binary else ''}")
    print(f"R50 {r50}")
    print(f"images {len(gt_files)}; results written to {output}")
    if args.plot:
        label = args.label or args.pred_dir.name
        plot_pr_curves({label: scores}, args.plot, references=references)
        print(f"precision-recall plot written to {args.plot}")
    return 0
