"""Write Sobel boundary maps of the BSDS samples (the baseline of docs/boundaries.md).

Usage: python benchmarks/sobel_boundaries.py OUT_DIR
Writes OUT_DIR/raw/<id>.png (gradient magnitude of the grey image / its max, 8-bit) and
OUT_DIR/nms/<id>.png (the same after pixelgroup's boundary NMS), ready for
``pixelgroup eval-boundaries OUT_DIR/raw ../shared/data/bsds``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from skimage import color, filters

from pixelgroup.data.bsds import BSDSMatFolder
from pixelgroup.data.io import write_png
from pixelgroup.postprocess.boundary_nms import boundary_nms

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "bsds"


def main(out: Path) -> None:
    for folder in ("raw", "nms"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    for sample in BSDSMatFolder(DATA):
        grey = color.rgb2gray(sample.image.permute(1, 2, 0).numpy())
        pb = filters.sobel(grey)
        pb /= pb.max()
        for folder, m in (("raw", pb), ("nms", np.clip(boundary_nms(pb), 0, 1))):
            write_png(np.round(m * 255).astype(np.uint8), out / folder / f"{sample.image_id}.png")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
