"""``pixelgroup eval-proposals``: AR@k of saved mask proposals against VOC/SBD/sample GT."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from pixelgroup._atomic import write_json
from pixelgroup.data.voc import instance_masks, open_instance_dataset
from pixelgroup.metrics.proposals import (
    PROPOSAL_COUNTS,
    ProposalEvaluator,
    coco_to_proposals,
    decode_rles,
    plot_average_recall,
)

EPILOG = """examples:
  pixelgroup eval-proposals props.json ../shared/data/voc
  pixelgroup eval-proposals props.json ~/data/VOC --split val --output ar.json --plot ar.png
  pixelgroup eval-proposals props.json ~/data/SBD/dataset --subset

PROPOSALS_JSON is a list of {"image_id": "<image stem>", "segmentation": <COCO RLE>,
"score": float}. GT_DIR is a VOC 2012 root (holding VOCdevkit), an SBD dataset folder, or a
folder of <stem>.mat + <stem>.jpg samples. Every GT image needs proposals unless --subset is
given. Recall is pooled over all instances; matching is one-to-one, greedy by IoU."""


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
        help="results JSON (default: PROPOSALS_JSON with suffix .eval.json)",
    )
    p.add_argument("--plot", type=Path, help="also write the AR-vs-proposals curve to this PNG")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not args.proposals.is_file():
        raise FileNotFoundError(f"proposals file not found: {args.proposals}")
    try:
        records = json.loads(args.proposals.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{args.proposals} is not valid JSON: {e}") from None
    by_image = coco_to_proposals(records)
    dataset = open_instance_dataset(args.gt_dir, args.split)

    repeated = [i for i, n in Counter(dataset.image_ids).items() if n > 1]
    if repeated:
        raise ValueError(f"GT_DIR lists image ids more than once: {repeated[:5]}")
    gt_ids = set(dataset.image_ids)
    unknown = sorted(set(by_image) - gt_ids)
    if unknown:
        raise ValueError(
            f"{len(unknown)} proposal image ids are not in {args.gt_dir} (e.g. {unknown[:3]})"
        )
    indices = [i for i, name in enumerate(dataset.image_ids) if name in by_image]
    missing = len(dataset) - len(indices)
    if missing and not args.subset:
        example = next(n for n in dataset.image_ids if n not in by_image)
        raise ValueError(
            f"{missing} of {len(dataset)} GT images have no proposals (e.g. {example!r}); "
            "give proposals for every image or pass --subset"
        )

    evaluator = ProposalEvaluator()
    for index in tqdm(indices, desc="eval-proposals", unit="img", disable=len(indices) < 2):
        image_id, sample = dataset.image_ids[index], dataset[index]
        rles, scores = by_image[image_id]
        size = list(sample.image.shape[1:])
        bad = [list(r["size"]) for r in rles if list(r["size"]) != size]
        if bad:
            raise ValueError(
                f"image {image_id!r}: proposal masks are {bad[0][0]}x{bad[0][1]} but the "
                f"image is {size[0]}x{size[1]}"
            )
        evaluator.process(
            image_id,
            instance_masks(sample.instance, dataset.ignore_index).numpy(),
            decode_rles(rles),
            scores,
            void=(sample.instance == dataset.ignore_index).numpy(),
        )
    results = evaluator.evaluate()
    for key in [
        f"{p}{m}@{k}" for p in ("", "box_") for m in ("AR", "R50") for k in PROPOSAL_COUNTS
    ]:
        print(f"{key} {results[key]:.3f}")
    print(f"images {results['num_images']} instances {results['num_instances']}")

    output = args.output or args.proposals.with_suffix(".eval.json")
    write_json({"proposals": str(args.proposals), "gt_dir": str(args.gt_dir), **results}, output)
    print(f"wrote {output}")
    if args.plot is not None:
        curve = {k: results[f"AR@{k}"] for k in PROPOSAL_COUNTS}
        print(f"wrote {plot_average_recall({args.proposals.stem: curve}, args.plot)}")
    return 0
