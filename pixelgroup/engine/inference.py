"""The one place where a model meets images at inference.

Evaluation (:mod:`pixelgroup.engine.evaluate`), prediction (:mod:`pixelgroup.engine.predict`),
the export check (:mod:`pixelgroup.engine.export`) and rehearsal all run the model through an
:class:`InferenceRunner`: it holds the model with the configured test-time BatchNorm
(``model.test_bn``, :func:`pixelgroup.models.apply_test_bn`), moves the images to the model's
device, runs the model in eval mode under ``torch.no_grad`` and the configured autocast
(``train.amp``), downscales the images first when asked, and gives the model back in the mode
it found it in. Tasks never call a model; they turn the runner's outputs into predictions.

Anything that changes how an image reaches the model (tiling an image larger than memory, a
volume slice by slice) belongs inside :meth:`InferenceRunner.__call__`, so that every caller
gets it at once. With ``tile`` the model sees the image one window at a time (a tile's core
plus a ``halo``, :func:`pixelgroup.postprocess.tiles.plan_tiles`) and only the cores of its
outputs are kept: :meth:`InferenceRunner.__call__` stitches them into the whole image's
output, :meth:`InferenceRunner.tiles` hands them over one by one (a caller that groups each
tile never holds the whole output).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from pixelgroup.config import ExperimentConfig
from pixelgroup.engine.distributed import autocast, float32_outputs
from pixelgroup.errors import ConfigError
from pixelgroup.models import apply_test_bn, tile_halo
from pixelgroup.postprocess.tiles import Box, Tile, crop_output, plan_tiles, stitch_cores

__all__ = [
    "InferenceRunner",
    "WindowSource",
    "inference_context",
    "model_input_size",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_HALO",
    "DEFAULT_TILE",
    "AUTO_TILE_ABOVE",
    "tile_side",
    "default_halo",
]

DEFAULT_MAX_SIZE = 1024
"""Longest image side the model sees by default (``pixelgroup predict --max-size``)."""

DEFAULT_HALO = 64
"""Pixels of context on every side of a tile: beyond it the toy network's and the U-Net's
tiled embedding equals the whole image's to float rounding (docs/large_images.md, the halo
table); a model with a larger receptive field names its own (:func:`default_halo`)."""


def default_halo(model: nn.Module) -> int:
    """The halo a model is tiled with unless told otherwise: the model's
    (:func:`~pixelgroup.models.tile_halo`, e.g. 448 for the dense network), never below
    :data:`DEFAULT_HALO`."""
    return max(DEFAULT_HALO, tile_halo(model))


DEFAULT_TILE = 512
"""Core side of the tiles of an image seen in tiles (``pixelgroup predict --tile``): a
crowded 512 px tile peaks at about 2 GB with a ``--config cells`` model (docs/large_images.md)."""

AUTO_TILE_ABOVE = 1024
"""An image whose side, as the model sees it, is longer goes through the model in tiles by
default (docs/large_images.md: a crowded 1024 x 1024 image whole took over 13 GB)."""


def tile_side(size: tuple[int, ...], tile: int | None, halo: int = 0) -> int:
    """Core side of the tiles in which the model sees an image of ``size = (H, W)`` (as the
    model sees it), 0 for the whole image at once: ``tile`` (0: never), or with ``tile`` None
    :data:`DEFAULT_TILE` when a side exceeds both :data:`AUTO_TILE_ABOVE` and the window a
    tile is seen in, ``DEFAULT_TILE + 2 * halo`` (below it one window holds about the whole
    image, and tiles only repeat the model's work: the dense network, halo 448, sees a
    1,408 px image whole in 13 s and 1.6 GB, in tiles in 79 s and 2.3 GB; docs/large_images.md);
    0 too when the image fits in one tile. Used alike by prediction and evaluation.

    Example:
        >>> tile_side((3000, 2000), None), tile_side((800, 600), None), tile_side((800, 600), 256)
        (512, 0, 256)
        >>> tile_side((1400, 1400), None, halo=64), tile_side((1400, 1400), None, halo=448)
        (512, 0)
    """
    auto = max(AUTO_TILE_ABOVE, DEFAULT_TILE + 2 * halo)
    side = tile if tile is not None else DEFAULT_TILE if max(size) > auto else 0
    return side if side and max(size) > side else 0


def model_input_size(
    size: tuple[int, int], max_size: int | None, scale: float = 1.0
) -> tuple[int, int]:
    """``size = (H, W)`` times ``scale`` (the scale a model was trained at,
    ``Task.inference_scale``), then shrunk so that its long side is at most ``max_size``
    (aspect ratio kept, sides >= 1; no limit when ``max_size`` is None or 0).

    Example:
        >>> model_input_size((3000, 2000), 1024)
        (1024, 683)
        >>> model_input_size((300, 200), 0, scale=0.5)
        (150, 100)
    """
    h, w = size
    if scale != 1.0:
        h, w = max(1, round(h * scale)), max(1, round(w * scale))
    if not max_size or max(h, w) <= max_size:
        return (h, w)
    scale = max_size / max(h, w)
    return (max(1, round(h * scale)), max(1, round(w * scale)))


@runtime_checkable
class WindowSource(Protocol):
    """An image read one window at a time (e.g. :class:`~pixelgroup.data.lazy_image.
    LazyImage`): ``size = (H, W)`` and ``read(box) -> (C, h, w)`` float32, the pixels of a
    :class:`~pixelgroup.postprocess.tiles.Box`."""

    size: tuple[int, int]

    def read(self, box: Box) -> torch.Tensor: ...


@contextmanager
def inference_context(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode without autograd inside the block, in its former mode after
    (as detectron2's ``inference_context``)."""
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(training)


class InferenceRunner:
    """Runs ``model`` on images at inference (see the module docstring).

    Args:
        model: any model of :data:`pixelgroup.models.MODELS` (or a wrapper such as
            :class:`~pixelgroup.engine.export.GroupingGraph`); it stays on its device.
        test_bn: ``"running"`` or ``"batch"`` (``model.test_bn``).
        amp: ``"none"``, ``"bf16"`` or ``"fp16"`` (``train.amp``): the autocast the model runs
            under; floating outputs come back in float32 whatever it is.

    Call it with ``images (B, C, H, W)`` (any device; moved to the model's) and optionally
    ``input_size = (h, w)``: the images are then resized (bilinear, antialiased) to it first.
    It returns the model's output (e.g. :class:`~pixelgroup.models.EmbeddingOutput`) on the
    model's device. With ``tile`` (> 0; a multiple of 16) the model runs on one window of
    ``tile + 2 * halo`` pixels a side at a time, each window moved to the model's device on its
    own, and the output is stitched from the windows' cores (on the images' device). A model
    whose ``forward`` takes ``crop = (top, left, H, W)`` is told where each window lies (its
    coordinate channels or centre votes are then the whole image's).

    Example:
        >>> from pixelgroup.models import ToyEmbeddingNet
        >>> run = InferenceRunner(ToyEmbeddingNet(width=4, num_blocks=1))
        >>> tuple(run(torch.rand(2, 3, 32, 40), input_size=(16, 20)).embedding.shape)
        (2, 3, 16, 20)
    """

    def __init__(self, model: nn.Module, *, test_bn: str = "running", amp: str = "none") -> None:
        self.model = apply_test_bn(model, test_bn)
        self.test_bn = test_bn
        self.amp = amp
        self.takes_crop = "crop" in inspect.signature(self.model.forward).parameters
        autocast(amp, self.device)  # checks amp before any work

    @classmethod
    def from_config(cls, model: nn.Module, cfg: ExperimentConfig) -> InferenceRunner:
        """The runner of ``model`` with ``cfg.model.test_bn`` and ``cfg.train.amp``."""
        return cls(model, test_bn=cfg.model.test_bn, amp=cfg.train.amp)

    @property
    def device(self) -> torch.device:
        """Where the model's parameters are (CPU for a model without any)."""
        for p in self.model.parameters():
            return p.device
        return torch.device("cpu")

    def __call__(
        self,
        images: torch.Tensor,
        input_size: tuple[int, int] | None = None,
        *,
        tile: int = 0,
        halo: int = DEFAULT_HALO,
    ) -> Any:
        if tile:
            return stitch_cores(
                self.tiles(images, input_size, tile=tile, halo=halo), _size(images, input_size)
            )
        return self._forward(self._resized(images.to(self.device), input_size))

    def tiles(
        self,
        images: torch.Tensor | WindowSource,
        input_size: tuple[int, int] | None = None,
        *,
        tile: int,
        halo: int = DEFAULT_HALO,
    ) -> Iterator[tuple[Tile, Any]]:
        """``(tile, output)`` for each tile of the (resized) images in row-major order:
        ``output`` the model's output of the tile's window (on the model's device), of which
        the caller keeps the core. Memory: one window's output at a time.

        ``images`` is ``(B, C, H, W)``, or a :class:`WindowSource` (one image, never held
        whole: each window is read as the model reaches it; no ``input_size`` other than
        its own size).

        Raises :class:`~pixelgroup.errors.ConfigError` with ``test_bn`` ``"batch"`` (each
        window would be normalised by its own statistics: tiles would disagree)."""
        images, size = self._tiled_source(images, input_size)
        return self._windows(images, size, plan_tiles(size, tile, halo))

    def blocks(
        self,
        images: torch.Tensor | WindowSource,
        blocks: list[Tile],
        input_size: tuple[int, int] | None = None,
        *,
        tile: int,
        halo: int = DEFAULT_HALO,
    ) -> Iterator[tuple[Tile, Any]]:
        """``(block, output)`` for each of ``blocks`` (the grouping's plan of the (resized)
        images, :func:`~pixelgroup.postprocess.tiles.plan_blocks`), ``output`` the model's
        output of the block's ``window`` (on the images' device): with ``tile`` > 0 stitched
        from the cores of windows of ``tile + 2 * halo`` px (cores of ``tile`` px that
        partition the block's window, each seen with ``halo`` px of the image around it), with
        ``tile`` 0 cut from one pass over the whole image (``images`` a tensor). Where the
        halo covers the model's receptive field, either is the whole image's output, so the
        blocks are grouped alike however the model saw the image. Memory: one block's output
        (and with ``tile`` 0 the whole image's).

        ``images`` as in :meth:`tiles`; raises :class:`~pixelgroup.errors.ConfigError` with
        ``test_bn`` ``"batch"`` and ``tile`` > 0, ``ValueError`` for ``tile`` 0 of a
        :class:`WindowSource`."""
        if not tile:
            if not isinstance(images, torch.Tensor):
                raise ValueError("an image read by window is seen in tiles: tile must be > 0")
            return self._crops(self._resized(images, input_size), blocks)
        images, size = self._tiled_source(images, input_size)
        return self._block_windows(images, size, blocks, tile, halo)

    def _tiled_source(
        self, images: torch.Tensor | WindowSource, input_size: tuple[int, int] | None
    ) -> tuple[torch.Tensor | WindowSource, tuple[int, int]]:
        """The (resized) images and their ``(H, W)``, checked for seeing them in tiles."""
        if self.test_bn == "batch":
            raise ConfigError(
                "model.test_bn: batch normalises each tile by its own statistics, so tiles "
                "would disagree with each other; use model.test_bn: running or no tiles"
            )
        if isinstance(images, torch.Tensor):
            images = self._resized(images, input_size)
            size = (int(images.shape[-2]), int(images.shape[-1]))
        else:
            size = images.size
            if input_size is not None and tuple(input_size) != tuple(size):
                raise ValueError(
                    f"an image read by window is not resized: input_size {input_size} must "
                    f"be its size {size} or None"
                )
        return images, size

    def _crops(self, images: torch.Tensor, blocks: list[Tile]) -> Iterator[tuple[Tile, Any]]:
        whole = Box(0, 0, int(images.shape[-2]), int(images.shape[-1]))
        output = self._forward(images.to(self.device))
        for block in blocks:
            yield block, crop_output(output, whole, block.window)

    def _block_windows(
        self,
        images: torch.Tensor | WindowSource,
        size: tuple[int, int],
        blocks: list[Tile],
        tile: int,
        halo: int,
    ) -> Iterator[tuple[Tile, Any]]:
        image = Box(0, 0, *size)
        for block in blocks:
            top, left = block.window.top, block.window.left
            plan = []
            for t in plan_tiles(block.window.size, tile, 0):
                core = Box(
                    t.core.top + top, t.core.left + left, t.core.bottom + top, t.core.right + left
                )
                plan.append(Tile(t.row, t.col, core, core.grown(halo, image), halo))
            yield block, stitch_cores(self._windows(images, size, plan), size, box=block.window)

    def _windows(
        self, images: torch.Tensor | WindowSource, size: tuple[int, int], plan: list[Tile]
    ) -> Iterator[tuple[Tile, Any]]:
        for t in plan:
            if isinstance(images, torch.Tensor):
                rows, cols = t.window.slices()
                window = images[..., rows, cols]
            else:
                window = images.read(t.window)[None]
            crop = (t.window.top, t.window.left, *size) if self.takes_crop else None
            yield t, self._forward(window.to(self.device), crop)

    def _resized(self, images: torch.Tensor, input_size: tuple[int, int] | None) -> torch.Tensor:
        if input_size is None or tuple(images.shape[-2:]) == tuple(input_size):
            return images
        low, high = images.amin(), images.amax()
        return F.interpolate(
            images, size=input_size, mode="bilinear", antialias=True, align_corners=False
        ).clamp(low, high)  # the filter's weights are >= 0: only rounding leaves the range

    def _forward(self, images: torch.Tensor, crop: tuple[int, int, int, int] | None = None) -> Any:
        with inference_context(self.model), autocast(self.amp, self.device):
            output = self.model(images) if crop is None else self.model(images, crop=crop)
        return float32_outputs(output)


def _size(images: torch.Tensor, input_size: tuple[int, int] | None) -> tuple[int, int]:
    """``(H, W)`` the model sees: ``input_size``, or the images' own."""
    if input_size is not None:
        return (int(input_size[0]), int(input_size[1]))
    return (int(images.shape[-2]), int(images.shape[-1]))
