"""``pixelgroup eval-instances``: VOC mAP^r of saved class-labelled masks against VOC/SBD GT,
and the class-agnostic object matching scores (``acc50``, ``f1_50``, ...) beside it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from pixelgroup.data.sample import InstanceSample
    from pixelgroup.metrics.instance_map import InstanceMAPPrediction, InstanceMAPTarget

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
    import numpy as np
    import torch

    from pixelgroup._atomic import write_json
    from pixelgroup.cli._offline import (
        check_output_path,
        evaluate_results,
        load_results,
        open_ground_truth,
    )
    from pixelgroup.cli.paths import fresh_path
    from pixelgroup.metrics.instance import InstancePrediction, InstanceTarget
    from pixelgroup.metrics.instance_map import (
        VOC_CLASSES,
        InstanceMAPEvaluator,
        InstanceMAPPrediction,
        InstanceMAPTarget,
        instances_from_maps,
    )
    from pixelgroup.metrics.label_matching import MatchingEvaluator
    from pixelgroup.tasks.predictions import masks_to_labels

    output = args.output or fresh_path(args.predictions.with_suffix(".eval.json"))
    inputs = (args.predictions, args.gt_dir)
    check_output_path(output, "--output", overwrite=args.overwrite, inputs=inputs)
    results = load_results(args.predictions, "predictions", num_classes=len(VOC_CLASSES))
    dataset = open_ground_truth(args.gt_dir, args.split)
    ignore = dataset.ignore_index
    matching = MatchingEvaluator(ignore_label=-1)

    def records(
        sample: InstanceSample, masks: np.ndarray, scores: np.ndarray, classes: np.ndarray
    ) -> tuple[InstanceMAPPrediction, InstanceMAPTarget]:
        gt_masks, gt_classes = instances_from_maps(sample.instance, sample.semantic, ignore)
        void = (sample.instance == ignore).numpy()
        order = np.argsort(-scores, kind="stable")  # fed here: it needs the same images
        labels = masks_to_labels(torch.from_numpy(masks[order])).astype(np.int64)
        gt = np.where(void, -1, sample.instance.numpy())
        matching.process([InstancePrediction(labels, scores[order])], [InstanceTarget(gt)])
        return (
            InstanceMAPPrediction(masks, classes, scores),
            InstanceMAPTarget(gt_masks, gt_classes, void),
        )

    evaluator = InstanceMAPEvaluator()
    scores = evaluate_results(
        results,
        dataset,
        evaluator,
        records,
        gt_dir=args.gt_dir,
        noun="prediction",
        subset=args.subset,
        desc="eval-instances",
        missing="empty",
        progress=not args.quiet,
    )
    for t in evaluator.thresholds:
        print(f"mAP@{t:g} {scores[f'mAP@{t:g}']:.3f}")
    scores |= matching.evaluate()
    print(" ".join(f"{k} {scores[k]:.3f}" for k in ("acc50", "f1_50", "pq50", "acc50_95")))
    print(
        f"images {scores['num_images']} instances {scores['num_instances']} "
        f"predictions {scores['num_predictions']}"
    )
    write_json({"predictions": str(args.predictions), "gt_dir": str(args.gt_dir), **scores}, output)
    print(f"wrote {output}")
    return 0
