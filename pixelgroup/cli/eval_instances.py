"""``pixelgroup eval-instances``: VOC mAP^r of saved class-labelled masks against VOC/SBD GT,
and the class-agnostic object matching scores (``acc50``, ``f1_50``, ...) beside it."""

from __future__ import annotations

import argparse
from pathlib import Path

# numpy, the data readers and the metrics are imported when the command runs: --help stays fast

EPILOG = """examples:
  pixelgroup eval-instances preds.json ../shared/data/voc
  pixelgroup eval-instances preds.json ~/data/VOC --split val --output map.json
  pixelgroup eval-instances preds.json ~/data/SBD/dataset --subset

PRED_JSON is a list of {"image_id": "<image stem>", "segmentation": <COCO RLE>, "score": float,
"category_id": int in 1..20} (VOC order: 1 aeroplane ... 15 person ... 20 tvmonitor), i.e. the
eval-proposals format plus a class. GT_DIR is a VOC 2012 root (holding VOCdevkit), an SBD
dataset folder, or a folder of <stem>.mat + <stem>.jpg samples. A GT instance's class is the
majority of the class map inside it. AP is the area under the monotone PR curve, pooled over all
images, matching each GT at most once; mAP is the mean over classes with GT instances.
Beside it, classes aside, the object matching of StarDist / Cellpose: the masks painted into one
label map (the higher score on top where they overlap), matched one-to-one to the GT objects at
IoU 0.5..0.95, void pixels left out: acc50 = TP / (TP + FP + FN) at IoU 0.5, f1_50, pq50 and
acc50_95 (the mean over the thresholds), counts summed over all images; all keys in the JSON.
An existing --output file needs --overwrite; an input file is never replaced."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval-instances",
        help="VOC mAP^r (IoU 0.5, 0.7) of saved semantic instance masks",
        description="Evaluate class-labelled instance masks: per-class AP at mask IoU 0.5 and "
        "0.7 over all images (VOC/SDS protocol), and their means (mAP^r).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("predictions", type=Path, metavar="PRED_JSON")
    p.add_argument("gt_dir", type=Path, metavar="GT_DIR")
    p.add_argument("--split", default="val", help="VOC/SBD split (default: val)")
    p.add_argument(
        "--subset",
        action="store_true",
        help="evaluate only the GT images that have predictions (default: all GT images; "
        "an image without predictions then counts its instances as missed)",
    )
    p.add_argument(
        "--output",
        type=Path,
        help="results JSON (default: PRED_JSON with suffix .eval.json, or the first free "
        ".eval-N.json)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing --output / --plot file"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pixelgroup._atomic import write_json
    from pixelgroup.cli._offline import check_output_path
    from pixelgroup.cli.paths import fresh_path
    from pixelgroup.metrics.instance_map import MAP_THRESHOLDS
    from pixelgroup.tasks.offline import score_results
    from pixelgroup.tasks.voc_instance import INSTANCE_SCORING

    output = args.output or fresh_path(args.predictions.with_suffix(".eval.json"))
    inputs = (args.predictions, args.gt_dir)
    check_output_path(output, "--output", overwrite=args.overwrite, inputs=inputs)
    scores = score_results(
        args.predictions,
        args.gt_dir,
        INSTANCE_SCORING,
        args.split,
        subset=args.subset,
        progress=not args.quiet,
    )
    for t in MAP_THRESHOLDS:
        print(f"mAP@{t:g} {scores[f'mAP@{t:g}']:.3f}")
    print(" ".join(f"{k} {scores[k]:.3f}" for k in ("acc50", "f1_50", "pq50", "acc50_95")))
    print(
        f"images {scores['num_images']} instances {scores['num_instances']} "
        f"predictions {scores['num_predictions']}"
    )
    write_json({"predictions": str(args.predictions), "gt_dir": str(args.gt_dir), **scores}, output)
    print(f"wrote {output}")
    return 0
