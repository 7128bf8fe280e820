"""Speed and agreement of pixelgroup's BSDS benchmark against pyEdgeEval on BSDS images.

Usage: python benchmarks/boundary_benchmark.py ../shared/data/bsds [--thresholds 99] [--repeats 2]
Needs the ``bsds-reference`` extra (pyEdgeEval; without it only our times are printed). DATA_DIR
holds <id>.mat ground truth (release ``groundTruth`` or sample ``GT``) with the image as ``im``
or <id>.jpg beside it. Both evaluators score the same Sobel boundary maps (8-bit quantised), one
process each, with the first annotator and with five (the file's, or a stand-in built from the
first: see ``pixelgroup.analysis.benchmark.five_annotators``), ``--repeats`` times interleaved,
fastest run kept. The same table as ``pixelgroup bench --sections boundary --bsds DATA_DIR``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pixelgroup.analysis.benchmark import bench_boundary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data", type=Path, metavar="DATA_DIR", help="folder of <id>.mat files")
    parser.add_argument("--thresholds", type=int, default=99)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved runs, fastest kept")
    parser.add_argument("--crop", type=int, default=None, help="top-left crop size (smoke runs)")
    args = parser.parse_args()
    if not sorted(args.data.glob("*.mat")):
        parser.error(f"no <id>.mat files in {args.data}")
    lines = bench_boundary(
        args.data,
        args.thresholds,
        repeats=args.repeats,
        crop=args.crop,
        log=lambda line: print(line, file=sys.stderr, flush=True),
        progress=True,
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
