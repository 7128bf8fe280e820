"""Instances of an image grouped tile by tile, joined across tiles in embedding space.

Each tile (:mod:`pixelgroup.postprocess.tiles`) is grouped on its own over its core grown by
half the halo, its **region** (:meth:`~pixelgroup.postprocess.tiles.Tile.region`: the outer
half of the halo is context for the model only, its output there lacks context itself), by
the caller, e.g. with :func:`~pixelgroup.postprocess.extract_instances`; every group of a tile
has a unit mean embedding, its centre. Two groups of tiles whose regions overlap are one
instance when

* their centres' cosine is at least ``1 - 2δ²`` (δ = ``bandwidth``: two views of one object
  are the same point on the sphere, up to the grouping's spread), **and**
* they share pixels in the overlap (the pixels both regions cover; at least ``min_shared``,
  half, of the smaller group's pixels there): a look-alike object elsewhere never joins, nor
  does a touching neighbour whose border the two tiles drew a pixel apart.

A union-find over all groups gives one global id per instance, and every pixel takes the
label its own tile (the one whose core holds it) gave it. An object that crosses two or four
tiles is seen whole in the halo of each, so its groups meet in the overlaps and come out as
one instance (tiles without a halo never overlap: nothing is joined). Unlike joining masks by
IoU in a strip (EmbedSeg, InstanSeg) or requiring every object to be smaller than the overlap
(StarDist), the decision is made where the grouping makes it: on the sphere.

Memory: the ``(H, W)`` label map (:func:`join_tiles`; none with :class:`TileJoiner`, whose
caller writes the labels tile by tile), plus the region labels of the tiles whose regions a
later tile can still overlap (about two rows of tiles); never the image's embedding.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from pixelgroup._checks import check_bandwidth
from pixelgroup.ops.labels import resize_labels
from pixelgroup.postprocess.tiles import Box

__all__ = ["TileGroups", "tile_groups", "join_tiles", "TileJoiner"]


@dataclass(frozen=True)
class TileGroups:
    """The groups of one tile's region.

    Attributes:
        core: the tile's core: the pixels it labels.
        region: the pixels it grouped (``labels`` covers them), the core among them.
        labels: ``(h, w)`` int64 in 0..K over the region, at image resolution.
        centers: ``(K + 1, D)`` unit mean embedding of each label (row 0: label 0's; zeros for
            a label without pixels).
        scores: ``(K + 1,)`` float32 compactness in [0, 1]: mean ``(1 + cos) / 2`` of the
            label's embeddings to its centre.
    """

    core: Box
    region: Box
    labels: torch.Tensor
    centers: torch.Tensor
    scores: torch.Tensor


def tile_groups(
    core: Box, region: Box, embedding: torch.Tensor, labels: torch.Tensor
) -> TileGroups:
    """Centres and scores of the labels ``(h, w)`` (0..K, over ``region`` at image
    resolution) of the region's unit embedding ``(D, h_e, w_e)`` (any stride: the labels are
    resized to it by nearest neighbour). Cost O(h_e·w_e·D)."""
    if tuple(labels.shape) != region.size:
        raise ValueError(
            f"labels must cover the tile's region {region.size} (H, W), got {tuple(labels.shape)}"
        )
    d = embedding.shape[0]
    grid = (int(embedding.shape[1]), int(embedding.shape[2]))
    small = resize_labels(labels[None], grid)[0].flatten().to(embedding.device)
    x = embedding.flatten(1).T.contiguous().float()  # (N, D): rows for the sums below
    num = int(labels.max()) + 1
    sums = x.new_zeros(num, d).index_add_(0, small, x)
    centers = sums / sums.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos = (x * centers[small]).sum(dim=1)
    count = torch.bincount(small, minlength=num).clamp_min(1)
    scores = 0.5 * (1.0 + x.new_zeros(num).index_add_(0, small, cos) / count)
    return TileGroups(core, region, labels.cpu(), centers.cpu(), scores.clamp(0.0, 1.0).cpu())


class _UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = []

    def add(self, count: int) -> None:
        self.parent.extend(range(len(self.parent), len(self.parent) + count))

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


class TileJoiner:
    """Joins the groups of tiles given one at a time (:func:`join_tiles` holds the label map;
    a caller writing labels tile by tile keeps only what :meth:`add` returns).

    Args: ``size``, ``bandwidth``, ``background_is_group``, ``min_shared`` as in
    :func:`join_tiles`.

    Memory: per group a few numbers, plus the region labels of the tiles a later tile's
    region can still overlap (about two rows of tiles); never a map of the image.
    """

    def __init__(
        self,
        size: tuple[int, int],
        *,
        bandwidth: float,
        background_is_group: bool = False,
        min_shared: float = 0.5,
    ) -> None:
        self.size = size
        self.cover = 1.0 - 2.0 * check_bandwidth(bandwidth) ** 2
        self.background_is_group = background_is_group
        self.min_shared = min_shared
        self._groups = _UnionFind()
        self._scores: list[torch.Tensor] = []
        self._areas: list[torch.Tensor] = []
        self._first_ids: list[int] = []  # the global id of each tile's label 0
        self._kept: list[tuple[int, TileGroups]] = []  # (id offset, groups) still overlappable

    def add(self, t: TileGroups) -> torch.Tensor:
        """Join ``t`` (the next tile of a row-major plan) with the tiles before it; returns
        ``(h, w)`` int64 its core's labels as group ids, which :meth:`instances` maps to
        instance ids."""
        offset = len(self._groups.parent)
        self._groups.add(len(t.centers))
        self._first_ids.append(offset)
        core = t.core.within(t.region).slices()
        self._areas.append(torch.bincount(t.labels[core].flatten(), minlength=len(t.centers)))
        self._scores.append(t.scores.float())
        self._kept = [(o, g) for o, g in self._kept if g.region.bottom > t.region.top]
        for other_offset, other in self._kept:
            overlap = t.region.intersect(other.region)
            if overlap is None:
                continue
            mine = t.labels[overlap.within(t.region).slices()].flatten()
            theirs = other.labels[overlap.within(other.region).slices()].flatten()
            pairs, shared = torch.unique(torch.stack([mine, theirs]), dim=1, return_counts=True)
            if not self.background_is_group:  # a tile's label 0 is background: joins nothing
                keep = (pairs[0] > 0) & (pairs[1] > 0)
                pairs, shared = pairs[:, keep], shared[keep]
            # pixels on which the tiles disagree (a border drawn a pixel apart) join nothing
            smaller = torch.minimum(_areas_in(mine, pairs[0]), _areas_in(theirs, pairs[1]))
            cos = (t.centers.float()[pairs[0]] * other.centers.float()[pairs[1]]).sum(dim=1)
            join = (cos >= self.cover) & (shared >= self.min_shared * smaller)
            for a, b in pairs[:, join].T.tolist():
                self._groups.union(offset + a, other_offset + b)
        self._kept.append((offset, t))
        return t.labels[core] + offset

    def instances(self) -> tuple[torch.Tensor, torch.Tensor]:
        """After the last tile: ``ids (G,)`` int64, the instance (0 background, 1..K, in
        order of their first tile) of each group id :meth:`add` returned, and ``scores
        (K,)`` float32, each instance's compactness (its groups' scores weighted by their
        areas)."""
        if not self._scores:
            raise ValueError("no tiles to join")
        return _relabel(
            self._groups,
            torch.cat(self._areas),
            torch.cat(self._scores),
            self._first_ids,
            self.background_is_group,
        )


def join_tiles(
    tiles: Iterable[TileGroups],
    size: tuple[int, int],
    *,
    bandwidth: float,
    background_is_group: bool = False,
    min_shared: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One ``(H, W)`` instance label map of an image of ``size`` from its tiles' groups.

    Args:
        tiles: the :class:`TileGroups` of every tile of a
            :func:`~pixelgroup.postprocess.tiles.plan_tiles` plan, in its (row-major) order:
            the cores partition the image.
        size: ``(H, W)`` of the image.
        bandwidth: δ of the grouping: groups of overlapping regions whose centres have a
            cosine >= ``1 - 2δ²`` and that share pixels in the overlap are one instance.
        background_is_group: False (a semantic head decided the background): label 0 of every
            tile is background and joins nothing. True (the background is the largest group,
            ``grouping.background: largest``): label 0 of a tile is a group like the others
            (a tile inside one large object calls it its largest group), and the largest
            instance of the image, by area, becomes the background.
        min_shared: two groups share pixels in the overlap when at least this fraction of
            the smaller one's overlap pixels are the other's: pixels the tiles give to
            different groups where two touching objects meet (a border drawn a pixel apart)
            never join those objects.

    Returns:
        ``labels (H, W)`` int64 (0 background, 1..K) and ``scores (K,)`` float32: each
        instance's compactness, its groups' scores weighted by their areas.

    Cost: O(H·W) for the labels plus, per pair of overlapping windows, O(overlap) to find the
    pairs of groups that meet there. :class:`TileJoiner` does the same without the map.

    Example:
        >>> from pixelgroup.postprocess.tiles import plan_tiles
        >>> a, b = plan_tiles((16, 32), tile=16, halo=16)
        >>> one = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # rows: label 0, label 1
        >>> ones = torch.ones(16, 32, dtype=torch.int64)  # each region: the whole image
        >>> groups = [TileGroups(t.core, t.window, ones, one, torch.ones(2)) for t in (a, b)]
        >>> join_tiles(groups, (16, 32), bandwidth=0.1)[0].unique().tolist()
        [1]
    """
    joiner = TileJoiner(
        size, bandwidth=bandwidth, background_is_group=background_is_group, min_shared=min_shared
    )
    labels = torch.zeros(size, dtype=torch.int64)
    for t in tiles:
        labels[t.core.slices()] = joiner.add(t)
    ids, scores = joiner.instances()
    return ids[labels], scores


def _areas_in(ids: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
    """``(P,)`` pixel count in ``ids`` (the overlap's labels) of each id of ``which``."""
    values, counts = torch.unique(ids, return_counts=True)
    return counts[torch.searchsorted(values, which.contiguous())]


def _relabel(
    groups: _UnionFind,
    areas: torch.Tensor,
    scores: torch.Tensor,
    first_ids: list[int],
    background_is_group: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Global ids -> instances 1..K (in order of their first tile), background 0, and each
    instance's area-weighted score."""
    root = torch.tensor([groups.find(i) for i in range(len(groups.parent))], dtype=torch.int64)
    weight = areas.double()
    area = torch.zeros(len(root), dtype=torch.float64).index_add_(0, root, weight)
    mass = torch.zeros(len(root), dtype=torch.float64).index_add_(0, root, weight * scores)
    present = area > 0
    if background_is_group:
        present[int(torch.argmax(area))] = False
    else:
        present[torch.tensor(first_ids)] = False  # roots of background ids are themselves
    instance = torch.zeros(len(root), dtype=torch.int64)
    roots = torch.nonzero(present).flatten()
    instance[roots] = torch.arange(1, len(roots) + 1)
    return instance[root], (mass[roots] / area[roots]).float()
