"""``pixelgroup eval-proposals``: AR@k of saved mask proposals against VOC/SBD/sample GT."""

from __future__ import annotations

import argparse
from pathlib import Path

from pixelgroup.cli import UserError

# numpy, the data readers and the metrics are imported when the command runs: --help stays fast

EPILOG = """examples:
  pixelgroup eval-proposals props.json ../shared/data/voc
  pixelgroup eval-proposals props.json ~/data/VOC --split val --output ar.json --plot ar.png
  pixelgroup eval-proposals props.json ~/data/SBD/dataset --subset
  pixelgroup eval-proposals props.json ~/data/VOC --plot ar.png \\
      --reference 'paper AR@[.5:.95]=11:0.56,18:0.58,60:0.61'

PROPOSALS_JSON is a list of {"image_id": "<image stem>", "segmentation": <COCO RLE>,
"score": float} (COCO results, as `pixelgroup predict` writes them). GT_DIR is a VOC 2012 root
(holding VOCdevkit), an SBD dataset folder, or a folder of <stem>.mat + <stem>.jpg samples.
Every GT image needs proposals unless --subset is given. An existing --output or --plot file
needs --overwrite; an input file is never replaced. Recall is pooled over all instances;
matching is one-to-one, greedy by IoU."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval-proposals",
        help="average recall (AR@k) of saved mask proposals",
        description="Evaluate class-agnostic mask proposals: recall at IoU 0.5:0.05:0.95 and "
        "its average (AR) at k proposals per image, for masks and boxes.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("proposals", type=Path, metavar="PROPOSALS_JSON")
    p.add_argument("gt_dir", type=Path, metavar="GT_DIR")
    p.add_argument("--split", default="val", help="VOC/SBD split (default: val)")
    p.add_argument(
        "--subset",
        action="store_true",
        help="evaluate only the GT images that have proposals (default: all must have some)",
    )
    p.add_argument(
        "--output",
        type=Path,
        help="results JSON (default: PROPOSALS_JSON with suffix .eval.json, or the first free "
        ".eval-N.json)",
    )
    p.add_argument("--plot", type=Path, help="also write the AR-vs-proposals curve to this PNG")
    p.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="LABEL=K:AR[,K:AR...]",
        help="a reference curve to draw in --plot (repeatable), e.g. a paper's points",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing --output / --plot file"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pixelgroup._atomic import write_json
    from pixelgroup.cli._offline import check_output_path, parse_curve_references
    from pixelgroup.cli.paths import fresh_path
    from pixelgroup.metrics.proposals import PROPOSAL_COUNTS
    from pixelgroup.tasks.offline import score_results
    from pixelgroup.tasks.proposals import PROPOSAL_SCORING
    from pixelgroup.viz import plot_average_recall

    references = parse_curve_references(args.reference)
    if references and args.plot is None:
        raise UserError("--reference needs --plot")
    output = args.output or fresh_path(args.proposals.with_suffix(".eval.json"))
    inputs = (args.proposals, args.gt_dir)
    check_output_path(output, "--output", overwrite=args.overwrite, inputs=inputs)
    if args.plot is not None:
        check_output_path(
            args.plot, "--plot", overwrite=args.overwrite, inputs=inputs, suffix=".png"
        )
    scores = score_results(
        args.proposals,
        args.gt_dir,
        PROPOSAL_SCORING,
        args.split,
        subset=args.subset,
        progress=not args.quiet,
    )
    for key in [
        f"{p}{m}@{k}" for p in ("", "box_") for m in ("AR", "R50") for k in PROPOSAL_COUNTS
    ]:
        print(f"{key} {scores[key]:.3f}")
    print(f"images {scores['num_images']} instances {scores['num_instances']}")
    write_json({"proposals": str(args.proposals), "gt_dir": str(args.gt_dir), **scores}, output)
    print(f"wrote {output}")
    if args.plot is not None:
        curve = {k: scores[f"AR@{k}"] for k in PROPOSAL_COUNTS}
        path = plot_average_recall({args.proposals.stem: curve}, args.plot, references=references)
        print(f"wrote {path}")
    return 0
