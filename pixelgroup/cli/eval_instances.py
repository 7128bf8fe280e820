"""``pixelgroup eval-instances``: VOC mAP^r of saved class-labelled masks against VOC/SBD GT."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from pixelgroup._atomic import atomic_path
from pixelgroup.data.voc import open_instance_dataset
from pixelgroup.metrics.instance_map import VOC_CLASSES, InstanceMAPEvaluator, instances_from_maps
from pixelgroup.metrics.proposals import coco_to_proposals, decode_rles

EPILOG = """examples:
  pixelgroup eval-instances preds.json ../shared/data/voc
  pixelgroup eval-instances preds.json ~/data/VOC --split val --output map.json
  pixelgroup eval-instances preds.json ~/data/SBD/dataset --subset

PRED_JSON is a list of {"image_id": "<image stem>", "segmentation": <COCO RLE>, "score": float,
"category_id": int in 1..20} (VOC order: 1 aeroplane ... 15 person ... 20 tvmonitor), i.e. the
eval-proposals format plus a class. GT_DIR is a VOC 2012 root (holding VOCdevkit), an SBD
dataset folder, or a folder of <stem>.mat + <stem>.jpg samples. A GT instance's class is the
majority of the class map inside it. AP is the area under the monotone PR curve, pooled over all
images, matching each GT at most once; mAP is the mean over classes with GT instances."""


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
        "--output", type=Path, help="results JSON (default: PRED_JSON with suffix .eval.json)"
    )
    p.set_defaults(run=run)


def _classes_by_image(records: object) -> dict[str, list[int]]:
    """``{image_id: [category_id, ...]}`` in record order; bad ids raise ValueError."""
    out: dict[str, list[int]] = {}
    for i, rec in enumerate(records if isinstance(records, list) else []):
        if not isinstance(rec, dict):
            continue  # coco_to_proposals reports it
        c = rec.get("category_id")
        if isinstance(c, bool) or not isinstance(c, int) or not 1 <= c <= len(VOC_CLASSES):
            raise ValueError(
                f"record {i}: category_id must be an int in 1..{len(VOC_CLASSES)} "
                f"(VOC classes), got {c!r}"
            )
        out.setdefault(str(rec.get("image_id")), []).append(c)
    return out


def run(args: argparse.Namespace) -> int:
    if not args.predictions.is_file():
        raise FileNotFoundError(f"predictions file not found: {args.predictions}")
    try:
        records = json.loads(args.predictions.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{args.predictions} is not valid JSON: {e}") from None
    classes = _classes_by_image(records)
    by_image = coco_to_proposals(records)
    dataset = open_instance_dataset(args.gt_dir, args.split)

    repeated = [i for i, n in Counter(dataset.image_ids).items() if n > 1]
    if repeated:
        raise ValueError(f"GT_DIR lists image ids more than once: {repeated[:5]}")
    unknown = sorted(set(by_image) - set(dataset.image_ids))
    if unknown:
        raise ValueError(
            f"{len(unknown)} prediction image ids are not in {args.gt_dir} (e.g. {unknown[:3]})"
        )
    indices = [i for i, name in enumerate(dataset.image_ids) if not args.subset or name in by_image]

    evaluator = InstanceMAPEvaluator()
    for index in tqdm(indices, desc="eval-instances", unit="img", disable=len(indices) < 2):
        image_id, sample = dataset.image_ids[index], dataset[index]
        gt_masks, gt_classes = instances_from_maps(
            sample.instance, sample.semantic, dataset.ignore_index
        )
        size = list(sample.image.shape[1:])
        rles, scores = by_image.get(image_id, ([], []))
        bad = [list(r["size"]) for r in rles if list(r["size"]) != size]
        if bad:
            raise ValueError(
                f"image {image_id!r}: predicted masks are {bad[0][0]}x{bad[0][1]} but the "
                f"image is {size[0]}x{size[1]}"
            )
        pred_masks = decode_rles(rles) if rles else gt_masks.numpy()[:0]
        evaluator.process(
            pred_masks,
            classes.get(image_id, []),
            scores,
            gt_masks,
            gt_classes,
            void=(sample.instance == dataset.ignore_index).numpy(),
        )
    results = evaluator.evaluate()
    for t in evaluator.thresholds:
        print(f"mAP@{t:g} {results[f'mAP@{t:g}']:.3f}")
    print(
        f"images {results['num_images']} instances {results['num_instances']} "
        f"predictions {results['num_predictions']}"
    )
    output = args.output or args.predictions.with_suffix(".eval.json")
    with atomic_path(output) as tmp:
        data = {"predictions": str(args.predictions), "gt_dir": str(args.gt_dir), **results}
        tmp.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {output}")
    return 0
