"""The BSDS benchmark of boundary maps saved as PNG files against BSDS500 ground truth
(``pixelgroup eval-boundaries``): the maps :mod:`pixelgroup.tasks.boundary` predicts, or any
detector's. Importing it imports the metrics and the ``.mat`` reader, not the datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pixelgroup.data.bsds import load_boundary_ground_truth
from pixelgroup.errors import DataError, data_errors
from pixelgroup.metrics import BoundaryEvaluator, BoundaryPrediction, BoundaryScores, BoundaryTarget

__all__ = ["read_boundary_map", "evaluate_boundary_maps"]


def read_boundary_map(path: str | Path) -> np.ndarray:
    """An 8- or 16-bit grayscale PNG (higher = more boundary) -> ``(H, W)`` float64 in [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            mode, array = im.mode, np.asarray(im)
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"cannot read prediction {path}: {e}") from None
    if mode == "L":
        return array / 255.0
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        return array.astype(np.float64) / 65535.0
    raise DataError(f"{path}: expected an 8- or 16-bit grayscale PNG, got PIL mode {mode!r}")


def evaluate_boundary_maps(
    pred_dir: str | Path,
    gt_dir: str | Path,
    *,
    thresholds: int = 99,
    max_dist: float = 0.0075,
    apply_thinning: bool = True,
    workers: int | None = None,
    progress: bool = True,
) -> tuple[BoundaryScores, bool]:
    """The BSDS benchmark of the boundary maps ``pred_dir/<id>.png`` (:func:`read_boundary_map`)
    against ``gt_dir/<id>.mat`` (a BSDS500 ``groundTruth/<split>`` folder or ``.mat`` samples).

    The arguments are :class:`~pixelgroup.metrics.BoundaryEvaluator`'s (``workers`` its
    ``num_workers``). Returns its :class:`~pixelgroup.metrics.BoundaryScores` and whether every
    map is binary (at most two levels: one operating point, so AP is 0 as in the BSDS
    toolbox). Every ground-truth image needs a map; files that cannot be used raise
    :class:`~pixelgroup.errors.DataError`.
    """
    from scipy.io.matlab import MatReadError

    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    for name, folder in (("PRED_DIR", pred_dir), ("GT_DIR", gt_dir)):
        if not folder.is_dir():
            raise DataError(f"{name} is not a folder: {folder}")
    gt_files = sorted(gt_dir.glob("*.mat"))
    if not gt_files:
        raise DataError(f"no <id>.mat ground-truth files in {gt_dir}")
    missing = [g.stem for g in gt_files if not (pred_dir / f"{g.stem}.png").is_file()]
    if missing:
        raise DataError(
            f"{len(missing)} of {len(gt_files)} ground-truth images have no prediction in "
            f"{pred_dir} (e.g. {missing[0]}.png)"
        )
    evaluator = BoundaryEvaluator(
        thresholds,
        max_dist=max_dist,
        apply_thinning=apply_thinning,
        num_workers=workers,
        progress=progress,
    )
    binary = True
    for g in gt_files:
        pred = read_boundary_map(pred_dir / f"{g.stem}.png")
        binary = binary and np.unique(pred).size <= 2
        try:
            with data_errors():
                gts = load_boundary_ground_truth(g)
        except (MatReadError, OSError) as e:
            raise DataError(f"cannot read ground truth {g}: {e}") from None
        if pred.shape != gts.shape[1:]:
            raise DataError(
                f"{g.stem}: prediction is {pred.shape[0]}x{pred.shape[1]} but the ground truth "
                f"is {gts.shape[1]}x{gts.shape[2]}; resize predictions to the image size"
            )
        if not gts.any():
            raise DataError(f"{g}: ground truth is empty (no boundary pixel in any annotator)")
        with data_errors(f"{g.stem}: "):
            evaluator.process([BoundaryPrediction(pred)], [BoundaryTarget(gts, g.stem)])
    return evaluator.scores(), binary
