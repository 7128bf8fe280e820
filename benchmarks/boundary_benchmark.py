"""Speed and agreement of pixelgroup's BSDS benchmark against pyEdgeEval on the BSDS samples.

Usage: python benchmarks/boundary_benchmark.py ../shared/data/bsds [--thresholds 25] [--workers 2]
Needs the ``bsds-reference`` extra (pyEdgeEval). DATA_DIR holds <id>.mat samples (``im`` and
``GT``). Both run the same Sobel boundary maps (8-bit quantised) and the ground truth;
pyEdgeEval serially and with the same number of processes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import scipy.io as sio
from pyEdgeEval.common.binary_label.calculate_metrics import calculate_metrics
from pyEdgeEval.common.binary_label.evaluate_boundaries import (
    evaluate_boundaries_threshold_multiple_gts,
)
from skimage import color, filters

from pixelgroup.metrics.boundary import (
    BoundaryEvaluator,
    BoundaryPrediction,
    BoundaryTarget,
    boundary_thresholds,
)


class _Reference:
    def __init__(self, thresholds: np.ndarray) -> None:
        self.thresholds = thresholds

    def __call__(self, sample: dict):
        return evaluate_boundaries_threshold_multiple_gts(
            self.thresholds, sample["pred"], sample["gts"]
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data", type=Path, metavar="DATA_DIR", help="folder of <id>.mat samples")
    parser.add_argument("--thresholds", type=int, default=25)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    files = sorted(args.data.glob("*.mat"))
    if not files:
        parser.error(f"no <id>.mat samples in {args.data}")
    ts = boundary_thresholds(args.thresholds)
    samples = []
    for mat in files:
        m = sio.loadmat(mat, squeeze_me=True)
        pb = filters.sobel(color.rgb2gray(m["im"]))
        samples.append((mat.stem, np.round(pb / pb.max() * 255) / 255, (m["GT"] > 0)[None]))
    for label, workers in (("serial", 1), (f"{args.workers} processes", args.workers)):
        t0 = time.perf_counter()
        evaluator = BoundaryEvaluator(args.thresholds, num_workers=workers)
        evaluator.process(
            [BoundaryPrediction(p) for _, p, _ in samples],
            [BoundaryTarget(g, n) for n, _, g in samples],
        )
        ours = evaluator.scores()
        t1 = time.perf_counter()
        ref_samples = [dict(name=n, pred=p, gts=list(g)) for n, p, g in samples]
        _, _, theirs = calculate_metrics(
            _Reference(ts), args.thresholds, ref_samples, nproc=workers
        )
        t2 = time.perf_counter()
        print(
            f"[{label}] pixelgroup ODS {ours.ods:.4f} OIS {ours.ois:.4f} AP {ours.ap:.4f} "
            f"in {t1 - t0:.1f} s | pyEdgeEval ODS {theirs['ODS_f1']:.4f} "
            f"OIS {theirs['OIS_f1']:.4f} AP(AUC) {theirs['AUC']:.4f} in {t2 - t1:.1f} s | "
            f"speed-up {(t2 - t1) / (t1 - t0):.1f}x"
        )


if __name__ == "__main__":
    main()
