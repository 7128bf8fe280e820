"""Exported graph (ONNX Runtime, TorchScript) vs PyTorch on CPU: max difference and latency.

Exports a checkpoint's model with its T GBMS loops (``pixelgroup.engine.export``) and times,
side by side in one run and interleaved (best of ``--repeats``, the machine may be shared):

* ``pytorch``: the model, then :func:`pixelgroup.ops.recurrent_mean_shift` (its default CPU
  implementation, the tiled kernel) on the stride x stride pooled embedding: the reference;
* ``pytorch (graph)``: the exported module run eagerly (dense softmax loops);
* ``torchscript``: the traced file;
* ``onnxruntime``: the ONNX file on the CPU execution provider.

The input is a 256 x 256 mosaic of 4 x 4 toy test canvases (``--size`` changes it). Then, on
``--canvases`` toy test canvases at their own 64 x 64, the instances read off the exported
``shifted`` output with ``group_pixels(..., num_iters=0)`` are compared with those of
``pixelgroup predict`` (adjusted Rand index, and how many canvases give the same partition).

    python benchmarks/export_latency.py --checkpoint runs/demo/checkpoint.pt --threads 1
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pixelgroup.analysis.benchmark import cpu_description
from pixelgroup.cli import main as cli_main
from pixelgroup.data import ToyDigits
from pixelgroup.data.io import write_png
from pixelgroup.engine.checkpoint import load_model
from pixelgroup.engine.export import GroupingGraph, export_onnx, export_torchscript
from pixelgroup.ops import normalize_to_sphere, recurrent_mean_shift
from pixelgroup.postprocess import group_pixels


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", type=Path, default=Path("runs/demo/checkpoint.pt"))
    p.add_argument("--size", type=int, default=256, help="input height = width")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--num-iters", type=int, default=5, help="T GBMS loops in the graph")
    p.add_argument("--bandwidth", type=float, help="default: grouping.bandwidth")
    p.add_argument("--stride", type=int, help="default: grouping.stride")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5, help="best of this many runs")
    p.add_argument("--canvases", type=int, default=20, help="canvases for the instance check")
    return p.parse_args()


def mosaic(size: int, batch: int) -> torch.Tensor:
    """``(batch, 3, size, size)`` tiled from toy test canvases (64 x 64 each)."""
    tiles = -(-size // 64)
    data = ToyDigits("test", length=batch * tiles * tiles)
    canvases = torch.stack([data[i].image for i in range(len(data))])
    grid = canvases.reshape(batch, tiles, tiles, 3, 64, 64).permute(0, 3, 1, 4, 2, 5)
    return grid.reshape(batch, 3, tiles * 64, tiles * 64)[..., :size, :size].contiguous()


def reference(model, images, num_iters, bandwidth, stride):
    with torch.no_grad():
        embedding = model(images).embedding
        x = embedding
        if stride > 1:
            x = normalize_to_sphere(F.avg_pool2d(embedding, stride, ceil_mode=True), dim=1)
        b, d, h, w = x.shape
        last = recurrent_mean_shift(x.flatten(2).transpose(1, 2), bandwidth, num_iters)[-1]
    return last.transpose(1, 2).reshape(b, d, h, w).numpy(), embedding.numpy()


def best_times(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():  # warm-up: first-call allocations and graph optimisation
        run()
    for _ in range(repeats):  # interleaved, so a busy spell hits every row alike
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def cpu_kind() -> str:
    return f"{cpu_description()}, {os.cpu_count()} logical cores"


def deploy_labels(shifted: np.ndarray, embedding: np.ndarray, cfg) -> np.ndarray:
    """docs/export.md's recipe: ``(D, H_s, W_s)`` shifted + ``(D, H, W)`` embedding -> labels.

    group_pixels on the shifted points (the loops already ran), each group's label spread
    over its stride x stride cells, then every pixel joins the group whose mean embedding is
    nearest in cosine (as ``pixelgroup predict`` does after grouping a pooled embedding).
    """
    g = cfg.grouping
    groups = group_pixels(
        torch.from_numpy(shifted),
        bandwidth=g.bandwidth,
        num_iters=0,
        threshold=g.threshold,
        min_area=max(1, round(g.min_area / g.stride**2)),
    )
    d, h, w = embedding.shape
    coarse = groups.labels.numpy().repeat(g.stride, 0).repeat(g.stride, 1)[:h, :w].ravel()
    flat = embedding.reshape(d, -1)
    sums = np.stack([np.bincount(coarse, weights=row, minlength=coarse.max() + 1) for row in flat])
    return (sums.T @ flat / (np.linalg.norm(sums, axis=0)[:, None] + 1e-12)).argmax(0).reshape(h, w)


def instance_agreement(checkpoint: Path, cfg, onnx_session, canvases: int) -> tuple[float, int]:
    """Mean ARI and identical partitions: exported graph + :func:`deploy_labels` vs predict."""
    from sklearn.metrics import adjusted_rand_score

    data = ToyDigits("test", length=canvases)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(canvases):
            rgb = (data[i].image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            paths.append(Path(tmp) / f"canvas{i}.png")
            write_png(rgb, paths[-1])
        out = Path(tmp) / "pred"
        args = ["predict", "--checkpoint", str(checkpoint), "-o", str(out), "--quiet"]
        assert cli_main(args + [str(p) for p in paths]) == 0
        aris = []
        for path in paths:
            predicted = np.asarray(Image.open(out / f"{path.stem}_labels.png")).astype(np.int64)
            image = (np.asarray(Image.open(path), np.float32) / 255).transpose(2, 0, 1)[None]
            shifted, embedding = onnx_session.run(None, {"images": image})[:2]
            labels = deploy_labels(shifted[0], embedding[0], cfg)
            aris.append(adjusted_rand_score(predicted.ravel(), labels.ravel()))
    return float(np.mean(aris)), sum(a == 1.0 for a in aris)


def main() -> None:
    args = parse_args()
    import onnxruntime as ort

    torch.set_num_threads(args.threads)
    model, cfg, _ = load_model(args.checkpoint)
    bandwidth = cfg.grouping.bandwidth if args.bandwidth is None else args.bandwidth
    stride = cfg.grouping.stride if args.stride is None else args.stride
    settings = {"num_iters": args.num_iters, "bandwidth": bandwidth, "stride": stride}
    images = mosaic(args.size, args.batch)

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(model, Path(tmp) / "model.onnx", **settings)
        ts_path = export_torchscript(model, Path(tmp) / "model.pt", **settings)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        traced = torch.jit.load(str(ts_path))
    graph = GroupingGraph(model, **settings)
    feed = {"images": images.numpy()}

    def torch_run(module):
        def run():
            with torch.no_grad():
                return [t.numpy() for t in module(images)]

        return run

    runs: dict[str, Callable[[], list[np.ndarray]]] = {
        "pytorch": lambda: list(reference(model, images, **settings)),
        "pytorch (graph)": torch_run(graph),
        "torchscript": torch_run(traced),
        "onnxruntime": lambda: session.run(None, feed),
    }
    expected = runs["pytorch"]()
    times = best_times(runs, args.repeats)

    n = (-(-args.size // stride)) ** 2
    print(
        f"command: python benchmarks/export_latency.py --checkpoint {args.checkpoint} "
        f"--size {args.size} --batch {args.batch} --num-iters {args.num_iters} "
        f"--threads {args.threads} --repeats {args.repeats}"
    )
    print(f"CPU: {cpu_kind()}; threads: {args.threads}")
    print(
        f"torch {torch.__version__}, onnxruntime {ort.__version__}; input {tuple(images.shape)}, "
        f"T = {args.num_iters}, δ = {bandwidth}, stride {stride} (N = {n} points per image)"
    )
    print()
    print("| run | best (ms) | median (ms) | max abs diff `shifted` | max abs diff `embedding` |")
    print("|---|---:|---:|---:|---:|")
    for name, run in runs.items():
        got = run()
        diffs = [
            float(np.abs(np.asarray(a) - b).max()) for a, b in zip(got, expected, strict=False)
        ]
        print(
            f"| {name} | {min(times[name]) * 1e3:.0f} | {np.median(times[name]) * 1e3:.0f} | "
            f"{diffs[0]:.1e} | {diffs[1]:.1e} |"
        )
    if args.canvases:
        with tempfile.TemporaryDirectory() as tmp:
            path = export_onnx(
                model,
                Path(tmp) / "default.onnx",
                num_iters=cfg.grouping.num_iters,
                bandwidth=cfg.grouping.bandwidth,
                stride=cfg.grouping.stride,
            )
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        ari, same = instance_agreement(args.checkpoint, cfg, session, args.canvases)
        g = cfg.grouping
        print()
        print(
            f"instances on {args.canvases} toy test canvases, graph at the checkpoint's grouping "
            f"(T = {g.num_iters}, δ = {g.bandwidth}, stride {g.stride}) + group_pixels("
            f"num_iters=0) vs `pixelgroup predict`: mean ARI {ari:.4f}, identical partitions "
            f"{same}/{args.canvases}"
        )


if __name__ == "__main__":
    main()
