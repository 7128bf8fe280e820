"""The tiled GBMS layer against an earlier version of it, side by side in one process.

Usage::

    git show <rev>:pixelgroup/ops/tiled_gbms.py > /tmp/tiled_gbms_old.py
    python benchmarks/gbms_small_dim.py /tmp/tiled_gbms_old.py [--sizes 4096 16384]
        [--dims 3 8] [--iters 5] [--repeats 5]

Both versions run T GBMS loops (``y ← normalize_to_sphere(tiled_blur(y, δ))``, loss = Σ over
the iterates of ``<iterate, w>``, as ``pixelgroup bench`` times them) on the same float32
points, B = 1, one thread; every repeat times the old and the new version and a fp32 2048² GEMM,
in alternating order, and the fastest of each is kept (a machine's noise only adds time).
Prints a Markdown table: forward and forward+backward seconds of both, their ratios, and each
forward's rate (4·N²·D flops per loop) over the GEMM rate. The first lines name the CPU (model,
``avx512f`` in /proc/cpuinfo), ``torch.backends.cpu.get_cpu_capability()`` and the environment
variables that emulate an AVX2-only machine on an AVX-512 one when set
(``ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch

import pixelgroup.ops.tiled_gbms as current
from pixelgroup.analysis.benchmark import cpu_description, gemm_gflops
from pixelgroup.ops import normalize_to_sphere

_EMULATION = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA")
Blur = Callable[[torch.Tensor, float], torch.Tensor]


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("tiled_gbms_old", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _time_loops(
    blur: Blur, x: torch.Tensor, weights: torch.Tensor, iters: int, bandwidth: float
) -> tuple[float, float]:
    """Seconds of T loops forward and forward+backward for ``x``, ``weights`` ``(1, N, D)``."""
    x = x.detach().requires_grad_()
    start = time.perf_counter()
    y, losses = x, []
    for _ in range(iters):
        y = normalize_to_sphere(blur(y, bandwidth), dim=-1)
        losses.append((y * weights).sum())
    loss = torch.stack(losses).sum()
    forward = time.perf_counter() - start
    loss.backward()
    return forward, time.perf_counter() - start


def _cpu_kind() -> str:
    emulated = [f"{name}={os.environ[name]}" for name in _EMULATION if name in os.environ]
    capability = torch.backends.cpu.get_cpu_capability()
    where = f"emulated by {' '.join(emulated)}" if emulated else "native"
    return f"{cpu_description()}; torch CPU capability {capability} ({where})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("old", type=Path, help="an earlier pixelgroup/ops/tiled_gbms.py")
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 16384], help="N")
    parser.add_argument("--dims", type=int, nargs="+", default=[3, 8], help="D")
    parser.add_argument("--iters", type=int, default=5, help="T, GBMS loops")
    parser.add_argument("--bandwidth", type=float, default=0.1, help="δ")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved runs, best kept")
    args = parser.parse_args()
    torch.set_num_threads(1)
    blurs: dict[str, Blur] = {"old": _load(args.old).tiled_blur, "new": current.tiled_blur}
    print(f"CPU: {_cpu_kind()}; 1 thread; torch {torch.__version__}")
    print(f"load average {os.getloadavg()[0]:.1f} at the start")
    print()
    print(
        f"T = {args.iters} loops, δ = {args.bandwidth}, B = 1, float32; best of "
        f"{args.repeats} interleaved runs; GEMM = fp32 2048² product rate (best of the runs, "
        "same process); fwd/GEMM counts 4·N²·D flops per loop."
    )
    print()
    print(
        "| N | D | T | fwd old (s) | fwd new (s) | old/new | fwd+bwd old (s) | fwd+bwd new (s) "
        "| old/new | (fwd+bwd)/fwd old | new | GEMM GFLOP/s | fwd/GEMM old | new |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        for d in args.dims:
            g = torch.Generator().manual_seed(0)
            x = normalize_to_sphere(torch.randn(1, n, d, generator=g), dim=-1)
            weights = torch.randn(1, n, d, generator=g)
            best = {(name, part): float("inf") for name in blurs for part in (0, 1)}
            gemm = 0.0
            for rep in range(args.repeats):
                order = list(blurs) if rep % 2 == 0 else list(reversed(blurs))
                for name in order:
                    times = _time_loops(blurs[name], x, weights, args.iters, args.bandwidth)
                    for part in (0, 1):
                        best[name, part] = min(best[name, part], times[part])
                gemm = max(gemm, gemm_gflops(torch.device("cpu"), 2048, repeats=1))
            fo, fn, bo, bn = (best[k] for k in [("old", 0), ("new", 0), ("old", 1), ("new", 1)])
            flops = 4 * n * n * d * args.iters / 1e9
            print(
                f"| {n} | {d} | {args.iters} | {fo:.4f} | {fn:.4f} | {fo / fn:.2f} | {bo:.4f} | "
                f"{bn:.4f} | {bo / bn:.2f} | {bo / fo:.2f} | {bn / fn:.2f} | {gemm:.1f} | "
                f"{flops / fo / gemm:.2f} | {flops / fn / gemm:.2f} |",
                flush=True,
            )
    print()
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
