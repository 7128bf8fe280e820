"""What subnormal floats cost: each part timed as is and with ``torch.set_flush_denormal(True)``.

Parts (one torch thread): the toy recipe's training step (``configs/toy.yaml``: network forward,
loss, backward, optimiser step, on one fixed batch) and the GBMS layer alone, forward and
backward, on its fused kernels (D = 3) and on its torch products (D = 16), N = 4,096, δ = 0.1,
float32, upstream gradients of size 1e-5 (the loss's are of that order). Both variants of a
part take turns over ``--rounds`` rounds (best kept), so their ratio sees the same machine load;
a ratio near 1 means subnormals cost nothing. Intel cores pay about a hundred cycles per
subnormal operand, AMD's little, so run it on the kind at hand (docs/benchmarks.md §6).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/subnormals.py --rounds 3
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from pixelgroup.analysis.benchmark import cpu_description
from pixelgroup.config import ExperimentConfig, load_config, resolve_config
from pixelgroup.engine.train import FixedBatchStep
from pixelgroup.ops.tiled_gbms import tiled_blur


def _toy_parts() -> dict[str, Callable[[], None]]:
    step = FixedBatchStep.from_config(load_config(ExperimentConfig, resolve_config("toy"), []))
    state: dict[str, torch.Tensor] = {}

    def forward() -> None:
        state["loss"] = step.forward()

    def backward() -> None:
        step.backward(state.pop("loss"))

    return {"toy step: net + loss forward": forward, "toy step: backward + Adam": backward}


def _layer_parts(dim: int, what: str) -> dict[str, Callable[[], None]]:
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(1, 4096, dim, generator=g), dim=-1)
    x.requires_grad_()
    grad = 1e-5 * torch.randn(1, 4096, dim, generator=g)
    state: dict[str, torch.Tensor] = {}

    def forward() -> None:
        state["y"] = tiled_blur(x, 0.1)

    def backward() -> None:
        x.grad = None
        state.pop("y").backward(grad)

    return {
        f"GBMS {what} D = {dim}: forward": forward,
        f"GBMS {what} D = {dim}: backward": backward,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    parts = {**_toy_parts(), **_layer_parts(3, "fused"), **_layer_parts(16, "products")}
    pairs = list(zip(list(parts)[::2], list(parts)[1::2], strict=True))  # (forward, backward)
    best: dict[tuple[str, bool], float] = {}
    for round_ in range(args.rounds + 1):  # the first round warms up
        for first, second in pairs:
            for flush in (False, True) if round_ % 2 else (True, False):  # either goes first
                torch.set_flush_denormal(flush)
                for name in (first, second):
                    start = time.perf_counter()
                    parts[name]()
                    seconds = time.perf_counter() - start
                    if round_ > 0:
                        best[name, flush] = min(best.get((name, flush), float("inf")), seconds)
                torch.set_flush_denormal(False)
    print(f"{cpu_description()}, 1 thread, best of {args.rounds} interleaved rounds\n")
    print("| part | as is (s) | flush-to-zero (s) | ratio |")
    print("|---|---|---|---|")
    for name in parts:
        plain, flushed = best[name, False], best[name, True]
        print(f"| {name} | {plain:.3f} | {flushed:.3f} | {plain / flushed:.2f} |")


if __name__ == "__main__":
    main()
