"""pixelgroup against classical baselines on held-out images of a few-image dataset.

For a ``folder`` dataset ``ROOT/{train,test}/{images,masks}`` (nuclei: e.g. the synthetic
microscopy of :func:`pixelgroup.data.synthetic_cells.write_cells_folder`), trains
``pixelgroup train --config cells`` on ``ROOT/train`` (wall time measured), predicts every
``ROOT/test`` image with ``pixelgroup predict`` and scores the label maps beside a classical
nuclei pipeline on the same images: Gaussian σ 1, Otsu threshold, distance transform,
``peak_local_max`` seeds, watershed (scikit-image), on the image normalised as pixelgroup reads
it. Metric: the field's object matching (StarDist / Cellpose / DSB 2018): ground-truth and
predicted objects matched one-to-one at IoU >= 0.5, accuracy TP / (TP + FP + FN), precision,
recall and F1, counts summed over the images. The matching is a small local function here
(optimal assignment on the IoU matrix, :func:`match_counts`).

    python benchmarks/real_data.py --root /tmp/cells --run runs/cells_bench --threads 2 \\
        [--set optim.lr=0.003 ...] [--seeds 0 1 2]

Prints a Markdown table with the CPU model.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi
from scipy.optimize import linear_sum_assignment
from skimage.feature import peak_local_max
from skimage.filters import gaussian, threshold_otsu
from skimage.segmentation import watershed

from pixelgroup.analysis.benchmark import cpu_description
from pixelgroup.data.folder import IMAGE_SUFFIXES, _mask_path
from pixelgroup.data.io import read_image, read_label_map


def match_counts(gt: np.ndarray, pred: np.ndarray, threshold: float = 0.5) -> tuple[int, int, int]:
    """``(TP, FP, FN)`` of two ``(H, W)`` label maps (0 background) at IoU >= ``threshold``,
    objects matched one-to-one by the assignment of largest total IoU."""
    g_ids, g = np.unique(gt, return_inverse=True)
    p_ids, p = np.unique(pred, return_inverse=True)
    joint = np.bincount(g.ravel() * len(p_ids) + p.ravel(), minlength=len(g_ids) * len(p_ids))
    joint = joint.reshape(len(g_ids), len(p_ids)).astype(np.float64)
    area_g, area_p = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    iou = joint / np.maximum(area_g + area_p - joint, 1)
    iou = iou[g_ids > 0][:, p_ids > 0]
    n_gt, n_pred = iou.shape
    if n_gt == 0 or n_pred == 0:
        return 0, n_pred, n_gt
    rows, cols = linear_sum_assignment(-iou)
    tp = int((iou[rows, cols] >= threshold).sum())
    return tp, n_pred - tp, n_gt - tp


def scores(counts: list[tuple[int, int, int]]) -> dict[str, float]:
    """Accuracy, precision, recall, F1 of summed ``(TP, FP, FN)``."""
    tp, fp, fn = (sum(c[i] for c in counts) for i in range(3))
    return {
        "accuracy": tp / max(tp + fp + fn, 1),
        "precision": tp / max(tp + fp, 1),
        "recall": tp / max(tp + fn, 1),
        "f1": 2 * tp / max(2 * tp + fp + fn, 1),
        "objects": tp + fn,
    }


def watershed_nuclei(image: np.ndarray, min_distance: int = 5) -> np.ndarray:
    """Otsu + distance transform + ``peak_local_max`` + watershed of a grey ``(H, W)``
    image in [0, 1] -> ``(H, W)`` labels."""
    smooth = gaussian(image, 1.0)
    mask = smooth > threshold_otsu(smooth)
    distance = ndi.distance_transform_edt(mask)
    peaks = peak_local_max(distance, min_distance=min_distance, labels=ndi.label(mask)[0])
    markers = np.zeros(image.shape, dtype=np.int64)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-distance, markers, mask=mask)


def _pairs(root: Path) -> list[tuple[Path, Path]]:
    images = sorted(
        p for p in (root / "test" / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
    )
    return [(p, m) for p in images if (m := _mask_path(root / "test" / "masks", p.stem))]


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
    rows: list[tuple[str, dict[str, float], str]] = []
    for md in (3, 5, 7):
        counts = []
        for (image_path, _), gt in zip(pairs, gts, strict=True):
            grey = read_image(image_path).mean(0).numpy()
            counts.append(match_counts(gt, watershed_nuclei(grey, md)))
        rows.append((f"Otsu + watershed (min_distance {md})", scores(counts), "-"))
    for seed in args.seeds:
        run = Path(f"{args.run}_seed{seed}")
        sets = [f"data.root={args.root}", f"seed={seed}", *args.set]
        train = [sys.executable, "-m", "pixelgroup", "train", "--config", "cells", "-o", str(run)]
        train += ["--overwrite", "--quiet", "--threads", str(args.threads)]
        start = time.perf_counter()
        if not args.trained:
            subprocess.run(train + [a for s in sets for a in ("--set", s)], check=True)
        seconds = f"{time.perf_counter() - start:.0f}" if not args.trained else "(earlier)"
        out = run / "predict"
        predict = [sys.executable, "-m", "pixelgroup", "predict", "--checkpoint"]
        predict += [str(run / "checkpoint.pt"), "-o", str(out), "--quiet"]
        subprocess.run(predict + [str(p) for p, _ in pairs], check=True)
        counts = [
            match_counts(gt, read_label_map(out / f"{p.stem}_labels.png").numpy())
            for (p, _), gt in zip(pairs, gts, strict=True)
        ]
        rows.append((f"pixelgroup --config cells (seed {seed})", scores(counts), seconds))
    print(f"\n{len(pairs)} held-out images of {args.root}; CPU: {cpu_description()}\n")
    print("| method | TP/(TP+FP+FN) @0.5 | F1 | precision | recall | train s |")
    print("|---|---|---|---|---|---|")
    for name, s, secs in rows:
        print(
            f"| {name} | {s['accuracy']:.3f} | {s['f1']:.3f} | {s['precision']:.3f} | "
            f"{s['recall']:.3f} | {secs} |"
        )


if __name__ == "__main__":
    main()
