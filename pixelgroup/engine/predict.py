"""Inference on image files with any task: read and check every image, then run the model on
each (:class:`~pixelgroup.engine.inference.InferenceRunner`) and write the task's prediction
files (``Task.postprocess`` then ``Task.write``; ``Task.finish_prediction`` after the last).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn
from tqdm import tqdm

from pixelgroup.config import ExperimentConfig
from pixelgroup.engine.inference import DEFAULT_MAX_SIZE, InferenceRunner, model_input_size
from pixelgroup.errors import DataError
from pixelgroup.tasks import get_task

__all__ = ["predict_files", "Predictions", "DEFAULT_MAX_SIZE", "model_input_size"]


@dataclass(frozen=True)
class Predictions:
    """What :func:`predict_files` wrote.

    Attributes:
        paths: every file written, in order.
        downscaled: ``(image, (H, W), (h, w))`` for each image the model saw downscaled from
            ``(H, W)`` to ``(h, w)`` (its files still have the image's size ``(H, W)``).
    """

    paths: list[Path]
    downscaled: list[tuple[Path, tuple[int, int], tuple[int, int]]]


def predict_files(
    model: nn.Module,
    cfg: ExperimentConfig,
    images: Sequence[str | Path],
    out_dir: str | Path,
    *,
    progress: bool = True,
    max_size: int | None = DEFAULT_MAX_SIZE,
) -> Predictions:
    """Write ``cfg.task``'s prediction files of each image file into ``out_dir``.

    Every image is read and checked before anything is written, and two images whose file
    names share a stem (their outputs would collide) are an error. Images are then read again
    one at a time, so memory holds one image, not all. With ``max_size`` (the default
    :data:`DEFAULT_MAX_SIZE`; None or 0: no limit) and a task that predicts at the image's
    size, an image whose long side is larger is downscaled for the model only: the model's
    time and memory stay bounded, the files keep the image's size (labels brought back by the
    task).
    """
    if max_size is not None and (isinstance(max_size, bool) or max_size < 0):
        raise ValueError(f"max_size must be >= 0 (0 or None: no limit), got {max_size!r}")
    paths = [Path(p) for p in images]
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        twice = sorted({s for s in stems if stems.count(s) > 1})[0]
        raise DataError(
            f"two images share the file name stem {twice!r}; their outputs would collide"
        )
    task = get_task(cfg.task)
    for path, stem in zip(paths, stems, strict=True):
        if stem in task.reserved_stems:
            raise DataError(
                f"{path}: the {cfg.task} task writes a combined {stem}.json; rename this image"
            )
    sizes = []
    for p in paths:  # read and check all before writing anything (kept: only the sizes)
        image = task.read_image(cfg, p)
        sizes.append((int(image.shape[1]), int(image.shape[2])))
    del image
    run = InferenceRunner.from_config(model, cfg)
    written: list[Path] = []
    downscaled = []
    for path, stem, size in tqdm(list(zip(paths, stems, sizes, strict=True)), disable=not progress):
        small = model_input_size(size, max_size) if task.predicts_at_image_size else size
        if small != size:
            downscaled.append((path, size, small))
        image = task.read_image(cfg, path)
        prediction = task.postprocess(cfg, run(image[None], input_size=small), size)
        written += task.write(cfg, prediction, image, Path(out_dir), stem)
    written += task.finish_prediction(Path(out_dir), stems)
    return Predictions(written, downscaled)
