"""pixelgroup's boundaries against a classical edge map on held-out real photos: the BSDS samples.

The two BSDS500 test images of ``../shared/data/bsds`` (``GT``: the union of the human
annotators' boundaries) in two folds: train the boundary recipe as it ships (``--config bsds``:
ImageNet-pretrained EfficientNet-Lite0, the pair-loss stage then the classifier stage) on one
image for ``--steps`` steps per stage of random 256 x 256 crops with flips (batch 1), predict
the other, and the other way round; each image is then scored with the model that never saw
it. The classical maps are the Sobel gradient magnitude of the grey image, raw and after
pixelgroup's boundary NMS, on the same images (``experiments/sobel_boundaries.py``, the
baseline of docs/boundaries.md). Scores: the BSDS benchmark over the two held-out images
(:func:`pixelgroup.data.boundary_maps.evaluate_boundary_maps`: ODS, OIS, AP at 99
thresholds).

    python benchmarks/bsds_heldout.py --run /tmp/bsds_heldout --steps 150 --threads 2 [--trained]

Prints a Markdown table with the CPU model.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from pixelgroup.analysis.benchmark import cpu_description
from pixelgroup.analysis.commands import train_then_predict
from pixelgroup.data.boundary_maps import evaluate_boundary_maps

FOLDS = (("104010", "130066"), ("130066", "104010"))
"""(training image, held-out image) of each fold."""


def write_folds(shared: Path, root: Path) -> None:
    """``root/foldK/{train,test}/<id>.{jpg,mat}``: copies of the samples (never links into
    ``shared``)."""
    for k, (train, test) in enumerate(FOLDS):
        for split, name in (("train", train), ("test", test)):
            folder = root / f"fold{k}" / split
            folder.mkdir(parents=True, exist_ok=True)
            for suffix in (".jpg", ".mat"):
                shutil.copyfile(shared / "bsds" / f"{name}{suffix}", folder / f"{name}{suffix}")


def write_sobel(shared: Path, out: Path) -> None:
    """``out/{raw,nms}/<id>.png``: the Sobel baseline of docs/boundaries.md, written by the
    script that gives its rows there (``experiments/sobel_boundaries.py``)."""
    script = Path(__file__).resolve().parents[1] / "experiments" / "sobel_boundaries.py"
    subprocess.run([sys.executable, str(script), str(shared / "bsds"), str(out)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--run", type=Path, required=True, help="work folder")
    parser.add_argument("--steps", type=int, default=150, help="training steps per stage")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], help="config override")
    parser.add_argument("--trained", action="store_true", help="score existing runs only")
    args = parser.parse_args()
    data = args.run / "data"
    write_folds(args.shared, data)
    write_sobel(args.shared, args.run / "sobel")
    held_out = args.run / "pixelgroup_nms"  # each image's map from the fold that held it out
    held_out.mkdir(parents=True, exist_ok=True)
    seconds = 0.0
    for k, (_, test) in enumerate(FOLDS):
        run = args.run / f"fold{k}"
        sets = [
            "device=cpu",
            f"data.root={data / f'fold{k}' / 'train'}",
            "data.train_split=train",
            "data.batch_size=1",
            "data.num_workers=0",
            "data.options={crop: [256, 256], flip: true}",
            "train.epochs=1",
            f"train.iters_per_epoch={args.steps}",
            f"train.checkpoint_every={args.steps}",
            "loss.max_samples=1500",
            *args.set,
        ]
        image = data / f"fold{k}" / "test" / f"{test}.jpg"
        seconds += train_then_predict(
            "bsds", run, sets, [image], threads=args.threads, trained=args.trained
        )
        out = run / "predict"
        shutil.copyfile(out / "nms" / f"{test}.png", held_out / f"{test}.png")
    trained = "(earlier)" if args.trained else f"{seconds:.0f}"
    rows = [
        ("Sobel", args.run / "sobel" / "raw", "-"),
        ("Sobel + NMS", args.run / "sobel" / "nms", "-"),
        (
            f"pixelgroup `bsds`, trained on the other image ({args.steps} steps a stage)",
            held_out,
            trained,
        ),
    ]
    print(f"\n2 held-out BSDS images (2 folds); CPU: {cpu_description()}\n")
    print("| map | ODS | OIS | AP | train s (2 folds) |")
    print("|---|---|---|---|---|")
    for name, folder, secs in rows:
        scores, _ = evaluate_boundary_maps(folder, args.shared / "bsds", progress=False)
        print(f"| {name} | {scores.ods:.3f} | {scores.ois:.3f} | {scores.ap:.3f} | {secs} |")


if __name__ == "__main__":
    main()
