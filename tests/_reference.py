"""Slow, obviously correct oracles for the fast ops (float64, explicit loops), the float64
log-sum-exp GBMS reference with its error bounds, and a peak allocation probe."""

from __future__ import annotations

import math

import torch


def gbms_step_reference(x: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """The GBMS loop of docs/method.md column by column: q_j = 1/(sum_i G_ij),
    Y_j = sum_i G_ij q_j x_i."""
    out = torch.empty_like(x)
    for b in range(x.shape[0]):
        pts = x[b]
        for j in range(pts.shape[0]):
            g = torch.exp((pts @ pts[j] - 1.0) / bandwidth**2)
            y = (g[:, None] * pts).sum(0) / g.sum()
            out[b, j] = y / (y.norm() + 1e-5)
    return out


def pair_loss_reference(x, y, margin, pos_weight=1.0, neg_weight=1.0, kind="linear"):
    """Double loop over all ordered pixel pairs of one image ``x (N, D)``, ``y (N,)``."""
    y = y.tolist()
    counts = {k: y.count(k) for k in set(y)}
    big_k = len(counts)
    pos = neg = x.new_zeros(())
    for i in range(len(y)):
        for j in range(len(y)):
            w = 1.0 / (counts[y[i]] * counts[y[j]] * big_k**2)
            cos = x[i] @ x[j]
            s = (1 + cos) / 2
            if kind == "logistic":
                p = (cos + 1.1) / 2.2
                cost_pos, cost_neg = -torch.log(p), -torch.log(1 - p)
            else:
                power = 1 if kind == "linear" else 2
                cost_pos, cost_neg = (1 - s) ** power, torch.clamp(s - margin, min=0) ** power
            if y[i] == y[j]:
                pos = pos + w * cost_pos
            else:
                neg = neg + w * cost_neg
    return pos, neg, pos_weight * pos + neg_weight * neg


def random_sphere(*shape: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(*shape, generator=g, dtype=dtype)
    return z / z.norm(dim=-1, keepdim=True)


def clustered_sphere(num_clusters, per_cluster, dim, spread, seed=0, dtype=torch.float64):
    """``(1, K*n, D)`` points around K random centres and their ``(1, K*n)`` labels."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_clusters, dim, generator=g, dtype=dtype)
    centers = centers / centers.norm(dim=-1, keepdim=True)
    labels = torch.arange(num_clusters).repeat_interleave(per_cluster)
    pts = centers[labels] + spread * torch.randn(len(labels), dim, generator=g, dtype=dtype)
    return (pts / pts.norm(dim=-1, keepdim=True))[None], labels[None]


def peak_cpu_bytes(fn) -> int:
    """Peak of live CPU allocations made inside ``fn`` (torch.profiler memory events)."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=activities, profile_memory=True) as prof:
        fn()
    changes = sorted(
        (
            e.time_range.start,
            e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage,
        )
        for e in prof.events()
    )
    live = peak = 0
    for _, change in changes:
        live += change
        peak = max(peak, live)
    return peak


# Unit roundoff u of each dtype (half the spacing of the floats in [1, 2)).
UNIT_ROUNDOFF = {
    torch.float64: 2.0**-53,
    torch.float32: 2.0**-24,
    torch.bfloat16: 2.0**-8,
    torch.float16: 2.0**-11,
}


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the GBMS implementations form their logits in: float64 stays, the rest
    (float32 and the half types) use float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def gbms_blur_lse(
    x: torch.Tensor, bandwidth: float, log_weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The GBMS blur in float64 with each row's own largest logit subtracted (log-sum-exp).

    For rows ``x (B, N, D)`` (any norms) and optional key log-weights ``(B, N)``, the logits
    are ``l_ij = x_i·x_j/δ² + log w_j``. Returns ``(y, p, log_density)``: the weighted means
    ``y_i = Σ_j p_ij x_j`` ``(B, N, D)``, the weights ``p_ij = exp(l_ij − m_i) / Σ_k exp(l_ik −
    m_i)`` with ``m_i = max_j l_ij`` ``(B, N, N)``, and ``log Σ_j w_j exp((x_i·x_j − 1)/δ²)``
    ``(B, N)``. Differentiable.
    """
    x = x.double()
    logits = (x @ x.transpose(-1, -2)) / bandwidth**2
    if log_weights is not None:
        logits = logits + log_weights.double()[..., None, :]
    row_max = logits.amax(dim=-1, keepdim=True).detach()
    kernel = torch.exp(logits - row_max)
    total = kernel.sum(dim=-1, keepdim=True)
    p = kernel / total
    log_density = (row_max + total.log())[..., 0] - 1.0 / bandwidth**2
    return p @ x, p, log_density


def gbms_step_lse(
    x: torch.Tensor, bandwidth: float, log_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """One GBMS step in float64: :func:`gbms_blur_lse` then ``y / (|y| + 1e-5)``."""
    y = gbms_blur_lse(x, bandwidth, log_weights)[0]
    return y / (y.norm(dim=-1, keepdim=True) + 1e-5)


def gbms_logit_error(x: torch.Tensor, bandwidth: float, dtype: torch.dtype, log_weights=None):
    """ε: a bound on how far an implementation's logit (relative to its row) can be from this
    reference's. A logit is a dot product of D terms plus a shift column, scaled, exponentiated
    and divided; each operation has relative error <= u, so for rows of norm <= M the error is
    at most κ·(D + 8)·M²·u, for the implementation's compute dtype and for float64 (the
    reference's own error). Log-weights add u·|log w|."""
    u = UNIT_ROUNDOFF[compute_dtype(dtype)] + UNIT_ROUNDOFF[torch.float64]
    big_m2 = float(x.detach().double().norm(dim=-1).max()) ** 2
    eps = (x.shape[-1] + 8) * big_m2 * u / bandwidth**2
    if log_weights is not None:
        eps += 2 * u * float(log_weights.double().abs().max())
    return eps


def gbms_step_tolerance(
    x: torch.Tensor, bandwidth: float, dtype: torch.dtype, log_weights=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row bounds ``(B, N)`` on the 2-norm error of one GBMS step computed from the rows
    ``x`` in ``compute_dtype(dtype)`` with its output rounded to ``dtype``, against
    :func:`gbms_step_lse`; also the bound on the blur ``|Δy_i|`` before re-projection.

    * Logits off by at most ε (:func:`gbms_logit_error`) give weights within a factor
      ``e^{±2ε}``, so ``|Δy_i| = |Σ_j (p'_ij − p_ij)(x_j − y_i)| <= (e^{2ε} − 1)·s_i`` with
      ``s_i = Σ_j p_ij |x_j − y_i|`` (formed in log space: a weight below float64's range
      still counts once e^{2ε} is large; never above 4.2, twice the largest distance);
      summing N products adds ``(N + D + 4)·u·M`` (u of the compute dtype), and rounding
      ``y`` to ``dtype`` adds ``u_out·|y_i|``.
    * ``y ↦ y / (|y| + 1e-5)`` turns ``|Δy_i|`` into at most
      ``2|Δy_i| / (max(|y_i| − |Δy_i|, 0) + 1e-5)``; the division and the norm add
      ``(D + 4)·u`` and rounding the result to ``dtype`` ``2·u_out``.

    Capped at 2.1 (two rows of norm <= 1 are never further apart, whatever the weights).
    """
    xd = x.detach().double()
    y, _, _ = gbms_blur_lse(xd, bandwidth, log_weights)
    eps = gbms_logit_error(x, bandwidth, dtype, log_weights)
    u_c, u_out = UNIT_ROUNDOFF[compute_dtype(dtype)], UNIT_ROUNDOFF[dtype]
    u_out = 0.0 if dtype == compute_dtype(dtype) else u_out
    big_m = float(xd.norm(dim=-1).max())
    n, d = x.shape[-2], x.shape[-1]
    # log s_i = logsumexp_j(log p_ij + log|x_j − y_i|): weights far below float64's range
    # still count, since a logit error of ε can raise them by e^{2ε}
    logits = (xd @ xd.transpose(-1, -2)) / bandwidth**2
    if log_weights is not None:
        logits = logits + log_weights.double()[..., None, :]
    log_p = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    log_spread = torch.logsumexp(log_p + torch.cdist(y, xd).log(), dim=-1)
    log_growth = math.log(math.expm1(2 * eps)) if 0 < eps < 300 else 2 * eps or -math.inf
    weight_part = torch.exp((log_growth + log_spread).clamp_max(math.log(4.2)))
    y_norm = y.norm(dim=-1)
    blur = weight_part + (n + d + 4) * u_c * big_m + u_out * y_norm
    step = 2 * blur / ((y_norm - blur).clamp_min(0) + 1e-5) + (d + 4) * u_c + 2 * u_out
    return step.clamp_max(2.1), blur


def gbms_grad_tolerance(
    x: torch.Tensor, bandwidth: float, dtype: torch.dtype, out_grad: torch.Tensor
) -> float | None:
    """A bound on the largest entry error of ``∂<out_grad, step(x)>/∂x`` computed in ``dtype``
    (float32 or float64) against the reference's autograd gradient, or ``None`` where the
    first-order argument below does not hold (2ε > 0.05 or a re-projection that amplifies the
    blur error by more than 5 %).

    With ``dY_i`` the gradient reaching the blur (re-projection Jacobian of ``out_grad``),
    ``∂/∂x_k = Σ_i p_ik dY_i + κ Σ_j (dA_kj + dA_jk) x_j`` with ``dA_ij = p_ij dY_i·(x_j −
    y_i)``, linear in dY. Every summand carries one weight (relative error <= e^{2ε} − 1) and
    is summed with error <= (N + D + 8)·u, so the error is at most that relative error times
    ``G_k(|dY|) = Σ_i p_ik|dY_i| + κ Σ_j (p_kj |dY_k| + p_jk |dY_j|)|x_j − y|·|x_j|``, plus
    ``G_k(|ΔdY|)`` for the rounding of the re-projection's vector-Jacobian product (a
    difference of terms of size ``|w_i| / (|y_i| + 1e-5)``: ``|ΔdY_i| <= 2(D + 8)·u·|w_i| /
    (|y_i| + 1e-5)``) and for the blur error's effect on that Jacobian (relative
    ``4|Δy_i| / (|y_i| + 1e-5)``), plus the rounding of ``dY_i·x_j − dY_i·y_i`` (κ·(D + 8)·u·M²
    per unit weight), plus the blur error's effect on ``x_j − y_i``
    (``2κ·max|dY|·max|Δy|·M``). A factor 4 of safety.
    """
    eps = gbms_logit_error(x, bandwidth, dtype)
    _, blur_tol = gbms_step_tolerance(x, bandwidth, dtype)
    xd = x.detach().double()
    y, p, _ = gbms_blur_lse(xd, bandwidth)
    y_norm = y.norm(dim=-1)
    amplify = 4 * blur_tol / (y_norm + 1e-5)
    if 2 * eps > 0.05 or float(amplify.max()) > 0.05:
        return None
    yv = y.detach().requires_grad_()
    out = yv / (yv.norm(dim=-1, keepdim=True) + 1e-5)
    (dy,) = torch.autograd.grad(out, yv, out_grad.double())
    dy_norm = dy.norm(dim=-1)  # (B, N)
    kappa = 1.0 / bandwidth**2
    u = UNIT_ROUNDOFF[compute_dtype(dtype)]
    n, d = x.shape[-2], x.shape[-1]
    big_m = float(xd.norm(dim=-1).max())
    dist = torch.cdist(y, xd)  # |x_j − y_i| at [i, j]
    spread = (p * dist).sum(dim=-1)

    def magnitudes(dyn: torch.Tensor) -> torch.Tensor:  # G_k for per-row |dY| (B, N)
        values_path = (p * dyn[..., :, None]).sum(dim=-2)  # Σ_i p_ik |dY_i|
        own = kappa * dyn * spread * big_m
        other = kappa * (p * dist * dyn[..., :, None]).sum(dim=-2) * big_m
        return values_path + own + other

    rel = math.expm1(2 * eps) + (n + d + 8) * u
    dy_err = 2 * (d + 8) * u * out_grad.double().norm(dim=-1) / (y_norm + 1e-5)
    dy_err = dy_err + amplify * dy_norm
    moved = 2 * kappa * float(dy_norm.max()) * float(blur_tol.max()) * big_m
    # dY_i·x_j − dY_i·y_i is formed as a difference of two terms of size |dY_i|·M
    values_path = (p * dy_norm[..., :, None]).sum(dim=-2)
    cancel = kappa * (d + 8) * u * big_m**2 * (dy_norm + values_path)
    bound = rel * magnitudes(dy_norm) + magnitudes(dy_err) + cancel
    return 4 * (float(bound.max()) + moved)


def correspond_pixels_reference(pred, gt, max_dist=0.0075, outlier_cost=100.0):
    """The BSDS correspondence as first written (one LAPJVsp call on the whole image, square
    graph of pixels and their outlier twins): ``(matched_pred, matched_gt, cost)``, ``cost`` the
    summed rint(distance x 100) of the matched pairs."""
    import numpy as np
    import scipy.sparse as sp
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    height, width = pred.shape
    radius = max_dist * math.hypot(height, width)
    r = int(math.ceil(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    keep = dy**2 + dx**2 <= radius**2
    dy, dx = dy[keep], dx[keep]
    cost = np.rint(np.hypot(dy, dx) * 100)
    matched_pred = np.zeros(pred.shape, dtype=bool)
    matched_gt = np.zeros(pred.shape, dtype=bool)
    y1, x1 = np.nonzero(pred)
    y2, x2 = np.nonzero(gt)
    if len(y1) == 0 or len(y2) == 0:
        return matched_pred, matched_gt, 0.0
    gt_id = np.full(pred.shape, -1, dtype=np.int64)
    gt_id[y2, x2] = np.arange(len(y2))
    ys, xs = y1[:, None] + dy, x1[:, None] + dx
    inside = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
    partner = np.where(inside, gt_id[ys.clip(0, height - 1), xs.clip(0, width - 1)], -1)
    pi, oi = np.nonzero(partner >= 0)
    if len(pi) == 0:
        return matched_pred, matched_gt, 0.0
    nodes1, ei = np.unique(pi, return_inverse=True)
    nodes2, ej = np.unique(partner[pi, oi], return_inverse=True)
    n1, n2 = len(nodes1), len(nodes2)
    outlier = math.ceil(outlier_cost * radius * 100)
    e = len(ei)
    rows = np.concatenate([ei, np.arange(n1), n1 + np.arange(n2), n1 + ej])
    cols = np.concatenate([ej, n2 + np.arange(n1), np.arange(n2), n2 + ei])
    weights = np.concatenate([cost[oi], np.full(n1 + n2 + e, outlier, dtype=np.float64)]) + 1.0
    graph = sp.csr_matrix((weights, (rows, cols)), shape=(n1 + n2, n1 + n2))
    row_ind, col_ind = min_weight_full_bipartite_matching(graph)
    real = (row_ind < n1) & (col_ind < n2)
    a, b = nodes1[row_ind[real]], nodes2[col_ind[real]]
    matched_pred[y1[a], x1[a]] = True
    matched_gt[y2[b], x2[b]] = True
    total = float(np.rint(np.hypot(y1[a] - y2[b], x1[a] - x2[b]) * 100).sum())
    return matched_pred, matched_gt, total


def boundary_counts_reference(pred, gts, thresholds, max_dist=0.0075):
    """``(count_r, sum_r, count_p, sum_p)`` of the BSDS sweep with skimage's thin and
    :func:`correspond_pixels_reference`, threshold by threshold, annotator by annotator."""
    import numpy as np
    from skimage.morphology import thin

    ts = np.asarray(thresholds)
    count_r, sum_r = np.zeros(len(ts)), np.full(len(ts), float(np.sum(gts)))
    count_p, sum_p = np.zeros(len(ts)), np.zeros(len(ts))
    for k, t in enumerate(ts):
        binary = thin(pred >= t)
        matched_any = np.zeros(pred.shape, dtype=bool)
        for gt in gts:
            matched_pred, matched_gt, _ = correspond_pixels_reference(binary, gt, max_dist)
            matched_any |= matched_pred
            count_r[k] += matched_gt.sum()
        count_p[k], sum_p[k] = matched_any.sum(), binary.sum()
    return count_r, sum_r, count_p, sum_p


def label_iou_reference(gt, pred, ignore=None):
    """IoU ``(G, P)`` of the objects of two label maps, one pair of boolean masks at a time."""
    import numpy as np

    keep = np.ones(gt.shape, bool) if ignore is None else ~ignore
    gt_ids = sorted(set(gt[keep].tolist()) - {0})
    pred_ids = sorted(set(pred[keep].tolist()) - {0})
    iou = np.zeros((len(gt_ids), len(pred_ids)))
    for i, g in enumerate(gt_ids):
        for j, p in enumerate(pred_ids):
            a, b = (gt == g) & keep, (pred == p) & keep
            iou[i, j] = (a & b).sum() / (a | b).sum()
    return iou


def match_reference(iou, threshold):
    """``(tp, iou_sum)`` of the best one-to-one matching of the pairs with IoU >= threshold
    (most pairs, then largest IoU sum), every matching tried by recursion over the pairs."""
    pairs = [(i, j) for i in range(iou.shape[0]) for j in range(iou.shape[1])]
    pairs = [(i, j) for i, j in pairs if iou[i, j] >= threshold]

    def best(k, rows, cols):
        if k == len(pairs):
            return 0, 0.0
        skip = best(k + 1, rows, cols)
        i, j = pairs[k]
        if i in rows or j in cols:
            return skip
        n, s = best(k + 1, rows | {i}, cols | {j})
        take = (n + 1, s + float(iou[i, j]))
        return max(skip, take)

    return best(0, frozenset(), frozenset())
