"""pixelgroup against classical groupings on real photos: the VOC samples in ``../shared/data``.

The four PASCAL VOC 2012 images of ``../shared/data/voc`` (persons and motorbikes, 2-4
instances each, instance masks in ``gtMat.instMap``) in two folds: train on two, predict the
other two, and the other way round. pixelgroup trains the photo recipe of docs/own_data.md
(``--config coco_instances`` on a folder of masks: ImageNet-pretrained EfficientNet-Lite0,
foreground head) on random crops with flips and intensity jitter (``data.options.augment``)
for ``--steps`` steps per fold, and predicts the held-out images at their size. The classical
groupings (:mod:`pixelgroup.baselines`: Felzenszwalb-Huttenlocher and SLIC at several scales)
see the same held-out images.

Scores, counts summed over the four held-out predictions: object matching at IoU 0.5
(TP / (TP + FP + FN), :mod:`pixelgroup.metrics.label_matching`; a segment that covers
background counts as a false positive, which penalises a grouping that labels every pixel),
the mean best overlap of each ground-truth instance (MBO: the best IoU any predicted region
reaches, the proposal view, fair to over-segmentations) and the segmentation covering of the
ground truth (background included).

    python benchmarks/photos.py --run /tmp/photos --steps 150 --threads 2 [--trained]
    python benchmarks/photos.py --run /tmp/photos_spatial --config cells --steps 600 \
        --set model.options.encoder=efficientnet_lite0 --set model.options.pretrained=true \
        --set model.options.spatial_scale=64 --set grouping.min_area=400

``--config`` trains another recipe on the same folds (``--set`` overrides it);
``--predict-set grouping.KEY=VALUE`` with ``--trained`` scores a trained run's grouping
otherwise.

Prints a Markdown table with the CPU model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import scipy.io as sio
from PIL import Image

from pixelgroup.analysis.benchmark import cpu_description
from pixelgroup.analysis.commands import train_then_predict
from pixelgroup.baselines import felzenszwalb_segments, slic_segments
from pixelgroup.data.io import read_image, read_label_map
from pixelgroup.metrics.instance import segmentation_covering
from pixelgroup.metrics.label_matching import label_iou, match_iou, matching_scores

FOLDS = (
    (("2008_000215", "2008_000234"), ("2008_000359", "2008_002240")),
    (("2008_000359", "2008_002240"), ("2008_000215", "2008_000234")),
)


def write_folds(shared: Path, root: Path) -> None:
    """``root/foldK/{train,test}/{images,masks}`` from the VOC samples (masks as 8-bit PNGs)."""
    for k, (train, test) in enumerate(FOLDS):
        for split, names in (("train", train), ("test", test)):
            for folder in ("images", "masks"):
                (root / f"fold{k}" / split / folder).mkdir(parents=True, exist_ok=True)
            for name in names:
                gt = sio.loadmat(shared / "voc" / f"{name}.mat", squeeze_me=True)["gtMat"]
                inst = np.asarray(gt["instMap"].item(), dtype=np.uint8)
                Image.fromarray(inst).save(root / f"fold{k}" / split / "masks" / f"{name}.png")
                image = Image.open(shared / "voc" / f"{name}.jpg")
                image.save(root / f"fold{k}" / split / "images" / f"{name}.png")


def scores(gts: list[np.ndarray], preds: list[np.ndarray]) -> dict[str, float]:
    """acc50 of the summed matching counts, MBO over all instances, mean covering."""
    counts, best, covering = None, [], []
    for gt, pred in zip(gts, preds, strict=True):
        iou = label_iou(gt, pred)
        c = match_iou(iou, [0.5])
        counts = c if counts is None else counts + c
        best += list(iou.max(1) if iou.shape[1] else np.zeros(iou.shape[0]))
        covering.append(segmentation_covering(pred, gt))
    assert counts is not None
    return {
        "acc50": float(matching_scores(counts)["accuracy"][0]),
        "mbo": float(np.mean(best)),
        "covering": float(np.mean(covering)),
        "regions": float(np.mean([len(np.unique(p[p > 0])) for p in preds])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--run", type=Path, required=True, help="work folder")
    parser.add_argument("--steps", type=int, default=150, help="training steps per fold")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--config", default="coco_instances", help="shipped config or YAML")
    parser.add_argument("--set", action="append", default=[], help="config override")
    parser.add_argument(
        "--predict-set",
        action="append",
        default=[],
        help="override at prediction only (grouping.*: score a trained run's grouping)",
    )
    parser.add_argument(
        "--max-size",
        type=int,
        default=0,
        help="predict's --max-size (0: the images' own size; for a model trained at a scale)",
    )
    parser.add_argument("--trained", action="store_true", help="score existing runs only")
    parser.add_argument(
        "--folds",
        type=int,
        nargs="+",
        default=[0, 1],
        help="folds to run (0: train on the first two images, 1: on the last two)",
    )
    args = parser.parse_args()
    data = args.run / "data"
    write_folds(args.shared, data)
    gts, images, names = [], [], []
    for k, (_, test) in enumerate(FOLDS):
        if k not in args.folds:
            continue
        for name in test:
            gts.append(read_label_map(data / f"fold{k}" / "test" / "masks" / f"{name}.png").numpy())
            images.append(read_image(data / f"fold{k}" / "test" / "images" / f"{name}.png"))
            names.append((k, name))
    rows = []
    for scale in (300, 1000, 3000):
        preds = [felzenszwalb_segments(im, scale=scale) for im in images]
        rows.append((f"Felzenszwalb (scale {scale})", scores(gts, preds), "-"))
    for count in (5, 10, 25):
        preds = [slic_segments(im, num_segments=count) for im in images]
        rows.append((f"SLIC ({count} segments)", scores(gts, preds), "-"))
    preds, seconds = [], 0.0
    for k in args.folds:
        run = args.run / f"fold{k}"
        sets = [
            "data.name=folder",
            f"data.root={data / f'fold{k}'}",
            "data.options={augment: true, crop: [256, 256]}",
            "data.batch_size=4",
            "data.num_workers=0",
            "data.eval_split=test",
            "train.epochs=1",
            f"train.iters_per_epoch={args.steps}",
            f"train.checkpoint_every={args.steps}",
            *args.set,
        ]
        tests = [data / f"fold{k}" / "test" / "images" / f"{n}.png" for j, n in names if j == k]
        grouping = [a for s in args.predict_set for a in ("--set", s)]
        options = ["--max-size", str(args.max_size), *grouping]
        seconds += train_then_predict(
            args.config,
            run,
            sets,
            tests,
            threads=args.threads,
            trained=args.trained,
            predict_options=options,
        )
        out = run / "predict"
        preds += [read_label_map(out / f"{p.stem}_labels.png").numpy() for p in tests]
    trained = "(earlier)" if args.trained else f"{seconds:.0f}"
    rows.append(
        (f"pixelgroup {args.config} ({args.steps} steps/fold)", scores(gts, preds), trained)
    )
    print(f"\n{len(gts)} held-out VOC images (folds {args.folds}); CPU: {cpu_description()}\n")
    print("| method | TP/(TP+FP+FN) @0.5 | MBO | covering | regions/image | train s |")
    print("|---|---|---|---|---|---|")
    for name, s, secs in rows:
        print(
            f"| {name} | {s['acc50']:.3f} | {s['mbo']:.3f} | {s['covering']:.3f} | "
            f"{s['regions']:.0f} | {secs} |"
        )


if __name__ == "__main__":
    main()
