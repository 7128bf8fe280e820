"""Inference on image files with any task: read and check every image, then run the model on
each (:class:`~pixelgroup.engine.inference.InferenceRunner`) and write the task's prediction
files (``Task.postprocess`` then ``Task.write``; ``Task.finish_prediction`` after the last).
An image whose side (as the model sees it) exceeds :data:`AUTO_TILE_ABOVE` goes through the
model in tiles of :data:`DEFAULT_TILE` pixels; one of several grouping blocks
(:func:`~pixelgroup.postprocess.tiles.plan_blocks`) is predicted block by block
(:func:`predict_image`, ``Task.postprocess_tiles``). A TIFF or zarr
image of more than :data:`LAZY_ABOVE` pixels that the model sees at its size is never held
whole: it is read window by window as the tiles reach it (``Task.open_image``) and its files
are written block by block (``Task.write_tiles``: for instances, a tiled BigTIFF of labels).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from tqdm import tqdm

from pixelgroup.config import ExperimentConfig
from pixelgroup.data.arrays import is_array_path
from pixelgroup.data.io import image_size
from pixelgroup.data.resized_windows import ResizedWindows
from pixelgroup.engine.inference import (
    AUTO_TILE_ABOVE,
    DEFAULT_HALO,
    DEFAULT_MAX_SIZE,
    DEFAULT_TILE,
    InferenceRunner,
    default_halo,
    model_input_size,
    tile_side,
)
from pixelgroup.errors import DataError
from pixelgroup.postprocess.tiles import TILE_MULTIPLE, check_tile_sizes, plan_blocks
from pixelgroup.tasks import Task, get_task

__all__ = [
    "predict_files",
    "predict_image",
    "Predictions",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_HALO",
    "DEFAULT_TILE",
    "AUTO_TILE_ABOVE",
    "LAZY_ABOVE",
    "model_input_size",
]

_log = logging.getLogger(__name__)

LAZY_ABOVE = 2048 * 2048
"""A TIFF or zarr image of more pixels is read window by window and its labels are written
tile by tile, when its task can (``Task.writes_tiles``) and the model sees it at its size
(docs/large_images.md: the whole image's label PNG, overlay and COCO JSON grow with it)."""


@dataclass(frozen=True)
class Predictions:
    """What :func:`predict_files` wrote.

    Attributes:
        paths: every file written, in order.
        resized: ``(image, (H, W), (h, w))`` for each image the model saw resized from
            ``(H, W)`` to ``(h, w)`` (its files still have the image's size ``(H, W)``).
        tiled: the images the model saw in tiles.
        lazy: the images read window by window, their labels written tile by tile.
    """

    paths: list[Path]
    resized: list[tuple[Path, tuple[int, int], tuple[int, int]]]
    tiled: list[Path]
    lazy: list[Path]


def predict_files(
    model: nn.Module,
    cfg: ExperimentConfig,
    images: Sequence[str | Path],
    out_dir: str | Path,
    *,
    progress: bool = True,
    max_size: int | None = None,
    tile: int | None = None,
    halo: int | None = None,
    lazy: bool | None = None,
    overwrite: bool = False,
) -> Predictions:
    """Write ``cfg.task``'s prediction files of each image file into ``out_dir``.

    Every image is read and checked before anything is written, and two images whose file
    names share a stem (their outputs would collide) are an error. Images are then read again
    one at a time, so memory holds one image, not all. With ``max_size`` (0: no limit) and a
    task that predicts at the image's size, an image whose long side is larger is downscaled
    for the model only: the model's time and memory stay bounded, the files keep the image's
    size (labels brought back by the task). A model trained on crops of images at a scale of
    their own (``Task.inference_scale``, e.g. ``--config cells``: 1, the native scale) sees
    every image at that scale, and ``max_size=None`` (default) is then no limit, since its
    objects would look smaller than in training (an explicit ``max_size`` that shrinks an
    image further logs a warning); for any other model ``None`` is :data:`DEFAULT_MAX_SIZE`.

    An image whose long side, as the model sees it, exceeds ``tile`` goes through the model
    in tiles of ``tile`` pixels, each seen with ``halo`` pixels of context on every side
    (default: the model's, :func:`~pixelgroup.engine.inference.default_halo`; multiples of
    16, ``halo`` >= 16). ``tile=None`` (default): tiles of :data:`DEFAULT_TILE` for an image
    longer than :data:`AUTO_TILE_ABOVE` and than a tile's window (``DEFAULT_TILE + 2 * halo``:
    1,408 px for the dense network, :func:`~pixelgroup.engine.inference.tile_side`); 0: never.
    The tiles change how the model sees the image, not the prediction (:func:`predict_image`):
    an image of several grouping blocks is grouped block by block whether tiled or not.

    A TIFF / zarr image of a task that ``writes_tiles`` is read window by window and its
    files written block by block at its size (``Task.write_tiles``; a block bar per image)
    when ``lazy`` is True (an image the model sees at another size is then resized window by
    window, :class:`~pixelgroup.data.resized_windows.ResizedWindows`), or None (default), the
    model sees it at its size and it has more than :data:`LAZY_ABOVE` pixels; such an image is
    tiled (``tile`` 0 counts as :data:`DEFAULT_TILE`) and its existing files are replaced only
    with ``overwrite``; so are the files a task keeps (``Task.kept_outputs``, e.g. a volume's
    label stack), checked before any work.
    """
    if max_size is not None and (isinstance(max_size, bool) or max_size < 0):
        raise ValueError(f"max_size must be >= 0 (0: no limit, None: automatic), got {max_size!r}")
    if tile is not None and (isinstance(tile, bool) or tile < 0):
        raise ValueError(f"tile must be >= 0 (0: no tiles, None: automatic), got {tile!r}")
    halo = default_halo(model) if halo is None else halo
    check_tile_sizes(tile or DEFAULT_TILE, halo, min_halo=TILE_MULTIPLE)
    paths = [Path(p) for p in images]
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        twice = sorted({s for s in stems if stems.count(s) > 1})[0]
        raise DataError(
            f"two images share the file name stem {twice!r}; their outputs would collide"
        )
    task = get_task(cfg.task)
    trained_scale = task.inference_scale(cfg)
    if max_size is None:
        max_size = 0 if trained_scale is not None else DEFAULT_MAX_SIZE
    scale = 1.0 if trained_scale is None else trained_scale
    for path, stem in zip(paths, stems, strict=True):
        if stem in task.reserved_stems:
            raise DataError(
                f"{path}: the {cfg.task} task writes a combined {stem}.json; rename this image"
            )
        kept = [p for p in task.kept_outputs(Path(out_dir), stem) if p.exists()]
        if kept and not overwrite:
            raise DataError(f"{kept[0]} exists; pass --overwrite to replace it, or another -o")
    sizes: list[tuple[int, ...]] = []  # (H, W), a volume's (Z, Y, X)
    by_window = []
    for p in paths:  # read and check all before writing anything (kept: only the sizes)
        by_window.append(_by_window(task, p, lazy, max_size, scale))
        if by_window[-1]:
            sizes.append(task.open_image(cfg, p).size)  # opened and checked, not read
        else:
            image = task.read_image(cfg, p)
            sizes.append(tuple(int(n) for n in image.shape[1:]))
            del image
    run = InferenceRunner.from_config(model, cfg)
    written: list[Path] = []
    resized, tiled, lazy_paths = [], [], []
    warn = True  # once
    for path, stem, size, windowed in tqdm(
        list(zip(paths, stems, sizes, by_window, strict=True)), disable=not progress
    ):
        small = model_input_size(size, max_size, scale) if task.predicts_at_image_size else size
        if small != size:
            resized.append((path, size, small))
        if trained_scale is not None and small != model_input_size(size, 0, scale) and warn:
            warn = False
            _log.warning(
                "warning: this model was trained on crops at %s (data.options.crop, "
                "data.options.scale): --max-size %d shrinks the images further, objects look "
                "smaller than in training; --max-size 0 keeps the training scale",
                "the images' native scale" if scale == 1.0 else f"{scale:.3g} x the images' scale",
                max_size,
            )
        if windowed:
            lazy_paths.append(path)
            source = task.open_image(cfg, path)
            seen = source if small == size else ResizedWindows(source, small)
            blocks = plan_blocks(small, image_size=size)
            plan = tqdm(
                run.blocks(seen, blocks, tile=tile or DEFAULT_TILE, halo=halo),
                total=len(blocks),
                desc=f"{stem} blocks",
                leave=False,
                disable=not progress,
            )
            written += task.write_tiles(
                cfg, plan, source, Path(out_dir), stem, overwrite, seen_size=small
            )
            continue
        image = task.read_image(cfg, path)
        if task.tiles_images and tile_side(small, tile, halo):
            tiled.append(path)
        prediction = predict_image(task, cfg, run, image, small, tile=tile, halo=halo)
        written += task.write(cfg, prediction, image, Path(out_dir), stem)
    whole = [s for s, windowed in zip(stems, by_window, strict=True) if not windowed]
    if whole or not lazy_paths:
        written += task.finish_prediction(Path(out_dir), whole)
    return Predictions(written, resized, tiled, lazy_paths)


def predict_image(
    task: Task,
    cfg: ExperimentConfig,
    run: InferenceRunner,
    image: torch.Tensor,
    input_size: tuple[int, int] | None = None,
    *,
    tile: int | None = None,
    halo: int = DEFAULT_HALO,
) -> Any:
    """``task``'s prediction of one ``image (C, H, W)``, as :func:`predict_files` makes it,
    seen by the model at ``input_size = (h, w)`` (default its size) in tiles of
    :func:`~pixelgroup.engine.inference.tile_side` (``tile``) with ``halo``, for a task that
    ``tiles_images``. An image of more than one grouping block
    (:func:`~pixelgroup.postprocess.tiles.plan_blocks` of ``(h, w)``) is predicted block by
    block (``Task.postprocess_tiles`` of :meth:`InferenceRunner.blocks`), any other whole
    (``Task.postprocess``): the blocks depend on the sizes alone, so the prediction is the
    same whatever the tiles, up to the model's own tiled-versus-whole difference."""
    # (H, W); a volume's (Z, Y, X), seen whole (its task does not tile images)
    size = cast(tuple[int, int], tuple(int(n) for n in image.shape[1:]))
    small = size if input_size is None else cast(tuple[int, int], tuple(input_size))
    resize = None if small == size else small
    side = tile_side(small, tile, halo) if task.tiles_images else 0
    blocks = plan_blocks(small, image_size=size) if task.tiles_images else []
    if len(blocks) > 1:
        windows = run.blocks(image[None], blocks, input_size=resize, tile=side, halo=halo)
        return task.postprocess_tiles(cfg, windows, small, size)
    return task.postprocess(cfg, run(image[None], input_size=resize, tile=side, halo=halo), size)


def _by_window(
    task: Task, path: Path, lazy: bool | None, max_size: int | None, scale: float
) -> bool:
    """Whether ``path`` is read window by window (see :func:`predict_files`)."""
    if lazy is False or not task.writes_tiles or not is_array_path(path):
        return False
    if lazy:
        return True
    size = image_size(path)
    seen = model_input_size(size, max_size, scale) if task.predicts_at_image_size else size
    return seen == size and size[0] * size[1] > LAZY_ABOVE
