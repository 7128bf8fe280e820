"""Tiles of an image larger than memory: a plan of cores and halos, and cores stitched back.

An ``(H, W)`` image is cut into a grid of **cores** of ``tile x tile`` pixels (the last row and
column smaller) that partition it; the model sees each core with a **halo** of ``halo`` pixels
on every side (clipped at the image border), its **window**, and only the core of its output is
kept. Where the halo covers the model's receptive field, the kept cores equal the whole-image
output (docs/large_images.md measures it per model). Corners and sizes are multiples of
:data:`TILE_MULTIPLE` so that every window starts on the pooling grid of the whole image.

Grouping has its own plan, :func:`plan_blocks`, which depends on the image's sizes alone (as
the model sees it and its own, where the blocks are labelled): an image of at most
:data:`GROUP_WHOLE_ABOVE` px a side is one block, a larger one blocks of :data:`GROUP_BLOCK`
px, each grouped over its core and a margin of :data:`GROUP_MARGIN` px (narrower for an image
seen more than 8 times smaller). Whatever tiles the model saw, the grouping sees the same
pixels: the labels of a tiled image are those of the image seen whole.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "Box",
    "Tile",
    "plan_tiles",
    "check_tile_sizes",
    "output_stride",
    "stitch_cores",
    "crop_output",
    "TILE_MULTIPLE",
    "plan_blocks",
    "GROUP_BLOCK",
    "GROUP_MARGIN",
    "GROUP_WHOLE_ABOVE",
    "GROUP_IMAGE_SIDE",
]

TILE_MULTIPLE = 16
"""``tile`` and ``halo`` are multiples of this: every window then starts on the grid of the
strided convolutions and poolings of the shipped models (U-Net depth <= 5, dense output
stride <= 16), so a window's features are the whole image's."""

GROUP_WHOLE_ABOVE = 1024
"""An image with a longer side is grouped in blocks (:func:`plan_blocks`); one at most this
long on every side is grouped whole (docs/large_images.md: a crowded 1024 x 1024 image
grouped whole peaks at about 1.5 GB)."""

GROUP_BLOCK = 512
"""Core side of the blocks a larger image is grouped in (:func:`plan_blocks`)."""

GROUP_MARGIN = 32
"""Pixels beyond its core that a block is grouped over (its region): neighbouring blocks
overlap by twice this, where their groups are joined
(:mod:`pixelgroup.postprocess.tiled_grouping`)."""

GROUP_IMAGE_SIDE = 8192
"""Longest side, in the pixels of the image, of a block of an image the model sees shrunk
(its groups are labelled at the image's resolution): :func:`plan_blocks` narrows the
blocks, margins and whole-image limit of an image seen more than 8 times smaller to it."""


@dataclass(frozen=True)
class Box:
    """Rows ``top:bottom`` and columns ``left:right`` of an image (pixels, end exclusive)."""

    top: int
    left: int
    bottom: int
    right: int

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)``."""
        return (self.bottom - self.top, self.right - self.left)

    def slices(self, stride: int = 1) -> tuple[slice, slice]:
        """The box on a map at ``stride`` (rounded outwards, as a strided output's cells)."""
        s = stride
        return (
            slice(self.top // s, -(-self.bottom // s)),
            slice(self.left // s, -(-self.right // s)),
        )

    def intersect(self, other: Box) -> Box | None:
        """The pixels both boxes cover, or None when they do not meet."""
        top, left = max(self.top, other.top), max(self.left, other.left)
        bottom, right = min(self.bottom, other.bottom), min(self.right, other.right)
        return Box(top, left, bottom, right) if top < bottom and left < right else None

    def grown(self, pixels: int, limit: Box) -> Box:
        """This box ``pixels`` larger on every side, clipped to ``limit``."""
        return Box(
            max(limit.top, self.top - pixels),
            max(limit.left, self.left - pixels),
            min(limit.bottom, self.bottom + pixels),
            min(limit.right, self.right + pixels),
        )

    def rescaled(self, size: tuple[int, int], new_size: tuple[int, int]) -> Box:
        """This box of an image of ``size = (H, W)`` on the image resized to ``new_size``:
        each edge rounded to the nearest pixel, so boxes that tile the image tile the resized
        image too.

        Example:
            >>> Box(0, 10, 20, 30).rescaled((40, 40), (100, 60))
            Box(top=0, left=15, bottom=50, right=45)
        """
        (h, w), (new_h, new_w) = size, new_size

        def edge(e: int, n: int, new_n: int) -> int:
            return (2 * e * new_n + n) // (2 * n)

        return Box(
            edge(self.top, h, new_h),
            edge(self.left, w, new_w),
            edge(self.bottom, h, new_h),
            edge(self.right, w, new_w),
        )

    def within(self, outer: Box) -> Box:
        """This box in the coordinates of ``outer`` (which contains it)."""
        return Box(
            self.top - outer.top,
            self.left - outer.left,
            self.bottom - outer.top,
            self.right - outer.left,
        )


@dataclass(frozen=True)
class Tile:
    """One tile: its ``core`` (the pixels whose output it gives) inside its ``window`` (core
    plus ``halo``, clipped at the border: what the model sees); ``row``, ``col`` in the grid."""

    row: int
    col: int
    core: Box
    window: Box
    halo: int

    @property
    def region(self) -> Box:
        """The core grown by half the halo (a multiple of 8), clipped at the window: the
        pixels a tile of its own is grouped over (:mod:`~pixelgroup.postprocess.
        tiled_grouping`); of a block of :func:`plan_blocks`, its window."""
        return self.core.grown(self.halo // 16 * 8, self.window)


def _check_multiple(value: object, name: str, minimum: int) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < minimum
        or value % TILE_MULTIPLE
    ):
        raise ValueError(
            f"{name} must be a multiple of {TILE_MULTIPLE} pixels >= {minimum}, got {value!r}"
        )
    return value


def check_tile_sizes(tile: object, halo: object, min_halo: int = 0) -> tuple[int, int]:
    """``(tile, halo)`` when ``tile`` (>= 16) and ``halo`` (>= ``min_halo``) are multiples of
    :data:`TILE_MULTIPLE`; else ``ValueError`` naming the one that is not. (Tiles grouped on
    their own meet only in their halos: joining them needs ``min_halo=16``.)"""
    return _check_multiple(tile, "tile", TILE_MULTIPLE), _check_multiple(halo, "halo", min_halo)


def plan_tiles(size: tuple[int, int], tile: int, halo: int) -> list[Tile]:
    """Tiles of an image of ``size = (H, W)`` in row-major order: cores of ``tile x tile``
    (the last row and column take what is left) that partition the image, each in a window
    ``halo`` pixels larger on every side, clipped at the border.

    Raises ``ValueError`` unless ``tile`` (>= 16) and ``halo`` (>= 0) are multiples of
    :data:`TILE_MULTIPLE`.

    Example:
        >>> [t.window for t in plan_tiles((40, 20), tile=32, halo=16)]
        [Box(top=0, left=0, bottom=40, right=20), Box(top=16, left=0, bottom=40, right=20)]
    """
    h, w = size
    tile, halo = check_tile_sizes(tile, halo)
    tiles = []
    for row, top in enumerate(range(0, h, tile)):
        for col, left in enumerate(range(0, w, tile)):
            core = Box(top, left, min(top + tile, h), min(left + tile, w))
            tiles.append(Tile(row, col, core, core.grown(halo, Box(0, 0, h, w)), halo))
    return tiles


def plan_blocks(
    size: tuple[int, int],
    *,
    block: int | None = None,
    margin: int | None = None,
    whole_above: int | None = None,
    image_size: tuple[int, int] | None = None,
) -> list[Tile]:
    """The blocks an image of ``size = (H, W)`` is grouped in, in row-major order: each a
    :class:`Tile` whose ``window`` is its region (the pixels it is grouped over, its core
    among them; ``region`` is the same box). One block, the whole image, when no side exceeds
    ``whole_above`` (default :data:`GROUP_WHOLE_ABOVE`); else cores of ``block`` px
    (:data:`GROUP_BLOCK`) grown by ``margin`` px (:data:`GROUP_MARGIN`), clipped at the
    border. The plan depends on the sizes alone, never on the tiles the model sees.

    ``size`` is the image as the model sees it; ``image_size`` (default ``size``) the image's
    own, at whose resolution the blocks are labelled. Seen much smaller (by default more than
    8 times), the three sides are narrowed (to multiples of 16, the block and the margin at
    least 16) so that a region spans at most about :data:`GROUP_IMAGE_SIDE` of the image's
    pixels, or 48 px of the seen image (a 100,000 px slide seen at 1,024 px: blocks of 48 px
    with margins of 16, 7,800 px of the slide, instead of one block of 10^10 labels).

    Raises ``ValueError`` unless ``block`` (>= 16) and ``margin`` (>= 0) are multiples of
    :data:`TILE_MULTIPLE`.

    Example:
        >>> [b.window for b in plan_blocks((40, 20), block=32, margin=16, whole_above=32)]
        [Box(top=0, left=0, bottom=40, right=20), Box(top=16, left=0, bottom=40, right=20)]
    """
    block, margin = check_tile_sizes(
        GROUP_BLOCK if block is None else block, GROUP_MARGIN if margin is None else margin
    )
    whole_above = GROUP_WHOLE_ABOVE if whole_above is None else whole_above
    shrink = (
        1.0 if image_size is None else max(n / m for n, m in zip(image_size, size, strict=True))
    )
    if shrink > 1.0:  # (the defaults fit up to 8 times; explicit sides are kept otherwise)
        seen_side = GROUP_IMAGE_SIDE / shrink  # model pixels
        whole_above = min(whole_above, int(seen_side))
        # a margin of 16 at least: neighbouring blocks overlap where their groups are joined
        margin = min(margin, max(16, int(seen_side / 4) // TILE_MULTIPLE * TILE_MULTIPLE))
        block = min(block, max(16, int(seen_side - 2 * margin) // TILE_MULTIPLE * TILE_MULTIPLE))
    image = Box(0, 0, *size)
    if max(size) <= whole_above:
        return [Tile(0, 0, image, image, 0)]
    return [
        dataclasses.replace(t, window=t.core.grown(margin, image))
        for t in plan_tiles(size, block, 2 * margin)
    ]


def output_stride(window: Box, map_size: tuple[int, int]) -> int:
    """The stride of an output map of ``map_size = (h, w)`` for ``window``: the smallest power
    of two up to :data:`TILE_MULTIPLE` with ``ceil(window side / stride)`` cells per side."""
    stride = 1
    while stride <= TILE_MULTIPLE:
        if all(-(-n // stride) == m for n, m in zip(window.size, map_size, strict=True)):
            return stride
        stride *= 2
    raise ValueError(
        f"an output of {map_size} cells for a window of {window.size} pixels has no stride "
        f"that divides {TILE_MULTIPLE}; such a model cannot be tiled"
    )


def stitch_cores(
    tiles: Iterable[tuple[Tile, Any]], size: tuple[int, int], box: Box | None = None
) -> Any:
    """The model outputs of each tile's window, cores pasted into one output of the image.

    ``tiles`` yields ``(tile, output)``: ``output`` a tensor ``(B, C, h, w)`` or a dataclass
    of them (e.g. :class:`~pixelgroup.models.EmbeddingOutput`; ``None`` fields stay None), at
    a stride ``s`` of the window (``h = ceil(window height / s)``). Returns the same type with
    maps of ``ceil(H / s) x ceil(W / s)`` for ``size = (H, W)``, or, given a ``box`` (its
    corner on the stride's grid) whose pixels the tiles' cores partition, the output of that
    box alone. Memory: the whole (box's) output.
    """
    box = Box(0, 0, *size) if box is None else box
    full: dict[str, torch.Tensor] = {}
    first: Any = None
    for tile, output in tiles:
        if first is None:
            first = output
        fields = _tensor_fields(output)
        for name, part in fields.items():
            stride = output_stride(tile.window, (int(part.shape[-2]), int(part.shape[-1])))
            if name not in full:
                rows, cols = Box(0, 0, *box.size).slices(stride)
                shape = (*part.shape[:-2], rows.stop, cols.stop)
                full[name] = part.new_empty(shape)
            core = tile.core.within(box).slices(stride)
            inside = tile.core.within(tile.window).slices(stride)
            full[name][..., core[0], core[1]] = part[..., inside[0], inside[1]]
    if first is None:
        raise ValueError("no tiles to stitch")
    if isinstance(first, torch.Tensor):
        return full[""]
    return dataclasses.replace(first, **full)


def crop_output(output: Any, window: Box, box: Box) -> Any:
    """The part of ``output`` (of :func:`stitch_cores`' kinds) of the pixels ``window`` that
    lie in ``box``, whose corner is on the output's stride grid."""
    fields = _tensor_fields(output)
    cropped = {}
    for name, part in fields.items():
        stride = output_stride(window, (int(part.shape[-2]), int(part.shape[-1])))
        rows, cols = box.within(window).slices(stride)
        cropped[name] = part[..., rows, cols]
    return (
        cropped[""] if isinstance(output, torch.Tensor) else dataclasses.replace(output, **cropped)
    )


def _tensor_fields(output: Any) -> dict[str, torch.Tensor]:
    """The tensor maps of an output: ``{"": output}`` for a tensor, else its dataclass fields
    that are tensors."""
    if isinstance(output, torch.Tensor):
        return {"": output}
    if not dataclasses.is_dataclass(output):
        raise TypeError(
            f"tiles are stitched for a tensor or a dataclass of tensors, got {type(output)}"
        )
    return {
        f.name: getattr(output, f.name)
        for f in dataclasses.fields(output)
        if isinstance(getattr(output, f.name), torch.Tensor)
    }
