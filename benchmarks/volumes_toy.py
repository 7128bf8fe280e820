"""The classical baseline of docs/volumes.md: Otsu threshold + distance-transform watershed in 3-D
on the toy3d test volumes, scored as the volume task scores a model (matching on voxels).

The watershed's ``min_distance`` (voxels between two nuclei's markers) is chosen on the
``val`` split, then the test split is scored once:

    python benchmarks/volumes_toy.py            # the shipped toy3d config's volumes
"""

from __future__ import annotations

import argparse

import numpy as np
from tqdm import tqdm

from pixelgroup.config import ExperimentConfig, load_config, resolve_config
from pixelgroup.metrics import InstancePrediction, InstanceTarget, MatchingEvaluator
from pixelgroup.tasks.volume import VolumeTask, voxel_size


def watershed_volume(
    volume: np.ndarray, spacing: tuple[float, float, float], min_distance: int
) -> np.ndarray:
    """``volume (Z, Y, X)`` -> labels: Gaussian smoothing (1 unit in physical space), Otsu's
    threshold, markers at the anisotropic distance transform's maxima, watershed."""
    from scipy import ndimage
    from skimage.feature import peak_local_max
    from skimage.filters import gaussian, threshold_otsu
    from skimage.segmentation import watershed

    grey = gaussian(volume, sigma=[1.0 / s for s in spacing])
    foreground = grey > threshold_otsu(grey)
    distance = ndimage.distance_transform_edt(foreground, sampling=spacing)
    regions, _ = ndimage.label(foreground)
    peaks = peak_local_max(
        distance, min_distance=min_distance, labels=regions, exclude_border=False
    )
    markers = np.zeros(volume.shape, np.int64)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-distance, markers, mask=foreground)


def score(cfg: ExperimentConfig, split: str, min_distance: int) -> dict[str, float]:
    dataset = VolumeTask().build_dataset(cfg, split)
    matching = MatchingEvaluator(ignore_label=None)
    for i in tqdm(range(len(dataset)), desc=f"{split} d={min_distance}", leave=False):  # type: ignore[arg-type]
        sample = dataset[i]
        labels = watershed_volume(sample.image[0].numpy(), voxel_size(cfg), min_distance)
        z, y, x = labels.shape
        matching.process(
            [InstancePrediction(labels.reshape(z * y, x), np.ones(int(labels.max())))],
            [InstanceTarget(sample.instance.numpy().reshape(z * y, x))],
        )
    return matching.evaluate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="toy3d")
    args = parser.parse_args()
    cfg = load_config(ExperimentConfig, resolve_config(args.config))
    val = {d: score(cfg, "val", d)["acc50"] for d in (2, 3, 4, 5, 6)}
    best = max(val, key=val.__getitem__)
    test = score(cfg, cfg.data.eval_split, best)
    print(f"val acc50 by min_distance: {val}; chosen {best}")
    print({k: round(test[k], 4) for k in ("acc50", "acc75", "f1_50", "precision50", "recall50")})


if __name__ == "__main__":
    main()
