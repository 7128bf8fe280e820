"""Performance measurements: GBMS speed and memory, grouping vs scikit-learn, merged inference,
the BSDS boundary benchmark against pyEdgeEval.

Each ``bench_*`` function measures one section and returns it as Markdown lines (a caption and
a table); ``pixelgroup bench`` prints them. Every row of a table is measured in the same run,
side by side, so ratios stay meaningful on a busy machine. Peak memory is the peak
resident-set increase during the call (a sampling thread reading ``/proc/self/statm``) on CPU,
and ``torch.cuda.max_memory_allocated`` on CUDA.

The toy rows read the original's GBMS fixture (``loops_bandwidth0.2.mat``: per-loop embeddings
``predInstanceMaskMat`` and masks ``instanceMaskMat``); its path is an argument, and without it
those rows are skipped with a note. The boundary section reads a folder of BSDS ``<id>.mat``
files (also an argument) and compares against pyEdgeEval when it is installed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm import tqdm

from pixelgroup._checks import check_choice, check_count
from pixelgroup._memory import resident_bytes
from pixelgroup._native import cpu_info
from pixelgroup.errors import InputError
from pixelgroup.ops import normalize_to_sphere, recurrent_mean_shift
from pixelgroup.ops.mean_shift import GBMS_IMPLS
from pixelgroup.ops.weighted_mean_shift import merged_mean_shift
from pixelgroup.postprocess import group_pixels

__all__ = [
    "PeakMemory",
    "peak_rss_mib",
    "best_time",
    "gemm_gflops",
    "time_gbms",
    "load_toy",
    "bench_gbms",
    "bench_grouping",
    "grouping_numbers",
    "vmf_mixture",
    "bench_merge",
    "cpu_description",
    "five_annotators",
    "load_bsds_sobel",
    "bench_boundary",
]

T = TypeVar("T")
Log = Callable[[str], None]


def _reset_peak_rss() -> bool:
    """Reset this process's ``VmHWM`` (Linux ``/proc/self/clear_refs``); False where it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float | None:
    """This process's peak resident set size (``VmHWM``) in MiB, or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class PeakMemory:
    """Peak memory inside a ``with`` block (the one place the package measures it).

    After the block:

    * ``peak``: the increase over the start, in bytes: on CPU the resident set size sampled
      every ``interval`` seconds (``None``: no sampling thread, for long runs; then the
      increase at the end), on CUDA the allocator's peak;
    * ``rss_mib``: the process's peak resident set size in MiB (``VmHWM``, reset through
      ``/proc/self/clear_refs`` at the start, so DataLoader worker processes are not counted),
      or None where it cannot be reset (off Linux);
    * ``cuda_mib``: on a CUDA device, the peak of ``torch.cuda.max_memory_allocated`` in MiB.
    """

    def __init__(self, device: torch.device | str, interval: float | None = 0.002) -> None:
        self.device, self.interval, self.peak = torch.device(device), interval, 0
        self.rss_mib: float | None = None
        self.cuda_mib: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _rss() -> int:
        rss = resident_bytes()
        if rss is None:
            raise OSError("the resident set is read from /proc/self/statm (Linux only)")
        return rss

    def _sample(self) -> None:
        assert self.interval is not None
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss() - self._base)
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        self._resettable = _reset_peak_rss()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._base = self._rss()
            if self.interval is not None:
                self._thread = threading.Thread(target=self._sample, daemon=True)
                self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
            self.peak, self.cuda_mib = peak - self._base, peak / 2**20
        else:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            self.peak = max(self.peak, self._rss() - self._base)
        self.rss_mib = peak_rss_mib() if self._resettable else None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(repeats: int, fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[float, T]:
    """``(seconds, result)``: the fastest of ``repeats`` calls (a machine's noise only ever
    adds time)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best, result


def gemm_gflops(device: torch.device, n: int, repeats: int = 3) -> float:
    """Best-of-``repeats`` fp32 ``n x n`` matrix-product rate, GFLOP/s."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device)
    b = torch.randn(n, n, generator=g).to(device)

    def product() -> None:
        a @ b
        _sync(device)

    product()  # warm-up; it also leaves the device idle before the first timed call
    best, _ = best_time(repeats, product)
    return 2 * n**3 / best / 1e9


def time_gbms(
    n: int,
    d: int,
    impl: str,
    iters: int,
    bandwidth: float,
    device: torch.device,
    seed: int,
    batch: int = 1,
) -> dict[str, float]:
    """Seconds for T loops forward and forward+backward of ``(batch, n, d)`` points, and the
    peak memory of the pair."""
    g = torch.Generator().manual_seed(seed)
    x = normalize_to_sphere(torch.randn(batch, n, d, generator=g), dim=-1).to(device)
    weights = torch.randn(batch, n, d, generator=g).to(device)
    x.requires_grad_()
    with PeakMemory(device) as mem:
        _sync(device)
        start = time.perf_counter()
        iterates = recurrent_mean_shift(x, bandwidth, iters, impl=impl)
        loss = torch.stack([(it * weights).sum() for it in iterates[1:]]).sum()
        _sync(device)
        forward = time.perf_counter() - start
        loss.backward()
        _sync(device)
        total = time.perf_counter() - start
    return {"fwd": forward, "fwdbwd": total, "peak": mem.peak}


def _dense_fits(n: int, iters: int, batch: int, device: torch.device) -> bool:
    """Dense autograd keeps about 4 N x N float32 matrices per loop and image; allow a quarter
    of the memory."""
    need = 4 * iters * batch * n * n * 4
    if device.type == "cuda":
        return need < torch.cuda.get_device_properties(device).total_memory / 4
    return need < os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 4


def _gib(b: float) -> str:
    return f"{b / 2**30:.3f}"


def _no_log(line: str) -> None:
    pass


def bench_gbms(
    sizes: Sequence[int],
    dims: Sequence[int],
    impls: Sequence[str],
    *,
    iters: int = 5,
    batch: int = 1,
    bandwidth: float = 0.1,
    device: torch.device | str = "cpu",
    seed: int = 0,
    gemm_n: int = 2048,
    log: Log = _no_log,
    progress: bool = False,
) -> list[str]:
    """GBMS first vs second call, then forward and forward+backward times, GFLOP/s against
    this machine's fp32 GEMM rate and peak memory for every (N, D, impl): Markdown lines.

    ``log`` receives each finished row (so partial results survive an interrupted run).
    Every size, dimension and impl is checked before the first measurement (one
    :class:`~pixelgroup.errors.InputError` naming the argument).
    """
    for name, values in (("sizes", sizes), ("dims", dims), ("iters", [iters]), ("batch", [batch])):
        if not values:
            raise InputError(f"{name} must name at least one value")
        for value in values:
            check_count(value, name)
    for impl in impls:
        check_choice(impl, "impls", GBMS_IMPLS)
    device = torch.device(device)
    lines = [
        "First call vs second call (forward, T loops, N = min(4096, smallest N), largest D):",
        "",
        "| impl | first (s) | second (s) |",
        "|---|---|---|",
    ]
    small_n, big_d = min(4096, *sizes), max(dims)
    for impl in impls:
        first, second = (
            time_gbms(small_n, big_d, impl, iters, bandwidth, device, seed) for _ in range(2)
        )
        lines.append(f"| {impl} | {first['fwd']:.3f} | {second['fwd']:.3f} |")
    lines += [
        "",
        f"GBMS, T = {iters} loops, δ = {bandwidth}, batch {batch}; loss = sum over "
        "iterates; GFLOP/s counts 4·N²·D per loop and image; GEMM = fp32 "
        f"{gemm_n}x{gemm_n} matrix product rate (best of 3) measured just before the row, "
        "so that the ratio sees the same machine load; peak = memory increase during fwd+bwd.",
        "",
        "| N | D | impl | fwd (s) | fwd+bwd (s) | (fwd+bwd)/fwd | fwd GFLOP/s | "
        "GEMM GFLOP/s | fwd / GEMM | peak (GiB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [(n, d, impl) for n in sizes for d in dims for impl in impls]
    for n, d, impl in tqdm(rows, desc="gbms", unit="row", disable=not progress):
        if impl == "dense" and not _dense_fits(n, iters, batch, device):
            lines.append(f"| {n} | {d} | dense | does not fit | | | | | | |")
            continue
        gemm = gemm_gflops(device, gemm_n)
        r = time_gbms(n, d, impl, iters, bandwidth, device, seed, batch)
        rate = 4 * n * n * d * iters * batch / r["fwd"] / 1e9
        lines.append(
            f"| {n} | {d} | {impl} | {r['fwd']:.3f} | {r['fwdbwd']:.3f} | "
            f"{r['fwdbwd'] / r['fwd']:.2f} | {rate:.1f} | {gemm:.1f} | {rate / gemm:.2f} | "
            f"{_gib(r['peak'])} |"
        )
        log(lines[-1])
    return lines


def vmf_mixture(
    k: int, per: int, dim: int, kappa: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    from scipy.stats import vonmises_fisher

    centers = rng.standard_normal((k, dim))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    pts = np.concatenate([vonmises_fisher(c, kappa).rvs(per, random_state=rng) for c in centers])
    return pts, np.repeat(np.arange(k), per)


def _sklearn_mean_shift(points: np.ndarray, bandwidth: float) -> np.ndarray:
    from sklearn.cluster import MeanShift

    return MeanShift(bandwidth=bandwidth).fit(points).labels_


def grouping_numbers(points: np.ndarray, truth: np.ndarray, bandwidth: float) -> dict[str, float]:
    """group_pixels (default, and all pixels) and sklearn MeanShift (estimated bandwidth, and
    the best of est x {1/4, 1/2, 3/4, 1}) on ``(N, D)`` points: seconds and ARI of each
    (keys ``ours``, ``ours_ari``, ``all``, ``all_ari``, ``est``, ``est_ari``, ``factor``,
    ``best``, ``best_ari``)."""
    from sklearn.cluster import estimate_bandwidth
    from sklearn.metrics import adjusted_rand_score

    def ours(max_points: int | None) -> tuple[float, float]:
        emb = torch.from_numpy(points.T.copy()).float()[:, None, :]  # (D, 1, N)
        group_pixels(emb, bandwidth=bandwidth, num_iters=20, max_points=max_points)  # warm-up
        seconds, out = best_time(
            5, group_pixels, emb, bandwidth=bandwidth, num_iters=20, max_points=max_points
        )
        return seconds, adjusted_rand_score(truth, out.labels.flatten().numpy())

    def theirs(sk_bandwidth: float, repeats: int = 1) -> tuple[float, float]:
        seconds, labels = best_time(repeats, _sklearn_mean_shift, points, sk_bandwidth)
        return seconds, adjusted_rand_score(truth, labels)

    t_o, a_o = ours(1024)
    t_all, a_all = ours(None)
    est = estimate_bandwidth(points, quantile=0.2, n_samples=500, random_state=0)
    t_e, a_e = theirs(est)
    tried = [(a, -t, f, t) for f in (0.25, 0.5, 0.75) for t, a in [theirs(f * est)]]
    a_b, _, f_b, _ = max([*tried, (a_e, -t_e, 1.0, t_e)])
    t_b, _ = theirs(f_b * est, repeats=3)  # timed again like ours: the fastest of 3 fits
    return {
        "ours": t_o,
        "ours_ari": a_o,
        "all": t_all,
        "all_ari": a_all,
        "est": t_e,
        "est_ari": a_e,
        "factor": f_b,
        "best": t_b,
        "best_ari": a_b,
    }


def _compare_grouping(points: np.ndarray, truth: np.ndarray, bandwidth: float) -> list[str]:
    """Table cells of :func:`grouping_numbers` and the speed-up best sklearn / ours."""
    r = grouping_numbers(points, truth, bandwidth)
    keys = ("ours", "ours_ari", "all", "all_ari", "est", "est_ari")
    return [
        *(f"{r[k]:.3f}" for k in keys),
        f"{r['factor']:g}",
        f"{r['best']:.3f}",
        f"{r['best_ari']:.3f}",
        f"{r['best'] / r['ours']:.0f}x",
    ]


def load_toy(path: str | os.PathLike, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` toy images with at least one digit from the GBMS fixture at
    ``path``: ``(count, 4096, 3)`` loop-1 embeddings and ``(64, 64, count)`` instance masks."""
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"toy GBMS fixture not found: {path}")
    mat = scipy.io.loadmat(path, squeeze_me=True)
    masks = mat["instanceMaskMat"]
    keep = [i for i in range(masks.shape[-1]) if masks[..., i].max() > 0][:count]
    emb = np.asarray(mat["predInstanceMaskMat"][0], dtype=np.float32)[..., keep]
    return emb.transpose(3, 0, 1, 2).reshape(-1, 4096, 3), masks[..., keep]


def bench_grouping(
    *,
    quick: bool = False,
    toy: str | os.PathLike | None = None,
    toy_images: int = 5,
    seed: int = 0,
    log: Log = _no_log,
    progress: bool = False,
) -> list[str]:
    """group_pixels against scikit-learn MeanShift on von Mises-Fisher mixtures and (with
    ``toy``, the fixture's path) on the first ``toy_images`` toy embeddings: Markdown lines."""
    check_count(toy_images, "toy_images")
    rng = np.random.default_rng(seed)
    # (K, points per cluster, D, δ): a vMF cluster's chord radius grows as sqrt((D - 1)/κ),
    # about 0.19 at D = 8 and 0.39 at D = 32 for κ = 200, so δ grows with it
    cases = [(4, 100, 8, 0.1)] if quick else [(5, 400, 8, 0.1), (10, 400, 32, 0.2)]
    lines = [
        "group_pixels (T <= 20, default threshold / min_area, max_points 1024 (the default) "
        "and None) vs sklearn MeanShift (flat kernel, no bin seeding) at its estimated "
        "bandwidth (estimate_bandwidth, quantile 0.2) and at the best of est x {1/4, 1/2, "
        "3/4, 1} (highest ARI, then fastest); ARI against the truth; times: the fastest of 5 "
        "calls after a warm-up (ours) and of 3 fits (sklearn best); speed-up = best sklearn "
        "/ ours (default).",
        "",
        "| data | N | D | δ | ours (s) | ours ARI | ours, all pixels (s) | ARI | "
        "sklearn est. (s) | ARI | best × est | sklearn best (s) | ARI | speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for k, per, dim, bandwidth in tqdm(
        cases, desc="grouping/vMF", unit="case", disable=not progress
    ):
        pts, truth = vmf_mixture(k, per, dim, kappa=200.0, rng=rng)
        cells = _compare_grouping(pts, truth, bandwidth)
        lines.append(
            f"| vMF K={k}, κ=200 | {k * per} | {dim} | {bandwidth} | {' | '.join(cells)} |"
        )
        log(lines[-1])
    if toy is None:
        return [*lines, "", "(toy rows skipped: no toy fixture given, see --toy)"]
    embeddings, masks = load_toy(toy, toy_images)
    for i in tqdm(range(len(embeddings)), desc="grouping/toy", unit="img", disable=not progress):
        cells = _compare_grouping(embeddings[i], masks[..., i].ravel(), 0.2)
        lines.append(f"| toy #{i} (loop-1 embedding) | 4096 | 3 | 0.2 | {' | '.join(cells)} |")
        log(lines[-1])
    return lines


def bench_merge(toy: str | os.PathLike | None, toy_images: int = 30) -> list[str]:
    """Merged-point inference against plain GBMS on the first ``toy_images`` toy embeddings
    (the fixture at ``toy``; skipped with a note when None) at T = 10 and 20: Markdown lines."""
    check_count(toy_images, "toy_images")
    if toy is None:
        return ["(merge section skipped: no toy fixture given, see --toy)"]
    x = torch.from_numpy(load_toy(toy, toy_images)[0]).double()  # float64: real deviations
    lines = [
        f"Merged-point inference on {len(x)} toy images (loop-1 embeddings, N = 4096, D = 3, "
        "δ = 0.2, float64) vs plain GBMS (tiled); deviation = max over pixels of the "
        "Euclidean distance between final positions.",
        "",
        "| T | plain (s) | merged, tol 1e-3 (s) | speed-up | max deviation | "
        "merged + early stop (s) | speed-up | max deviation | mean M at end |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for iters in (10, 20):
        start = time.perf_counter()
        with torch.no_grad():
            plain = [recurrent_mean_shift(p[None], 0.2, iters, impl="tiled")[-1][0] for p in x]
        t_plain = time.perf_counter() - start
        cells = []
        for stop_tol in (0.0, 1e-4):
            start = time.perf_counter()
            runs = [merged_mean_shift(p, 0.2, iters, merge_tol=1e-3, stop_tol=stop_tol) for p in x]
            elapsed = time.perf_counter() - start
            pairs = zip(runs, plain, strict=True)
            dev = max(float((r.points[r.index] - q).norm(dim=1).max()) for r, q in pairs)
            cells += [f"{elapsed:.3f}", f"{t_plain / elapsed:.1f}x", f"{dev:.1e}"]
        mean_m = np.mean([r.points.shape[0] for r in runs])
        lines.append(f"| {iters} | {t_plain:.3f} | {' | '.join(cells)} | {mean_m:.0f} |")
    return lines


def cpu_description() -> str:
    """CPU model name and whether it has AVX-512 (``avx512f``), from ``/proc/cpuinfo``."""
    model, line = cpu_info()
    model = model or "unknown CPU"
    flags = set(line.partition(":")[2].split())
    kind = "AVX-512" if "avx512f" in flags else ("AVX2, no AVX-512" if "avx2" in flags else "")
    return f"{model}" + (f" ({kind})" if kind else "")


def five_annotators(gts: np.ndarray, seed: int = 0) -> np.ndarray:
    """``(5, H, W)`` annotator maps: the first five of ``gts (A, H, W)``, or, when there are
    fewer, a stand-in for BSDS500's ~5 annotators built from the first map: its one-pixel
    skeleton and four copies shifted by one pixel (down, right, up, left), each losing the pixels
    of a random quarter of its 16x16 blocks (annotators disagree on detail)."""
    from skimage.morphology import thin

    gts = np.asarray(gts) != 0
    if len(gts) >= 5:
        return gts[:5]
    skeleton = thin(gts[0])
    height, width = skeleton.shape
    rng = np.random.default_rng(seed)
    out = [skeleton]
    for dy, dx in ((1, 0), (0, 1), (-1, 0), (0, -1)):
        shifted = np.zeros_like(skeleton)
        shifted[max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = skeleton[
            max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)
        ]
        keep = rng.random((-(-height // 16), -(-width // 16))) >= 0.25
        keep = np.repeat(np.repeat(keep, 16, axis=0), 16, axis=1)[:height, :width]
        out.append(shifted & keep)
    return np.stack(out)


def load_bsds_sobel(
    folder: str | os.PathLike, crop: int | None = None
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(id, pred (H, W), gts (A, H, W))`` for every ``<id>.mat`` in ``folder``: the ground
    truth (release ``groundTruth`` cell or sample ``GT`` map) and, as prediction, the Sobel
    gradient magnitude of the grey image scaled to [0, 1] and quantised to 8 bits. The image is
    the ``.mat``'s ``im`` or ``<id>.jpg`` beside it; ``crop`` keeps the top-left crop x crop."""
    import scipy.io
    from PIL import Image
    from skimage import color, filters

    from pixelgroup.data.bsds import load_boundary_ground_truth

    folder = Path(folder)
    files = sorted(folder.glob("*.mat"))
    if not files:
        raise FileNotFoundError(f"no <id>.mat ground-truth files in {folder}")
    out = []
    for mat in files:
        gts = load_boundary_ground_truth(mat)
        content = scipy.io.loadmat(mat, squeeze_me=True)
        if "im" in content:
            image = np.asarray(content["im"])
        elif mat.with_suffix(".jpg").is_file():
            with Image.open(mat.with_suffix(".jpg")) as im:
                image = np.asarray(im.convert("RGB"))
        else:
            raise FileNotFoundError(f"{mat}: no 'im' variable and no {mat.stem}.jpg beside it")
        grey = color.rgb2gray(image) if image.ndim == 3 else image / 255.0
        pb = filters.sobel(grey)
        pb = np.round(pb / max(float(pb.max()), 1e-12) * 255) / 255
        if crop is not None:
            pb, gts = pb[:crop, :crop], gts[:, :crop, :crop]
        out.append((mat.stem, pb, gts))
    return out


def _pyedgeeval_scores(
    samples: list[tuple[str, np.ndarray, np.ndarray]], thresholds: int
) -> dict[str, float]:
    """pyEdgeEval's ``evaluate_boundaries_threshold_multiple_gts`` + ``calculate_metrics``,
    one process, without its progress bar (bound to the real stdout at import)."""
    import importlib

    from pyEdgeEval.common.binary_label.evaluate_boundaries import (
        evaluate_boundaries_threshold_multiple_gts,
    )

    from pixelgroup.metrics.boundary import boundary_thresholds

    # the package re-exports the function under the module's name: fetch the module itself
    module: Any = importlib.import_module("pyEdgeEval.common.binary_label.calculate_metrics")
    ts = boundary_thresholds(thresholds)

    def one(sample: dict) -> Any:
        return evaluate_boundaries_threshold_multiple_gts(ts, sample["pred"], sample["gts"])

    ref = [{"name": n, "pred": p, "gts": list(g)} for n, p, g in samples]
    bar = module.track_progress
    module.track_progress = lambda fn, tasks: [fn(t) for t in tasks]
    try:
        _, _, result = module.calculate_metrics(one, thresholds, ref, nproc=1)
    finally:
        module.track_progress = bar
    return {"ODS": result["ODS_f1"], "OIS": result["OIS_f1"], "AP": result["AUC"]}


def _pixelgroup_scores(
    samples: list[tuple[str, np.ndarray, np.ndarray]], thresholds: int
) -> dict[str, float]:
    from pixelgroup.metrics.boundary import BoundaryEvaluator, BoundaryPrediction, BoundaryTarget

    evaluator = BoundaryEvaluator(thresholds, num_workers=1)
    evaluator.process(
        [BoundaryPrediction(p) for _, p, _ in samples],
        [BoundaryTarget(g, n) for n, _, g in samples],
    )
    s = evaluator.scores()
    return {"ODS": s.ods, "OIS": s.ois, "AP": s.ap}


def bench_boundary(
    bsds: str | os.PathLike | None,
    thresholds: int = 99,
    *,
    repeats: int = 1,
    crop: int | None = None,
    log: Log = _no_log,
    progress: bool = False,
) -> list[str]:
    """pixelgroup's BSDS benchmark against pyEdgeEval on the ``<id>.mat`` files of ``bsds``
    (skipped with a note when None): seconds for all images, ODS / OIS / AP of each, with one
    annotator (the first) and with five (:func:`five_annotators`): Markdown lines.

    Both run in this process, one after the other, ``repeats`` times interleaved; the table
    keeps each one's fastest run. pyEdgeEval's AP is its ``AUC`` (the BSDS benchmark's AP).
    """
    if bsds is None:
        return ["(boundary section skipped: no BSDS folder given, see --bsds)"]
    import importlib.util

    have_ref = importlib.util.find_spec("pyEdgeEval") is not None
    samples = load_bsds_sobel(bsds, crop)
    from pixelgroup.metrics._bsds_match import assignment_library

    assignment_library()  # a first use compiles the solver (about 2 s): before the clock starts
    versions = {
        "1 annotator": [(n, p, g[:1]) for n, p, g in samples],
        "5 annotators": [(n, p, five_annotators(g)) for n, p, g in samples],
    }
    size = "x".join(str(x) for x in samples[0][1].shape)
    lines = [
        f"BSDS boundary benchmark, {len(samples)} image(s) of {bsds} (first {size}"
        + (f", cropped to {crop}x{crop}" if crop else "")
        + f"), T = {thresholds} thresholds, prediction = Sobel magnitude (8-bit), one process "
        f"each, fastest of {repeats} interleaved run(s); CPU: {cpu_description()}. "
        "AP: ours vs pyEdgeEval's AUC; Δ = largest |difference| of ODS, OIS, AP.",
        "",
        "| ground truth | pixelgroup (s) | pyEdgeEval (s) | speed-up | ODS ours / ref | "
        "OIS ours / ref | AP ours / ref AUC | Δ |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, data in tqdm(versions.items(), desc="boundary", disable=not progress):
        best = {"ours": float("inf"), "ref": float("inf")}
        scores: dict[str, dict[str, float]] = {}
        for _ in range(repeats):
            for who, fn in (("ours", _pixelgroup_scores), ("ref", _pyedgeeval_scores)):
                if who == "ref" and not have_ref:
                    continue
                start = time.perf_counter()
                scores[who] = fn(data, thresholds)
                best[who] = min(best[who], time.perf_counter() - start)
        ours = scores["ours"]
        if have_ref:
            ref = scores["ref"]
            delta = max(abs(ours[k] - ref[k]) for k in ("ODS", "OIS", "AP"))
            cells = [
                f"{best['ours']:.2f}",
                f"{best['ref']:.2f}",
                f"{best['ref'] / best['ours']:.1f}x",
                *(f"{ours[k]:.4f} / {ref[k]:.4f}" for k in ("ODS", "OIS", "AP")),
                f"{delta:.4f}",
            ]
        else:
            cells = [f"{best['ours']:.2f}", "n/a", "n/a"]
            cells += [f"{ours[k]:.4f} / n/a" for k in ("ODS", "OIS", "AP")] + ["n/a"]
        lines.append(f"| {label} | {' | '.join(cells)} |")
        log(lines[-1])
    if not have_ref:
        lines += ["", "(pyEdgeEval not installed: reference columns skipped; extra bsds-reference)"]
    return lines
