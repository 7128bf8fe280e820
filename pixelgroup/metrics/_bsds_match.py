"""The BSDS correspondence, solved exactly but organised for speed (private to ``boundary``).

:func:`thin` is :func:`skimage.morphology.thin` (same look-up tables, same parallel
sub-iterations, same result pixel for pixel) that only revisits pixels next to a deletion.

:class:`GroundTruthMatcher` holds one annotator map and matches any number of predictions to
it. The assignment is the one of ``correspond_pixels`` in ``boundary``: a pair within the radius
costs its distance x 100 (rounded), a pixel left unmatched costs ``outlier``, and the matching
minimises the total. The rows of the assignment are the smaller side, each with a private
outlier column: every full matching of that graph costs ``outlier x (rows left unmatched) +
distances``, the original objective up to a constant. Two exact solvers:

* ``_bsds_assign.cpp`` (compiled at first use, :mod:`pixelgroup._native`): successive shortest
  augmenting paths whose searches touch only the nodes they reach, on the whole graph at once;
* without a compiler, or with ``PIXELGROUP_NATIVE=0``: the candidate graph split into its
  connected components (the total is a sum over them). A component with a single prediction
  pixel or a single ground-truth pixel (a star) is matched in closed form: its centre takes the
  cheapest pair (any pair beats two outliers). The others go to
  :func:`scipy.sparse.csgraph.min_weight_full_bipartite_matching` (LAPJVsp), small ones several
  to a call: LAPJVsp spends time proportional to the number of columns on every augmentation,
  so solving components apart (rather than the whole image at once) is what makes it fast.

Both give a least-cost matching; where several matchings tie they may pick different ones.
"""

from __future__ import annotations

import ctypes
import math
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components, min_weight_full_bipartite_matching
from skimage.morphology._skeletonize import G123_LUT, G123P_LUT

from pixelgroup._native import compiled_library

COST_SCALE = 100  # the C++ matcher works on integer costs: distance x 100, rounded
_BATCH_NODES = 400  # components are packed into LAPJVsp calls of about this many nodes
_SOURCE = Path(__file__).with_name("_bsds_assign.cpp")

# neighbour weights of skimage's thin: [[8, 4, 2], [16, 0, 1], [32, 64, 128]]
_NEIGHBOUR_BITS = np.array([8, 4, 2, 16, 1, 32, 64, 128], dtype=np.uint8)


def disc_offsets(radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dy, dx, cost)`` of every offset within ``radius``; cost = rint(distance x 100)."""
    r = int(math.ceil(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    keep = dy**2 + dx**2 <= radius**2
    dy, dx = dy[keep], dx[keep]
    return dy, dx, np.rint(np.hypot(dy, dx) * COST_SCALE)


def outlier_penalty(radius: float, outlier_cost: float) -> float:
    """Integer cost of an unmatched pixel: ``outlier_cost`` radii, x 100, rounded up."""
    return float(math.ceil(outlier_cost * radius * COST_SCALE))


def thin(mask: np.ndarray) -> np.ndarray:
    """:func:`skimage.morphology.thin` of a ``(H, W)`` boolean map, same result, less work.

    skimage correlates the whole image with the neighbour mask twice per iteration until nothing
    changes. A pixel's fate in a sub-iteration depends only on its 8 neighbours, so it needs a new
    look only after a neighbour was deleted: each sub-iteration here evaluates the pixels whose
    neighbourhood changed since that sub-iteration's table last saw them (all border pixels at
    first). Deletions within a sub-iteration are still simultaneous.
    """
    mask = np.asarray(mask, dtype=bool)
    height, width = mask.shape
    stride = width + 2
    padded = np.zeros((height + 2, stride), dtype=np.uint8)
    padded[1:-1, 1:-1] = mask
    flat = padded.ravel()
    offsets = np.array(
        [-stride - 1, -stride, -stride + 1, -1, 1, stride - 1, stride, stride + 1], dtype=np.intp
    )
    fg = np.flatnonzero(flat)
    if len(fg) == 0:
        return mask.copy()
    border = fg[flat[fg[:, None] + offsets].min(axis=1) == 0]  # interior pixels never go first
    luts = (G123_LUT, G123P_LUT)
    pending = [border, border]  # pixels each sub-iteration's table has to look at
    queued = [np.zeros(flat.size, dtype=bool), np.zeros(flat.size, dtype=bool)]
    queued[0][border] = True
    queued[1][border] = True
    stamp = np.empty(flat.size, dtype=np.intp)
    idle, k = 0, 0
    while idle < 2:  # two sub-iterations in a row without deletion: converged
        look = pending[k]
        queued[k][look] = False
        pending[k] = look[:0]
        if len(look):
            codes = (flat[look[:, None] + offsets] * _NEIGHBOUR_BITS).sum(axis=1, dtype=np.intp)
            gone = look[luts[k][codes]]
        else:
            gone = look
        if len(gone):
            idle = 0
            flat[gone] = 0
            around = (gone[:, None] + offsets).ravel()
            around = around[flat[around] == 1]
            stamp[around] = np.arange(len(around))  # keep one copy of each (the last)
            around = around[stamp[around] == np.arange(len(around))]
            for j in (0, 1):
                fresh = around[~queued[j][around]]
                queued[j][fresh] = True
                kept = pending[j] if j == k else pending[j][flat[pending[j]] == 1]
                pending[j] = np.concatenate([kept, fresh])
        else:
            idle += 1
        k ^= 1
    return padded[1:-1, 1:-1].astype(bool)


def _declare(lib: ctypes.CDLL) -> None:
    """``pg_assign(n_rows, n_cols, indptr*, cols*, cost*, outlier, row_match*)``."""
    lib.pg_assign.argtypes = [ctypes.c_int64, ctypes.c_int64, *[ctypes.c_void_p] * 3]
    lib.pg_assign.argtypes += [ctypes.c_int64, ctypes.c_void_p]


def assignment_library() -> ctypes.CDLL | None:
    """The compiled solver (``pg_assign``), or None where it is disabled or cannot be built."""
    return compiled_library(
        _SOURCE,
        "the BSDS assignment solver",
        "the boundary benchmark solves with scipy's LAPJVsp (2-3.4x slower)",
        _declare,
    )


def _solve_native(
    lib: ctypes.CDLL,
    rows: np.ndarray,
    cols: np.ndarray,
    cost: np.ndarray,
    n_rows: int,
    n_cols: int,
    outlier: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Least-cost matching with a private outlier per row (``_bsds_assign.cpp``), ``rows``
    sorted: matched ``(rows, cols)``."""
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    cols = np.ascontiguousarray(cols, dtype=np.int64)
    cost = np.ascontiguousarray(cost, dtype=np.int64)
    match = np.empty(n_rows, dtype=np.int64)
    lib.pg_assign(
        n_rows,
        n_cols,
        indptr.ctypes.data,
        cols.ctypes.data,
        cost.ctypes.data,
        int(outlier),
        match.ctypes.data,
    )
    matched = np.flatnonzero(match >= 0)
    return matched, match[matched]


def _solve_lapjvsp(
    rows: np.ndarray, cols: np.ndarray, cost: np.ndarray, n_rows: int, n_cols: int, outlier: float
) -> tuple[np.ndarray, np.ndarray]:
    """Least-cost matching with a private outlier column per row: matched ``(rows, cols)``."""
    r = np.concatenate([rows, np.arange(n_rows)])
    c = np.concatenate([cols, n_cols + np.arange(n_rows)])
    # +1 keeps zero-distance pairs from being dropped as sparse zeros; every full matching has
    # n_rows pairs, so it adds the same to all
    w = np.concatenate([cost, np.full(n_rows, outlier)]) + 1.0
    graph = sp.csr_matrix((w, (r, c)), shape=(n_rows, n_cols + n_rows))
    row_ind, col_ind = min_weight_full_bipartite_matching(graph)
    real = col_ind < n_cols
    return row_ind[real], col_ind[real]


class GroundTruthMatcher:
    """One annotator's boundary map, ready to be matched against many predictions.

    Args:
        gt: ``(H, W)`` boolean boundary map.
        radius: matching radius in pixels.
        outlier_cost: cost of an unmatched pixel in units of the radius (the original's 100).

    :meth:`match` returns the flat indices of the matched pairs. Building costs one pass over
    the disc of offsets; it pays off across the T thresholds of a sweep.
    """

    def __init__(self, gt: np.ndarray, radius: float, outlier_cost: float = 100.0) -> None:
        gt = np.asarray(gt, dtype=bool)
        self.shape = gt.shape
        height, width = gt.shape
        dy, dx, self._cost = disc_offsets(radius)
        self.outlier = outlier_penalty(radius, outlier_cost)
        pad = int(math.ceil(radius))
        self._pad, self._stride = pad, width + 2 * pad
        gt_flat = np.flatnonzero(gt)
        self.num_gt = len(gt_flat)
        self._gt_flat = gt_flat
        # ground-truth id of every pixel of the padded image, -1 off the boundary
        ids = np.full((height + 2 * pad, width + 2 * pad), -1, dtype=np.int64)
        ids[pad : pad + height, pad : pad + width].flat[gt_flat] = np.arange(self.num_gt)
        self._ids = ids.ravel()
        self._offsets = (dy * self._stride + dx).astype(np.intp)
        # prediction pixels with at least one ground-truth pixel within the radius
        near = np.zeros(gt.shape, dtype=bool)
        ys, xs = np.divmod(gt_flat, width)
        for oy, ox in zip(dy, dx, strict=True):
            y, x = ys + oy, xs + ox
            inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
            near[y[inside], x[inside]] = True
        self._near = near.ravel()

    def _pairs(self, pred_flat: np.ndarray) -> tuple[np.ndarray, ...]:
        """``(pixels (n1,), row (E,), gt_id (E,), cost (E,))``: candidate pairs, row-major."""
        pixels = np.flatnonzero(pred_flat & self._near)
        width = self.shape[1]
        y, x = np.divmod(pixels, width)
        padded = (y + self._pad) * self._stride + (x + self._pad)
        partner = self._ids[padded[:, None] + self._offsets]
        row, off = np.nonzero(partner >= 0)
        return pixels, row, partner[row, off], self._cost[off]

    def match(self, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Least-cost matching of a boolean prediction (``(H, W)`` or flat) to this annotator.

        Returns:
            ``(pred_pixels, gt_pixels)``: flat indices of the matched pairs, aligned.
        """
        pred_flat = np.asarray(pred, dtype=bool).ravel()
        empty = np.zeros(0, dtype=np.intp)
        if self.num_gt == 0 or not pred_flat.any():
            return empty, empty
        pixels, row, gt_id, cost = self._pairs(pred_flat)
        if len(row) == 0:
            return empty, empty
        lib = assignment_library()
        if lib is None:
            p, g = self._match_by_components(row, gt_id, cost, len(pixels))
        elif len(pixels) <= self.num_gt:  # rows: the smaller side
            p, g = _solve_native(lib, row, gt_id, cost, len(pixels), self.num_gt, self.outlier)
        else:
            order = np.argsort(gt_id, kind="stable")
            g, p = _solve_native(
                lib, gt_id[order], row[order], cost[order], self.num_gt, len(pixels), self.outlier
            )
        return pixels[p], self._gt_flat[g]

    def _match_by_components(
        self, row: np.ndarray, gt_id: np.ndarray, cost: np.ndarray, n1: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """LAPJVsp per component of the candidate pairs ``(row, gt_id, cost)`` (``n1``
        prediction nodes): ``(prediction nodes, ground-truth ids)`` of the matched pairs."""
        n2 = self.num_gt
        counts = np.cumsum(np.bincount(row, minlength=n1))
        indptr = np.concatenate([[0], counts, np.full(n2, len(row))])
        graph = sp.csr_matrix(
            (np.ones(len(row), dtype=np.int8), n1 + gt_id, indptr), shape=(n1 + n2, n1 + n2)
        )
        n_comp, label = connected_components(graph, directed=False)
        n_pred = np.bincount(label[:n1], minlength=n_comp)
        n_gt = np.bincount(label[n1:], minlength=n_comp) * (n_pred > 0)
        comp = label[row]  # component of each pair
        star_comp = (n_pred == 1) | (n_gt == 1)
        star = star_comp[comp]
        # stars: the cheapest pair of each (first in row-major order on ties)
        s = np.flatnonzero(star)
        s = s[np.lexsort((cost[s], comp[s]))]
        first = np.ones(len(s), dtype=bool)
        first[1:] = comp[s][1:] != comp[s][:-1]
        s = s[first]
        out_pred, out_gt = [row[s]], [gt_id[s]]
        general = (n_pred > 1) & ~star_comp
        if general.any():
            p, g = self._solve_general(row, gt_id, cost, label, n_pred + n_gt, general, ~star)
            out_pred.append(p)
            out_gt.append(g)
        return np.concatenate(out_pred), np.concatenate(out_gt)

    def _solve_general(
        self,
        row: np.ndarray,
        gt_id: np.ndarray,
        cost: np.ndarray,
        label: np.ndarray,
        size: np.ndarray,
        general: np.ndarray,
        edges: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """LAPJVsp on the ``general`` components (sizes ``size``), several small ones to a call:
        consecutive components share a call until it holds about _BATCH_NODES nodes."""
        n1 = len(label) - self.num_gt
        call = np.cumsum(size * general) // _BATCH_NODES
        call = np.unique(call[general], return_inverse=True)[1]  # compact call ids
        call_of = np.full(len(size), -1, dtype=np.intp)
        call_of[general] = call
        n_calls = int(call.max()) + 1
        key = np.int16 if n_calls < 2**15 else np.int64  # small keys sort by radix
        # pred and ground-truth nodes numbered within their call
        p_nodes = np.flatnonzero(general[label[:n1]])
        g_nodes = np.flatnonzero(general[label[n1:]])
        p_call, g_call = call_of[label[p_nodes]], call_of[label[n1 + g_nodes]]
        p_order = np.argsort(p_call.astype(key), kind="stable")
        g_order = np.argsort(g_call.astype(key), kind="stable")
        p_count = np.bincount(p_call, minlength=n_calls)
        g_count = np.bincount(g_call, minlength=n_calls)
        p_start = np.concatenate([[0], np.cumsum(p_count)])
        g_start = np.concatenate([[0], np.cumsum(g_count)])
        local_p = np.empty(n1, dtype=np.intp)
        local_p[p_nodes[p_order]] = np.arange(len(p_nodes)) - p_start[p_call[p_order]]
        local_g = np.empty(self.num_gt, dtype=np.intp)
        local_g[g_nodes[g_order]] = np.arange(len(g_nodes)) - g_start[g_call[g_order]]
        e = np.flatnonzero(edges)
        e_call = call_of[label[row[e]]]
        e = e[np.argsort(e_call.astype(key), kind="stable")]
        e_start = np.concatenate([[0], np.cumsum(np.bincount(e_call, minlength=n_calls))])
        e_row, e_col, e_cost = local_p[row[e]], local_g[gt_id[e]], cost[e]
        out_p, out_g = [], []
        for c in range(n_calls):
            lo, hi = e_start[c], e_start[c + 1]
            n_p, n_g = int(p_count[c]), int(g_count[c])
            if n_p <= n_g:  # rows: the smaller side
                pl, gl = _solve_lapjvsp(
                    e_row[lo:hi], e_col[lo:hi], e_cost[lo:hi], n_p, n_g, self.outlier
                )
            else:
                gl, pl = _solve_lapjvsp(
                    e_col[lo:hi], e_row[lo:hi], e_cost[lo:hi], n_g, n_p, self.outlier
                )
            out_p.append(p_nodes[p_order[p_start[c] + pl]])
            out_g.append(g_nodes[g_order[g_start[c] + gl]])
        return np.concatenate(out_p), np.concatenate(out_g)
