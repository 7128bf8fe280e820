"""Class-agnostic instances of one embedding map: groups, background, label map at any size."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

from pixelgroup._checks import check_count, check_rank, check_size, check_tensor
from pixelgroup.errors import InputError
from pixelgroup.ops.labels import resize_labels
from pixelgroup.ops.sphere import pool_to_sphere
from pixelgroup.postprocess.grouping import group_pixels

__all__ = ["extract_instances", "connected_parts", "UPSAMPLE_MODES"]

UPSAMPLE_MODES = ("centers", "nearest")
"""How :func:`extract_instances` brings groups to a finer label map (see there)."""

_CHUNK = 1 << 22  # elements of one block of resized embedding rows (16 MB in float32)
_SCORES = 1 << 20  # pixel-centre scores of one matrix product (4 MB in float32)


def _sources(n_out: int, n_in: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Of each of ``n_out`` samples bilinearly resized from ``n_in`` (``align_corners=False``,
    as ``F.interpolate``): its two source samples and the second one's weight, ``(n_out,)``
    each."""
    src = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5).clamp(min=0)
    first = src.floor().long().clamp(max=n_in - 1)
    return first, (first + 1).clamp(max=n_in - 1), src - first


def _rows(
    rows_of: Callable[[int, int], torch.Tensor],
    grid: tuple[int, int],
    size: tuple[int, int],
    step: int,
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Maps of ``grid = (h, w)``, given by their rows (``rows_of(lo, hi)``: rows ``lo:hi``,
    ``(C, hi - lo, w)``), bilinearly resized to ``size = (H, W)`` (``align_corners=False``,
    as ``F.interpolate``: the rows by :func:`_sources`), ``step`` rows at a time: ``(y0, y1,
    (C, y1 - y0, W))``. Only the rows each block needs are asked for: memory O(C·W·step)
    instead of O(C·H·W)."""
    rows0, rows1, down = _sources(size[0], grid[0])
    for y0 in range(0, size[0], step):
        y1 = min(size[0], y0 + step)
        lo, hi = int(rows0[y0]), int(rows1[y1 - 1])
        part = rows_of(lo, hi + 1)
        device, dtype = part.device, part.dtype
        top, bottom = (
            part[:, (rows0[y0:y1] - lo).to(device)],
            part[:, (rows1[y0:y1] - lo).to(device)],
        )
        mixed = top + down[y0:y1].to(device, dtype)[None, :, None] * (bottom - top)
        if grid[1] != size[1]:  # along W only: the rows keep their count
            mixed = F.interpolate(mixed[None], size=(y1 - y0, size[1]), mode="bilinear")[0]
        yield y0, y1, mixed


def _assign_to_centers(
    centers: torch.Tensor,
    embedding: torch.Tensor,
    foreground: torch.Tensor | None,
    size: tuple[int, int],
    allowed: torch.Tensor,
) -> torch.Tensor:
    """``(H, W)`` group of each pixel of ``size``: the allowed one of the ``(K, D)`` centres
    nearest in cosine to ``embedding (D, h, w)`` (the K cosine maps bilinearly resized to
    ``size`` when ``(h, w)`` differs; 0 everywhere when none is allowed), or -1 where the
    (resized) ``foreground (h, w)`` probability is <= 0.5.

    A cosine is linear in the embedding, so the resized cosine maps are the cosines of the
    resized (unnormalised) embedding: its D channels are resized (:func:`_rows`), never the K
    maps. And a pixel's cosines are convex combinations of its (up to) four source cells': where
    those share their nearest centre, so does the pixel, and only the other pixels (along the
    groups' borders) are scored. Memory O(K) per chunk of pixels, never O(K·H·W) (a crowded
    image has thousands of groups)."""
    d = int(centers.shape[1])
    keep = allowed.nonzero().squeeze(1)
    chosen = centers[keep].to(embedding.dtype)
    span = max(1, _SCORES // max(1, len(keep)))

    def nearest(pixels: torch.Tensor) -> torch.Tensor:  # (D, n) -> (n,) centre indices
        out = torch.zeros(pixels.shape[1], dtype=torch.int64, device=pixels.device)
        for i in range(0, pixels.shape[1] if len(keep) else 0, span):
            # (pixels, K') scores, small enough to stay in cache for the argmax (none: 0)
            out[i : i + span] = keep[torch.mm(pixels[:, i : i + span].T, chosen.T).argmax(1)]
        return out

    def rows_of(lo: int, hi: int) -> torch.Tensor:  # (D (+ 1: the foreground), hi - lo, w)
        part = embedding[:, lo:hi]
        return part if foreground is None else torch.cat([part, foreground[None, lo:hi]])

    grid = (int(embedding.shape[1]), int(embedding.shape[2]))
    step = max(1, _CHUNK // ((d + 1) * size[1]))
    out = torch.empty(size, dtype=torch.int64, device=embedding.device)
    if grid == tuple(size):
        for y0 in range(0, size[0], step):
            y1 = min(size[0], y0 + step)
            block = rows_of(y0, y1)
            out[y0:y1] = nearest(block[:d].reshape(d, -1)).view(y1 - y0, -1)
            if foreground is not None:
                out[y0:y1].masked_fill_(block[d] <= 0.5, -1)
        return out
    cells = nearest(embedding.reshape(d, -1)).view(grid)
    rows0, rows1, _ = _sources(size[0], grid[0])
    cols0, cols1, _ = _sources(size[1], grid[1])
    cols0, cols1 = cols0.to(cells.device), cols1.to(cells.device)
    for y0, y1, block in _rows(rows_of, grid, size, step):
        above, below = cells[rows0[y0:y1].to(cells.device)], cells[rows1[y0:y1].to(cells.device)]
        group = above[:, cols0]
        unsure = (group != above[:, cols1]) | (group != below[:, cols0])
        unsure |= group != below[:, cols1]
        group[unsure] = nearest(block[:d][:, unsure])
        out[y0:y1] = group
        if foreground is not None:
            out[y0:y1].masked_fill_(block[d] <= 0.5, -1)
    return out


def extract_instances(
    embedding: torch.Tensor,
    *,
    bandwidth: float = 0.1,
    num_iters: int = 10,
    threshold: float | None = None,
    min_area: int = 16,
    stride: int = 1,
    max_points: int | None = 1024,
    image_size: tuple[int, int] | None = None,
    foreground: torch.Tensor | None = None,
    upsample: str = "centers",
    split_components: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One ``(D, h, w)`` unit embedding -> ``labels (H, W)`` int64 and ``scores (K,)``.

    Groups come from :func:`~pixelgroup.postprocess.group_pixels` (``bandwidth`` δ,
    ``num_iters`` T, ``threshold``, ``max_points``). With ``stride`` s > 1 the grouping runs on
    the s x s average-pooled (re-normalised) embedding, s² times fewer points for the quadratic
    mean shift. The label map has ``image_size = (H, W)`` (default ``(h, w)``: a dense model's
    stride-4 or stride-8 embedding gives labels at the image's resolution this way). Where the
    grouping's resolution differs from ``(H, W)``, ``upsample`` brings the groups there:

    * ``"centers"`` (default): every ``(H, W)`` pixel takes the group whose centre is nearest
      in cosine to its embedding bilinearly resized to ``(H, W)`` (its normalisation does not
      change the nearest centre: its D channels are resized in blocks of rows, and only the
      pixels whose four source cells disagree on their nearest centre are scored); groups
      left with fewer than ``min_area`` pixels hand theirs to the next-nearest group.
      Boundaries follow the embedding at sub-stride precision.
    * ``"nearest"``: the grouping's label map is resized by nearest neighbour (blocky
      boundaries, s-pixel steps; no extra cost).

    ``min_area`` counts pixels of the ``(H, W)`` map (scaled to the grouping's resolution).

    Background is label 0: by default the largest group (the toy's background, like most
    instance data's, is one group bigger than any instance). Given ``foreground``, an
    ``(h, w)`` probability (or bool mask) of foreground from a semantic head, the pixels where
    it is <= 0.5 are background and only the others are grouped (bilinearly resized with the
    embedding for ``"centers"``): crowded images, where an instance may outgrow
    the background, stay right. Labels 1..K are the instances and ``scores[k - 1]`` is
    instance k's compactness score (mean ``(1 + cos)/2`` to its centre).

    ``split_components``: every instance is split into its 4-connected components (regions of
    one group that do not touch are different objects: an embedding is only taught to
    separate the objects seen together in a training crop, so two far-apart objects may share
    a mode), each keeping its group's score; components smaller than ``min_area`` become
    background.

    Cost: :func:`group_pixels` on ``(h/s)·(w/s)`` points, plus for ``"centers"`` (K groups)
    O(h·w·K + H·W·D) and O(K) per pixel along the groups' borders, with O(K) memory per chunk
    of pixels.

    Example:
        >>> emb = torch.zeros(3, 8, 8); emb[0] = 1; emb[0, :2, :2] = 0; emb[1, :2, :2] = 1
        >>> labels, scores = extract_instances(emb, num_iters=0, min_area=1)
        >>> labels.unique().tolist(), scores.shape
        ([0, 1], torch.Size([1]))
        >>> extract_instances(emb, num_iters=0, min_area=1, image_size=(32, 30))[0].shape
        torch.Size([32, 30])
    """
    stride = check_count(stride, "stride")
    if upsample not in UPSAMPLE_MODES:
        raise InputError(f"upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")
    embedding = check_tensor(embedding, "embedding")
    check_rank(embedding, (3,), "embedding", "(D, H, W)")
    h, w = int(embedding.shape[1]), int(embedding.shape[2])
    size = (h, w) if image_size is None else check_size(image_size)
    fg = None
    if foreground is not None:
        foreground = check_tensor(foreground, "foreground")
        if tuple(foreground.shape) != (h, w):
            raise InputError(
                f"foreground must be (H, W) = {(h, w)} like the embedding, "
                f"got {tuple(foreground.shape)}"
            )
        fg = foreground.to(embedding.device, embedding.dtype).clamp(0.0, 1.0)

    small, small_fg = embedding, fg
    if stride > 1:
        small = pool_to_sphere(embedding[None], stride)[0]
        if fg is not None:
            small_fg = F.avg_pool2d(fg[None, None], stride, ceil_mode=True)[0, 0]
    grid = (int(small.shape[1]), int(small.shape[2]))
    scale = grid[0] * grid[1] / (size[0] * size[1])
    grouping = group_pixels(
        small,
        bandwidth=bandwidth,
        num_iters=num_iters,
        threshold=threshold,
        min_area=max(1, round(min_area * scale)),
        semantic_mask=None if small_fg is None else small_fg > 0.5,
        max_points=max_points,
    )
    num = len(grouping.scores)
    # the background group: the largest without a foreground map, the non-foreground else
    background = 0 if fg is None else grouping.background
    labels = grouping.labels
    if grid != size and upsample == "nearest":
        labels = resize_labels(labels[None], size)[0]
    elif grid != size or stride > 1:
        allowed = torch.ones(num, dtype=torch.bool, device=labels.device)
        if fg is not None and background is not None:
            allowed[background] = False
        if bool(allowed.any()):
            centers = grouping.centers.to(embedding.dtype)
            labels = _assign_to_centers(centers, embedding, fg, size, allowed)
            # groups of blended pixels (at instance borders) may win only a few pixels:
            # those join their next-nearest group
            area = torch.bincount(labels.flatten() + 1, minlength=num + 1)[1:]
            tiny = allowed & (area < min_area)
            if bool(tiny.any()) and bool((allowed & ~tiny).any()):
                labels = _assign_to_centers(centers, embedding, fg, size, allowed & ~tiny)
        else:  # nothing but background
            labels = torch.full(size, -1, dtype=torch.int64, device=labels.device)
    # background (and "not foreground", -1) -> 0; the instance groups present -> 1..K
    remap = torch.zeros(num + 1, dtype=torch.int64, device=labels.device)
    present = torch.bincount(labels.flatten() + 1, minlength=num + 1) > 0
    present[0] = False
    if background is not None:
        present[background + 1] = False
    ids = torch.nonzero(present).flatten()
    remap[ids] = torch.arange(1, len(ids) + 1, device=labels.device)
    labels, scores = remap[labels + 1], grouping.scores[(ids - 1).to(grouping.scores.device)]
    return connected_parts(labels, scores, min_area) if split_components else (labels, scores)


def connected_parts(
    labels: torch.Tensor, scores: torch.Tensor, min_area: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``labels (H, W)`` or ``(Z, Y, X)`` (0 background, instances 1..K with ``scores (K,)``)
    with each instance's 4- (6-) connected components as instances 1..K' (those under
    ``min_area`` pixels or voxels: background) and their parents' ``scores (K',)``."""
    from skimage.measure import label as connected

    parts = torch.from_numpy(connected(labels.cpu().numpy(), background=0, connectivity=1))
    parts = parts.to(labels.device, torch.int64)
    area = torch.bincount(parts.flatten())
    keep = area >= min_area
    keep[0] = False
    parent = torch.zeros(len(area), dtype=torch.int64, device=labels.device)
    parent[parts.flatten()] = labels.flatten()
    remap = torch.zeros(len(area), dtype=torch.int64, device=labels.device)
    remap[keep] = torch.arange(1, int(keep.sum()) + 1, device=labels.device)
    return remap[parts], scores[(parent[keep] - 1).to(scores.device)]
