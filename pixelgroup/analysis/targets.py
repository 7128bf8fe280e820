"""The performance targets of issue 31, each measured side by side on the machine at hand.

:func:`bench_targets` returns Markdown lines: a header naming the CPU (model, kind, flags that
matter here, cores, torch threads, load) and one row per target with what was measured, the
ratio against the target's baseline measured in the same run, the goal and whether it is met.
``pixelgroup bench --suite targets`` prints them (docs/benchmarks.md, "Targets on the machine at
hand"). A target that needs what is absent (a GPU, pyEdgeEval, the BSDS samples, the training
step that the command line builds) is listed with a note instead of a number.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from pixelgroup._native import cpu_info
from pixelgroup.analysis.benchmark import (
    cpu_description,
    gemm_gflops,
    grouping_numbers,
    load_bsds_sobel,
    time_gbms,
    vmf_mixture,
)

__all__ = ["cpu_flags", "flushes_subnormals", "busy_processes", "bench_targets"]

Log = Callable[[str], None]

# the flags that decide the speed of this package's code: vector width, subnormal-costly kinds
_FLAGS_SHOWN = ("avx2", "fma", "avx512f", "avx512_fp16", "amx_tile", "amx_bf16")


def cpu_flags() -> list[str]:
    """Which of avx2, fma, avx512f, avx512_fp16, amx_tile, amx_bf16 ``/proc/cpuinfo`` lists
    (:func:`pixelgroup._native.cpu_info`)."""
    have = set(cpu_info()[1].partition(":")[2].split())
    return [flag for flag in _FLAGS_SHOWN if flag in have]


def flushes_subnormals() -> bool:
    """Whether this thread flushes subnormal float32 results to zero (FTZ)."""
    return (torch.tensor([2.0**-126]) * 0.5).item() == 0.0


@contextlib.contextmanager
def _flush(on: bool) -> Iterator[None]:
    """``torch.set_flush_denormal(on)`` for the block, then this thread's state before it."""
    before = flushes_subnormals()
    torch.set_flush_denormal(on)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


def _spin() -> None:
    while True:
        pass


@contextlib.contextmanager
def busy_processes(count: int) -> Iterator[None]:
    """``count`` other processes spinning on the CPU for the block (a machine not quiet)."""
    procs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(count)]
    for process in procs:
        process.start()
    try:
        yield
    finally:
        for process in procs:
            process.terminate()
            process.join()


@contextlib.contextmanager
def _threads(count: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _products_path() -> Iterator[None]:
    """The GBMS layer on its torch products (``PIXELGROUP_NATIVE=0``, read at each call)."""
    before = os.environ.get("PIXELGROUP_NATIVE")
    os.environ["PIXELGROUP_NATIVE"] = "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ["PIXELGROUP_NATIVE"]
        else:
            os.environ["PIXELGROUP_NATIVE"] = before


def _interleaved(variants: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Best seconds of each variant over ``rounds`` rounds, the variants taking turns."""
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(rounds):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def _row(target: str, measured: str, ratio: float, goal: str, met: bool) -> str:
    return f"| {target} | {measured} | {ratio:.2f} | {goal} | {'yes' if met else '**no**'} |"


def _train_rows(step: Callable[[], None], iterations: int, rounds: int) -> list[str]:
    """The toy step with and without torch's flush-to-zero, and the demo's training time."""
    step()  # warm-up: a first step allocates and builds
    with _flush(False):
        step()

    def flushed() -> None:
        with _flush(True):
            step()

    def plain() -> None:
        with _flush(False):
            step()

    t = _interleaved({"plain": plain, "flushed": flushed}, rounds)
    ratio = t["plain"] / t["flushed"]
    estimate = t["plain"] * iterations
    return [
        _row(
            "subnormal floats cost nothing: toy step as is / with flush-to-zero",
            f"{t['plain']:.3f} / {t['flushed']:.3f} s",
            ratio,
            "<= 1.10",
            ratio <= 1.10,
        ),
        _row(
            f"`make demo` training <= 300 s: step x {iterations} iterations (data loading not "
            "counted)",
            f"{estimate:.0f} s",
            estimate / 300,
            "<= 1",
            estimate <= 300,
        ),
    ]


def _gemm_row(n: int, rounds: int) -> str:
    """Tiled GBMS forward (D = 32, T = 5, one thread) against the fp32 GEMM rate."""
    with _threads(1):
        gemm = max(gemm_gflops(torch.device("cpu"), 1024) for _ in range(rounds))
        fwd = min(
            time_gbms(n, 32, "tiled", 5, 0.1, torch.device("cpu"), 0)["fwd"] for _ in range(rounds)
        )
    rate = 4 * n * n * 32 * 5 / fwd / 1e9
    return _row(
        f"tiled GBMS forward / fp32 GEMM rate, N = {n:,}, D = 32, T = 5, one thread",
        f"{rate:.1f} / {gemm:.1f} GFLOP/s",
        rate / gemm,
        ">= 0.8",
        rate / gemm >= 0.8,
    )


def _layer_rows(n: int, rounds: int) -> list[str]:
    """The default layer against its torch products: the path without a compiler, faster
    than the layer before issue 18 (whose products issue 18 also re-laid out), so the ratio
    understates the target's."""
    rows = []
    for dim in (3, 8):
        times: dict[str, dict[str, float]] = {"fused": {}, "products": {}}
        for _ in range(rounds):
            for name in times:
                with _products_path() if name == "products" else contextlib.nullcontext():
                    r = time_gbms(n, dim, "tiled", 5, 0.1, torch.device("cpu"), 0)
                for key in ("fwd", "fwdbwd"):
                    times[name][key] = min(times[name].get(key, float("inf")), r[key])
        for key, what in (("fwd", "forward"), ("fwdbwd", "forward+backward")):
            ratio = times["products"][key] / times["fused"][key]
            rows.append(
                _row(
                    f"GBMS layer D = {dim}, {what} (N = {n:,}, T = 5): torch products (since "
                    "issue 18; the layer before it was slower) / default",
                    f"{times['products'][key]:.3f} / {times['fused'][key]:.3f} s",
                    ratio,
                    ">= 2",
                    ratio >= 2,
                )
            )
    return rows


def _grouping_rows(quick: bool, seed: int) -> list[str]:
    """group_pixels against scikit-learn's MeanShift, quiet and with one busy process."""
    k, per = (4, 100) if quick else (5, 400)
    points, truth = vmf_mixture(k, per, 8, 200.0, np.random.default_rng(seed))
    rows = []
    for busy in (0, 1):
        with busy_processes(busy):
            r = grouping_numbers(points, truth, 0.1)
        ratio = r["best"] / r["ours"]
        equal = r["ours_ari"] >= r["best_ari"] - 0.01
        rows.append(
            _row(
                f"group_pixels vs sklearn MeanShift (N = {k * per}, D = 8; ARI {r['ours_ari']:.3f}"
                f" vs {r['best_ari']:.3f}), {busy} busy process(es): sklearn / ours",
                f"{r['best']:.3f} / {r['ours']:.4f} s",
                ratio,
                ">= 100 at equal ARI",
                ratio >= 100 and equal,
            )
        )
    return rows


_PYEDGEEVAL_RUN = """
import sys
from pixelgroup.analysis import benchmark
samples = benchmark.load_bsds_sobel(sys.argv[1])[:1]
benchmark._pyedgeeval_scores(samples, 99)
"""


def _boundary_row(bsds: Path | None) -> str:
    """One BSDS image, 99 thresholds: ``pixelgroup eval-boundaries`` as a whole command on its
    Sobel map saved as a PNG, against pyEdgeEval in a fresh process (start-up counted)."""
    import importlib.util
    import shutil
    import tempfile

    from PIL import Image

    target = "eval-boundaries vs pyEdgeEval, one image"
    if bsds is None:
        return f"| {target} | skipped: no --bsds folder | | >= 10 | |"
    if importlib.util.find_spec("pyEdgeEval") is None:
        return f"| {target} | skipped: pyEdgeEval absent (extra bsds-reference) | | >= 10 | |"
    from pixelgroup.metrics._bsds_match import assignment_library

    assignment_library()  # a first use compiles the solver: not part of the timing
    name, pred, _ = load_bsds_sobel(bsds)[0]
    with tempfile.TemporaryDirectory() as tmp:
        preds, gt = Path(tmp, "preds"), Path(tmp, "gt")
        preds.mkdir()
        gt.mkdir()
        Image.fromarray(np.round(pred * 255).astype(np.uint8)).save(preds / f"{name}.png")
        shutil.copy(Path(bsds) / f"{name}.mat", gt)
        runs = {
            "ours": [sys.executable, "-m", "pixelgroup", "eval-boundaries", str(preds), str(gt)]
            + ["--thresholds", "99", "--workers", "1", "--quiet"],
            "ref": [sys.executable, "-c", _PYEDGEEVAL_RUN, str(bsds)],
        }
        seconds = {}
        for who, cmd in runs.items():
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            seconds[who] = time.perf_counter() - start
    ours, ref = seconds["ours"], seconds["ref"]
    return _row(
        f"{target}, 99 thresholds, `pixelgroup eval-boundaries` as a command and pyEdgeEval in "
        "a process (start-up counted): pyEdgeEval / ours",
        f"{ref:.1f} / {ours:.1f} s",
        ref / ours,
        ">= 10",
        ref / ours >= 10,
    )


def bench_targets(
    train_step: Callable[[], None] | None,
    train_iterations: int,
    *,
    bsds: Path | None = None,
    quick: bool = False,
    gemm_n: int | None = None,
    layer_n: int = 4096,
    seed: int = 0,
    log: Log = lambda line: None,
) -> list[str]:
    """Every target of issue 31 with its ratio measured in this run: Markdown lines.

    ``train_step`` runs one toy training iteration (the demo's model, loss, batch and
    optimiser; None skips its rows) and ``train_iterations`` is the demo's count of them;
    ``bsds`` a folder of BSDS ``<id>.mat`` files (its first image is used). ``gemm_n``: N of
    the GEMM-rate row (the target's 16,384; 4,096 with ``quick``), ``layer_n`` N of the
    layer rows; ``quick`` also takes two rounds instead of three and a smaller mixture.
    """
    rounds = 2 if quick else 3
    gemm_n = gemm_n or (4096 if quick else 16384)
    flags = ", ".join(cpu_flags()) or "none of " + ", ".join(_FLAGS_SHOWN)
    lines = [
        f"{cpu_description()}; flags: {flags}; {os.cpu_count()} CPUs visible, "
        f"{torch.get_num_threads()} torch threads (one where a row says so); "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; "
        f"load average {os.getloadavg()[0]:.1f} at the start; best of {rounds} interleaved "
        "rounds per row.",
        "",
        "| target | measured | ratio | goal | met |",
        "|---|---|---|---|---|",
    ]

    def add(rows: list[str]) -> None:
        lines.extend(rows)
        for row in rows:
            log(row)

    if train_step is None:
        add(["| toy training step, `make demo` training | skipped: no step given | | | |"])
    else:
        add(_train_rows(train_step, train_iterations, rounds))
    add([_gemm_row(gemm_n, rounds)])
    add(_layer_rows(layer_n, rounds))
    add(_grouping_rows(quick, seed))
    add([_boundary_row(bsds)])
    lines += [
        "",
        "Not measured here: eval-boundaries on a 200-image set (needs BSDS500's test split; "
        "`pixelgroup eval-boundaries`, docs/boundaries.md)"
        + (
            "; the GPU rows (no CUDA device: `benchmarks/gpu_check.sh` on a GPU machine)."
            if not torch.cuda.is_available()
            else "; the GPU rows (run `benchmarks/gpu_check.sh` against docs/benchmarks.md §4)."
        ),
        f"load average {os.getloadavg()[0]:.1f} at the end",
    ]
    return lines
