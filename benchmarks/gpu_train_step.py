"""One training step of a VOC recipe at 512 x 512, batch 8, T = 5 GBMS loops: time and peak memory.

Run by ``benchmarks/gpu_check.sh`` (never as a test). The model, loss and optimiser are the
recipe's (``configs/voc_proposals.yaml``: ResNet-101 at output stride 8, a stride-8 embedding,
so 64 x 64 = 4,096 points per image; its stage 2 with ``loss.num_iters`` set to T); the batch
is synthetic scenes of textured shapes (:func:`pixelgroup.data.synthetic.draw_scene`). Each
autocast mode is timed over ``--steps`` steps after one warm-up step (median), with
``torch.cuda.max_memory_allocated`` since the warm-up. Prints a Markdown table and writes JSON.

    .venv/bin/python benchmarks/gpu_train_step.py --out runs/gpu_check/train_step.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from pixelgroup.config import ExperimentConfig, load_config
from pixelgroup.data.sample import InstanceSample
from pixelgroup.data.synthetic import draw_scene
from pixelgroup.engine.checkpoint import build_model_seeded
from pixelgroup.engine.distributed import autocast, make_grad_scaler
from pixelgroup.tasks import get_task


def _batch(size: int, batch: int) -> InstanceSample:
    rng = np.random.default_rng(0)
    samples = []
    for _ in range(batch):
        scene = draw_scene(rng, (size, size))
        semantic = np.concatenate([[0], scene.classes])[scene.instance]
        samples.append(
            InstanceSample(
                torch.from_numpy(scene.image).permute(2, 0, 1).float() / 255,
                torch.from_numpy(scene.instance),
                torch.from_numpy(semantic),
            )
        )
    return get_task("proposals").collate(samples)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(
    config: str, size: int, batch: int, loops: int, amp: str, steps: int, device_name: str = "cuda"
) -> dict:
    cfg = load_config(
        ExperimentConfig,
        config,
        [f"device={device_name}", f"loss.num_iters={loops}", f"train.amp={amp}", "optim.lr=0.0001"],
    )
    task = get_task(cfg.task)
    device = torch.device(device_name)
    cuda = device.type == "cuda"
    model = build_model_seeded(cfg).to(device).train()
    criterion = task.build_loss(cfg)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr, momentum=0.9)
    scaler = make_grad_scaler(amp, device)
    generator = torch.Generator(device=device).manual_seed(0)
    data = _batch(size, batch)
    images = data.image.to(device)
    times = []
    for step in range(steps + 1):
        if step == 1 and cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        _sync(device)
        start = time.perf_counter()
        with autocast(amp, device):
            output = model(images)
        loss = criterion(output, data, generator)["loss"]
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        _sync(device)
        if step > 0:
            times.append(time.perf_counter() - start)
    return {
        "config": config,
        "size": size,
        "batch": batch,
        "loops": loops,
        "amp": amp,
        "points_per_image": int(output.embedding.shape[-2] * output.embedding.shape[-1]),
        "sec_per_step": statistics.median(times),
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "loss": float(loss.detach()),
        "gpu": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/voc_proposals.yaml")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--loops", type=int, default=5)
    p.add_argument("--amp", nargs="+", default=["none", "bf16", "fp16"])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("runs/gpu_check/train_step.json"))
    p.add_argument("--device", default="cuda", help="cuda (cpu: a smoke test of this script)")
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_train_step.py needs a CUDA device")
    rows = []
    for amp in args.amp:
        try:
            rows.append(
                measure(
                    args.config, args.size, args.batch, args.loops, amp, args.steps, args.device
                )
            )
        except torch.cuda.OutOfMemoryError as e:
            rows.append({"amp": amp, "error": f"out of memory: {e}".splitlines()[0]})
        if args.device == "cuda":
            torch.cuda.empty_cache()
    print(
        f"| {args.size}x{args.size}, batch {args.batch}, T = {args.loops} | s / step | peak GiB |"
    )
    print("|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| amp {r['amp']} | {r['error']} | |")
        else:
            peak = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.1f}"
            print(f"| amp {r['amp']} ({r['gpu']}) | {r['sec_per_step']:.3f} | {peak} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
