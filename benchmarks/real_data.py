"""pixelgroup against classical baselines on held-out images of a few-image dataset.

For a ``folder`` dataset ``ROOT/{train,test}/{images,masks}`` (nuclei: e.g. the synthetic
microscopy of :func:`pixelgroup.data.synthetic_cells.write_cells_folder`), trains
``pixelgroup train --config cells`` on ``ROOT/train`` (wall time measured), predicts every
``ROOT/test`` image with ``pixelgroup predict`` and scores the label maps beside a classical
nuclei pipeline on the same images (:func:`pixelgroup.baselines.watershed_nuclei`: Gaussian
σ 1, Otsu threshold, distance transform, ``peak_local_max`` seeds, watershed; scikit-image) on
the image normalised as pixelgroup reads it. Metric: the field's object matching (StarDist /
Cellpose / DSB 2018, :mod:`pixelgroup.metrics.label_matching`): ground-truth and predicted
objects matched one-to-one at IoU >= 0.5 (and 0.75), accuracy TP / (TP + FP + FN),
precision, recall and F1, counts summed over the images.

    python benchmarks/real_data.py --root /tmp/cells --run runs/cells_bench --threads 2 \\
        [--set optim.lr=0.003 ...] [--seeds 0 1 2]

Prints a Markdown table with the CPU model.
"""

from __future__ import annotations

import argparse
import operator
from functools import reduce
from pathlib import Path

import numpy as np

from pixelgroup.analysis.benchmark import cpu_description
from pixelgroup.analysis.commands import train_then_predict
from pixelgroup.baselines import watershed_nuclei
from pixelgroup.data.folder import IMAGE_SUFFIXES, _mask_path
from pixelgroup.data.io import read_image, read_label_map
from pixelgroup.metrics.label_matching import MatchCounts, match_labels, matching_scores

THRESHOLDS = (0.5, 0.75)


def _pairs(root: Path) -> list[tuple[Path, Path]]:
    images = sorted(
        p for p in (root / "test" / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
    )
    return [(p, m) for p in images if (m := _mask_path(root / "test" / "masks", p.stem))]


def _score(gts: list[np.ndarray], preds: list[np.ndarray]) -> dict[str, float]:
    """Scores of the counts summed over the images: accuracy / F1 / precision / recall at
    IoU 0.5 and accuracy at 0.75."""
    counts: MatchCounts = reduce(
        operator.add, (match_labels(g, p, THRESHOLDS) for g, p in zip(gts, preds, strict=True))
    )
    s = matching_scores(counts)
    return {
        "acc50": float(s["accuracy"][0]),
        "acc75": float(s["accuracy"][1]),
        "f1": float(s["f1"][0]),
        "precision": float(s["precision"][0]),
        "recall": float(s["recall"][0]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--run", type=Path, required=True, help="run folder prefix")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--set", action="append", default=[], help="config override")
    parser.add_argument(
        "--trained", action="store_true", help="score the runs' existing checkpoints, no training"
    )
    args = parser.parse_args()
    pairs = _pairs(args.root)
    gts = [read_label_map(m).numpy() for _, m in pairs]
    images = [read_image(p) for p, _ in pairs]
    rows: list[tuple[str, dict[str, float], str]] = []
    for md in (3, 5, 7):
        preds = [watershed_nuclei(image, min_distance=md) for image in images]
        rows.append((f"Otsu + watershed (min_distance {md})", _score(gts, preds), "-"))
    for seed in args.seeds:
        run = Path(f"{args.run}_seed{seed}")
        sets = [f"data.root={args.root}", f"seed={seed}", *args.set]
        paths = [p for p, _ in pairs]
        spent = train_then_predict(
            "cells", run, sets, paths, threads=args.threads, trained=args.trained
        )
        seconds = "(earlier)" if args.trained else f"{spent:.0f}"
        out = run / "predict"
        preds = [read_label_map(out / f"{p.stem}_labels.png").numpy() for p, _ in pairs]
        rows.append((f"pixelgroup --config cells (seed {seed})", _score(gts, preds), seconds))
    print(f"\n{len(pairs)} held-out images of {args.root}; CPU: {cpu_description()}\n")
    print("| method | TP/(TP+FP+FN) @0.5 | @0.75 | F1 @0.5 | precision | recall | train s |")
    print("|---|---|---|---|---|---|---|")
    for name, s, secs in rows:
        print(
            f"| {name} | {s['acc50']:.3f} | {s['acc75']:.3f} | {s['f1']:.3f} | "
            f"{s['precision']:.3f} | {s['recall']:.3f} | {secs} |"
        )


if __name__ == "__main__":
    main()
