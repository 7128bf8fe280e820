"""The classical baselines of docs/volumes.md on the toy3d test volumes, scored as the volume task
scores a model (matching on voxels):

* ``3d``: Otsu threshold + distance-transform watershed in 3-D (anisotropic distances);
* ``slices``: the 2-D Otsu + watershed (:func:`pixelgroup.baselines.watershed_nuclei`) on every
  z slice, objects of adjacent slices linked when their IoU is at least 0.3 (greedy, largest
  IoU first): the slice-by-slice route with linking by mask overlap.

Each method's ``min_distance`` (voxels / pixels between two nuclei's markers) is chosen on the
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


def link_slices(slices: list[np.ndarray], min_iou: float = 0.3) -> np.ndarray:
    """2-D label maps ``(Y, X)`` of consecutive z slices -> one ``(Z, Y, X)`` label stack: an
    object continues one of the previous slice when their IoU is at least ``min_iou`` (each
    object continued at most once, largest IoU first), else it starts a new one."""
    from pixelgroup.metrics.label_matching import label_iou

    out = np.zeros((len(slices), *slices[0].shape), np.int64)
    next_id = 1
    for z, current in enumerate(slices):
        ids = np.unique(current[current > 0])
        new = {int(i): 0 for i in ids}
        if z > 0 and len(ids) and out[z - 1].any():
            prev_ids = np.unique(out[z - 1][out[z - 1] > 0])
            iou = label_iou(current, out[z - 1]).T  # (previous objects, current objects)
            for p, c in sorted(np.argwhere(iou >= min_iou), key=lambda pc: -iou[pc[0], pc[1]]):
                if not new[int(ids[c])] and int(prev_ids[p]) not in new.values():
                    new[int(ids[c])] = int(prev_ids[p])
        for i in ids:
            if not new[int(i)]:
                new[int(i)], next_id = next_id, next_id + 1
            out[z][current == i] = new[int(i)]
        next_id = max(next_id, int(out[z].max()) + 1)
    return out


def slice_watershed(volume: np.ndarray, min_distance: int) -> np.ndarray:
    """``volume (Z, Y, X)`` -> labels: 2-D Otsu + watershed per slice, linked by IoU."""
    from pixelgroup.baselines import watershed_nuclei

    return link_slices(
        [watershed_nuclei(plane[None], min_distance=min_distance) for plane in volume]
    )


def score(cfg: ExperimentConfig, split: str, min_distance: int, method: str) -> dict[str, float]:
    dataset = VolumeTask().build_dataset(cfg, split)
    matching = MatchingEvaluator(ignore_label=None)
    for i in tqdm(range(len(dataset)), desc=f"{method} {split} d={min_distance}", leave=False):  # type: ignore[arg-type]
        sample = dataset[i]
        volume = sample.image[0].numpy()
        if method == "3d":
            labels = watershed_volume(volume, voxel_size(cfg), min_distance)
        else:
            labels = slice_watershed(volume, min_distance)
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
    for method in ("3d", "slices"):
        val = {d: score(cfg, "val", d, method)["acc50"] for d in (2, 3, 4, 5, 6, 8, 10)}
        best = max(val, key=val.__getitem__)
        test = score(cfg, cfg.data.eval_split, best, method)
        print(f"{method}: val acc50 by min_distance {val}; chosen {best}; test:")
        keys = ("acc50", "acc75", "f1_50", "precision50", "recall50", "tp50", "fp50", "fn50")
        print({k: round(test[k], 4) for k in keys})


if __name__ == "__main__":
    main()
