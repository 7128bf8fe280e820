"""``pixelgroup bench``: GBMS speed and memory, grouping vs scikit-learn, merged inference.

Every row of a table is measured in the same run, side by side, so ratios stay meaningful on
a busy machine. Peak memory is the peak resident-set increase during the call (a sampling
thread reading ``/proc/self/statm``) on CPU, and ``torch.cuda.max_memory_allocated`` on CUDA.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pixelgroup._atomic import write_text
from pixelgroup.cli import set_threads
from pixelgroup.ops import normalize_to_sphere, recurrent_mean_shift
from pixelgroup.ops.weighted_mean_shift import merged_mean_shift
from pixelgroup.postprocess import group_pixels

EPILOG = """examples:
  pixelgroup bench --quick
  pixelgroup bench --threads 1 --out runs/bench/all.md
  pixelgroup bench --sizes 4096 16384 --dims 32 --iters 5 --impls tiled sdpa
  pixelgroup bench --sections gbms --sizes 65536 --dims 32 --impls tiled
  pixelgroup bench --device cuda --sections gbms --sizes 262144 --dims 32 --batch 8 --impls sdpa

Sections: `gbms` (forward / forward+backward of T loops, GFLOP/s against this machine's
fp32 GEMM measured in the same run), `grouping` (group_pixels vs sklearn MeanShift on
von Mises-Fisher mixtures and on the toy embeddings), `merge` (merged-point inference vs
plain GBMS on the toy embeddings at T = 10 and 20). The toy sections read --toy and are
skipped when it is absent."""

DEFAULT_TOY = Path("../shared/data/toy-gbms/loops_bandwidth0.2.mat")
SECTIONS = ("gbms", "grouping", "merge")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="benchmark the GBMS layer, group_pixels and merged inference",
        description="Time and memory of the GBMS implementations, group_pixels against "
        "scikit-learn MeanShift, and merged-point inference; prints Markdown tables.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run in seconds")
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--sizes", type=int, nargs="+", default=[4096, 16384, 65536], help="N")
    p.add_argument("--dims", type=int, nargs="+", default=[8, 32, 64], help="D")
    p.add_argument("--iters", type=int, default=5, help="T, GBMS loops per call")
    p.add_argument("--batch", type=int, default=1, help="B, images per GBMS call")
    p.add_argument("--bandwidth", type=float, default=0.1, help="δ")
    p.add_argument("--impls", nargs="+", default=["tiled", "sdpa", "dense"])
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--toy", type=Path, default=DEFAULT_TOY, help="toy GBMS fixture .mat")
    p.add_argument("--toy-images", type=int, default=30, help="toy images to use (max 30)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="also write the tables here (.md)")
    p.set_defaults(run=run)


class PeakMemory:
    """Peak memory increase inside a ``with`` block, in bytes (RSS on CPU, allocator on CUDA)."""

    def __init__(self, device: torch.device, interval: float = 0.002) -> None:
        self.device, self.interval, self.peak = device, interval, 0
        self._stop = threading.Event()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss() - self._base)
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._base = self._rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self._base
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self._rss() - self._base)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_time(repeats: int, fn, *args, **kwargs):
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
    best, _ = _best_time(repeats, product)
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


def bench_gbms(args: argparse.Namespace, device: torch.device) -> list[str]:
    gemm_n = 512 if args.quick else 2048
    lines = [
        "First call vs second call (forward, T loops, N = min(4096, smallest N), largest D):",
        "",
        "| impl | first (s) | second (s) |",
        "|---|---|---|",
    ]
    small_n, big_d = min(4096, *args.sizes), max(args.dims)
    for impl in args.impls:
        first, second = (
            time_gbms(small_n, big_d, impl, args.iters, args.bandwidth, device, args.seed)
            for _ in range(2)
        )
        lines.append(f"| {impl} | {first['fwd']:.3f} | {second['fwd']:.3f} |")
    lines += [
        "",
        f"GBMS, T = {args.iters} loops, δ = {args.bandwidth}, batch {args.batch}; loss = sum over "
        "iterates; GFLOP/s counts 4·N²·D per loop and image; GEMM = fp32 "
        f"{gemm_n}x{gemm_n} matrix product rate (best of 3) measured just before the row, "
        "so that the ratio sees the same machine load; peak = memory increase during fwd+bwd.",
        "",
        "| N | D | impl | fwd (s) | fwd+bwd (s) | (fwd+bwd)/fwd | fwd GFLOP/s | "
        "GEMM GFLOP/s | fwd / GEMM | peak (GiB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [(n, d, impl) for n in args.sizes for d in args.dims for impl in args.impls]
    for n, d, impl in tqdm(rows, desc="gbms", unit="row"):
        if impl == "dense" and not _dense_fits(n, args.iters, args.batch, device):
            lines.append(f"| {n} | {d} | dense | does not fit | | | | | | |")
            continue
        gemm = gemm_gflops(device, gemm_n)
        r = time_gbms(n, d, impl, args.iters, args.bandwidth, device, args.seed, args.batch)
        rate = 4 * n * n * d * args.iters * args.batch / r["fwd"] / 1e9
        lines.append(
            f"| {n} | {d} | {impl} | {r['fwd']:.3f} | {r['fwdbwd']:.3f} | "
            f"{r['fwdbwd'] / r['fwd']:.2f} | {rate:.1f} | {gemm:.1f} | {rate / gemm:.2f} | "
            f"{_gib(r['peak'])} |"
        )
        tqdm.write(lines[-1], file=sys.stderr)  # partial results survive an interrupted run
    return lines


def _vmf_mixture(k: int, per: int, dim: int, kappa: float, rng: np.random.Generator):
    from scipy.stats import vonmises_fisher

    centers = rng.standard_normal((k, dim))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    pts = np.concatenate([vonmises_fisher(c, kappa).rvs(per, random_state=rng) for c in centers])
    return pts, np.repeat(np.arange(k), per)


def _sklearn_mean_shift(points: np.ndarray, bandwidth: float) -> np.ndarray:
    from sklearn.cluster import MeanShift

    return MeanShift(bandwidth=bandwidth).fit(points).labels_


def _compare_grouping(points: np.ndarray, truth: np.ndarray, bandwidth: float) -> list[str]:
    """Table cells: group_pixels (default and all pixels) and sklearn MeanShift (estimated
    bandwidth, and the best of est x {1/4, 1/2, 3/4}) on ``(N, D)`` points: seconds, ARI."""
    from sklearn.cluster import estimate_bandwidth
    from sklearn.metrics import adjusted_rand_score

    def ours(max_points: int | None) -> tuple[float, float]:
        emb = torch.from_numpy(points.T.copy()).float()[:, None, :]  # (D, 1, N)
        group_pixels(emb, bandwidth=bandwidth, num_iters=20, max_points=max_points)  # warm-up
        seconds, out = _best_time(
            5, group_pixels, emb, bandwidth=bandwidth, num_iters=20, max_points=max_points
        )
        return seconds, adjusted_rand_score(truth, out.labels.flatten().numpy())

    def theirs(sk_bandwidth: float, repeats: int = 1) -> tuple[float, float]:
        seconds, labels = _best_time(repeats, _sklearn_mean_shift, points, sk_bandwidth)
        return seconds, adjusted_rand_score(truth, labels)

    t_o, a_o = ours(1024)
    t_all, a_all = ours(None)
    est = estimate_bandwidth(points, quantile=0.2, n_samples=500, random_state=0)
    t_e, a_e = theirs(est)
    tried = [(a, -t, f, t) for f in (0.25, 0.5, 0.75) for t, a in [theirs(f * est)]]
    a_b, _, f_b, _ = max([*tried, (a_e, -t_e, 1.0, t_e)])
    t_b, _ = theirs(f_b * est, repeats=3)  # timed again like ours: the fastest of 3 fits
    return [
        f"{t_o:.3f}",
        f"{a_o:.3f}",
        f"{t_all:.3f}",
        f"{a_all:.3f}",
        f"{t_e:.3f}",
        f"{a_e:.3f}",
        f"{f_b:g}",
        f"{t_b:.3f}",
        f"{a_b:.3f}",
        f"{t_b / t_o:.0f}x",
    ]


def _load_toy(path: Path, count: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The first ``count`` toy images with at least one digit: ``(count, 4096, 3)`` loop-1
    embeddings and ``(64, 64, count)`` instance masks; None when ``path`` is absent."""
    if not path.is_file():
        return None
    import scipy.io

    mat = scipy.io.loadmat(path, squeeze_me=True)
    masks = mat["instanceMaskMat"]
    keep = [i for i in range(masks.shape[-1]) if masks[..., i].max() > 0][:count]
    emb = np.asarray(mat["predInstanceMaskMat"][0], dtype=np.float32)[..., keep]
    return emb.transpose(3, 0, 1, 2).reshape(-1, 4096, 3), masks[..., keep]


def bench_grouping(args: argparse.Namespace) -> list[str]:
    rng = np.random.default_rng(args.seed)
    # (K, points per cluster, D, δ): a vMF cluster's chord radius grows as sqrt((D - 1)/κ),
    # about 0.19 at D = 8 and 0.39 at D = 32 for κ = 200, so δ grows with it
    cases = [(4, 100, 8, 0.1)] if args.quick else [(5, 400, 8, 0.1), (10, 400, 32, 0.2)]
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
    for k, per, dim, bandwidth in tqdm(cases, desc="grouping/vMF", unit="case"):
        pts, truth = _vmf_mixture(k, per, dim, kappa=200.0, rng=rng)
        cells = _compare_grouping(pts, truth, bandwidth)
        lines.append(
            f"| vMF K={k}, κ=200 | {k * per} | {dim} | {bandwidth} | {' | '.join(cells)} |"
        )
        tqdm.write(lines[-1], file=sys.stderr)
    toy = _load_toy(args.toy, min(args.toy_images, 5))
    if toy is None:
        return [*lines, "", f"(toy rows skipped: {args.toy} not found)"]
    for i in tqdm(range(len(toy[0])), desc="grouping/toy", unit="img"):
        cells = _compare_grouping(toy[0][i], toy[1][..., i].ravel(), 0.2)
        lines.append(f"| toy #{i} (loop-1 embedding) | 4096 | 3 | 0.2 | {' | '.join(cells)} |")
        tqdm.write(lines[-1], file=sys.stderr)
    return lines


def bench_merge(args: argparse.Namespace) -> list[str]:
    toy = _load_toy(args.toy, args.toy_images)
    if toy is None:
        return [f"(merge section skipped: {args.toy} not found)"]
    x = torch.from_numpy(toy[0]).double()  # float64: deviations are not rounding noise
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


def run(args: argparse.Namespace) -> int:
    if args.quick:
        args.sizes, args.dims, args.iters, args.toy_images = [512, 1024], [8], 2, 1
    bad = [n for n in [*args.sizes, *args.dims, args.iters, args.batch] if n < 1]
    if bad:
        raise ValueError(f"--sizes, --dims, --iters and --batch must be >= 1, got {bad}")
    unknown = sorted(set(args.impls) - {"auto", "tiled", "sdpa", "dense"})
    if unknown:
        raise ValueError(f"--impls must be among auto, tiled, sdpa, dense; got {unknown}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but CUDA is not available")
    set_threads(args.threads)
    out = [
        f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs visible; load average {os.getloadavg()[0]:.1f} at start",
        "",
    ]
    sections = {"gbms": lambda: bench_gbms(args, device), "grouping": lambda: bench_grouping(args)}
    sections["merge"] = lambda: bench_merge(args)
    for name in args.sections:
        out += [f"### {name}", "", *sections[name](), ""]
    out.append(f"load average {os.getloadavg()[0]:.1f} at the end")
    text = "\n".join(out) + "\n"
    print(text)
    if args.out is not None:
        write_text(text, args.out)
        print(f"wrote {args.out}")
    return 0
