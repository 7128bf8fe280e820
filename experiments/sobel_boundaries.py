"""Write Sobel boundary maps of the BSDS samples (the baseline of docs/boundaries.md).

Usage: python experiments/sobel_boundaries.py DATA_DIR OUT_DIR   (DATA_DIR: ../shared/data/bsds)
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


def main(data: Path, out: Path) -> None:
    for folder in ("raw", "nms"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    for sample in BSDSMatFolder(data):
        grey = color.rgb2gray(sample.image.permute(1, 2, 0).numpy())
        pb = filters.sobel(grey)
        pb /= pb.max()
        for folder, m in (("raw", pb), ("nms", np.clip(boundary_nms(pb), 0, 1))):
            write_png(np.round(m * 255).astype(np.uint8), out / folder / f"{sample.image_id}.png")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
