"""Inference on image files with any task: read and check every image, then write the task's
prediction files for each (see ``Task.write_prediction``).

Optional task attributes this module reads (a task without them works unchanged):

* ``predicts_at_image_size = True``: ``write_prediction`` brings its outputs to the size of the
  image it is given whatever the model's output size, so an image larger than ``max_size``
  may be downscaled for the model only (the files keep the image's size);
* ``reserved_stems``: image file stems whose outputs would collide with a combined file;
* ``finish_prediction(out_dir, stems) -> list[Path]``: called once after every image (e.g.
  one ``results.json`` for the whole folder).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from pixelgroup.config import ExperimentConfig
from pixelgroup.data.io import read_image
from pixelgroup.errors import DataError
from pixelgroup.models import apply_test_bn
from pixelgroup.tasks import get_task

__all__ = ["predict_files", "Predictions", "DEFAULT_MAX_SIZE", "model_input_size"]

DEFAULT_MAX_SIZE = 1024
"""Longest image side the model sees by default (``pixelgroup predict --max-size``)."""


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


def model_input_size(size: tuple[int, int], max_size: int | None) -> tuple[int, int]:
    """``size = (H, W)`` scaled so that its long side is at most ``max_size`` (aspect ratio
    kept, sides >= 1); unchanged when it fits or ``max_size`` is None or 0.

    Example:
        >>> model_input_size((3000, 2000), 1024)
        (1024, 683)
    """
    h, w = size
    if not max_size or max(h, w) <= max_size:
        return (h, w)
    scale = max_size / max(h, w)
    return (max(1, round(h * scale)), max(1, round(w * scale)))


class _Downscaled(nn.Module):
    """``model`` fed its images resized (bilinear, antialiased) to ``size``."""

    def __init__(self, model: nn.Module, size: tuple[int, int]) -> None:
        super().__init__()
        self.model, self.size = model, size

    def forward(self, images: torch.Tensor):
        small = F.interpolate(
            images, size=self.size, mode="bilinear", antialias=True, align_corners=False
        )
        return self.model(small.clamp(0.0, 1.0))


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
    model = apply_test_bn(model, cfg.model.test_bn)  # BatchNorm statistics: model.test_bn
    for path, stem in zip(paths, stems, strict=True):
        if stem in getattr(task, "reserved_stems", ()):
            raise DataError(
                f"{path}: the {cfg.task} task writes a combined {stem}.json; rename this image"
            )
    channels = getattr(model, "in_channels", 3)
    normalize = str(cfg.data.options.get("normalize", "auto"))  # as the model was trained
    sizes = []
    for p in paths:  # read and check all before writing anything (kept: only the sizes)
        image = read_image(p, channels, normalize)
        sizes.append((int(image.shape[1]), int(image.shape[2])))
    del image
    downscale = bool(getattr(task, "predicts_at_image_size", False))
    written: list[Path] = []
    downscaled = []
    for path, stem, size in tqdm(list(zip(paths, stems, sizes, strict=True)), disable=not progress):
        small = model_input_size(size, max_size) if downscale else size
        runner = model if small == size else _Downscaled(model, small)
        if small != size:
            downscaled.append((path, size, small))
        image = read_image(path, channels, normalize)
        written += task.write_prediction(runner, cfg, image, Path(out_dir), stem)
    finish = getattr(task, "finish_prediction", None)
    if finish is not None:
        written += finish(Path(out_dir), stems)
    return Predictions(written, downscaled)
