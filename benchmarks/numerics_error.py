"""Measured error of the GBMS layer per dtype against a float64 log-sum-exp reference.

For clustered unit points normalised in each dtype (float64, float32, bfloat16, float16), runs
one step and T steps of every implementation in that dtype and compares with the same number
of float64 steps (each row's largest logit subtracted) started from the same rounded points.
Reports the largest, the 99th-percentile and the median per-row Euclidean error. The numbers
go into docs/numerics.md.

    python benchmarks/numerics_error.py                       # N = 4096, D = 3 and 64
    python benchmarks/numerics_error.py --n 1024 --dims 8 --bandwidths 0.05
"""

from __future__ import annotations

import argparse
import os

import torch

from pixelgroup.analysis.benchmark import cpu_description
from pixelgroup.ops import normalize_to_sphere, recurrent_mean_shift

DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def reference_steps(x: torch.Tensor, bandwidth: float, num_iters: int) -> list[torch.Tensor]:
    """``num_iters`` GBMS steps in float64 with each row's largest logit subtracted."""
    out = [x.double()]
    for _ in range(num_iters):
        pts = out[-1]
        logits = (pts @ pts.transpose(-1, -2)) / bandwidth**2
        weights = torch.softmax(logits - logits.amax(-1, keepdim=True), dim=-1)
        y = weights @ pts
        out.append(y / (y.norm(dim=-1, keepdim=True) + 1e-5))
    return out


def clustered_points(n: int, dim: int, clusters: int, spread: float, seed: int) -> torch.Tensor:
    """``(1, N, D)`` float64 points around ``clusters`` random unit centres (not normalised)."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.nn.functional.normalize(
        torch.randn(clusters, dim, generator=g, dtype=torch.float64), dim=1
    )
    pick = torch.randint(0, clusters, (n,), generator=g)
    return (centers[pick] + spread * torch.randn(n, dim, generator=g, dtype=torch.float64))[None]


def row_errors(got: torch.Tensor, expected: torch.Tensor) -> str:
    """``max | 99th percentile | median`` of the per-row Euclidean errors, as table cells."""
    err = (got.double() - expected).norm(dim=-1).flatten()
    q99 = float(torch.quantile(err, 0.99))
    return f"{float(err.max()):.1e} | {q99:.1e} | {float(err.median()):.1e}"


def cpu_kind() -> str:
    return cpu_description()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4096, help="points per set")
    p.add_argument("--dims", type=int, nargs="+", default=[3, 64])
    p.add_argument("--bandwidths", type=float, nargs="+", default=[0.1, 0.2])
    p.add_argument("--iters", type=int, default=5, help="T")
    p.add_argument("--clusters", type=int, default=8)
    p.add_argument("--spread", type=float, default=0.15)
    p.add_argument("--impls", nargs="+", default=["tiled", "sdpa", "dense"])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    print(
        f"torch {torch.__version__}, {cpu_kind()}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs visible; N = {args.n}, {args.clusters} clusters of spread "
        f"{args.spread}, T = {args.iters}"
    )
    print()
    t = f"T = {args.iters}"
    print(
        "| D | δ | dtype | impl | 1 step: max | 1 step: p99 | 1 step: median | "
        f"{t}: max | {t}: p99 | {t}: median |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for dim in args.dims:
        raw = clustered_points(args.n, dim, args.clusters, args.spread, args.seed + dim)
        for bandwidth in args.bandwidths:
            for dtype_name, dtype in DTYPES.items():
                x = normalize_to_sphere(raw.to(dtype), dim=-1)  # normalised in the dtype
                expected = reference_steps(x, bandwidth, args.iters)
                for impl in args.impls:
                    got = recurrent_mean_shift(x, bandwidth, args.iters, impl=impl)
                    print(
                        f"| {dim} | {bandwidth:g} | {dtype_name} | {impl} | "
                        f"{row_errors(got[1], expected[1])} | "
                        f"{row_errors(got[-1], expected[-1])} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
