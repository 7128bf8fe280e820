"""Pipeline check for VOC proposals: overfit the 4 sample images and compare AR@k before/after.

This is NOT a VOC result: it trains and evaluates on the same 4 images (../shared/data/voc) at
a small size on the CPU, training only the heads on a frozen EfficientNet-Lite0 (its ImageNet
weights ship offline; ResNet weights would need a download). It shows that data,
model, recurrent loss, proposal generation and the AR benchmark work together: a working
pipeline must raise AR@10 well above the untrained model's.

    .venv/bin/python benchmarks/proposals_overfit.py --steps 150 --figures

Writes ``results.json`` (AR/recall of the untrained and the overfit model, timings), the AR
curve ``ar_curve.png``, the visual summary ``summary.png`` and both models' proposals at full
image resolution (``proposals_*.json``, scored by ``pixelgroup eval-proposals`` into
``eval_*_full_res.json``) into ``--out``; ``--figures`` copies the PNGs to
``docs/figures/proposals/``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from pixelgroup._atomic import write_json
from pixelgroup.cli import main as cli_main
from pixelgroup.config import ExperimentConfig, apply_overrides, from_dict, load_config, to_dict
from pixelgroup.data.coco import masks_to_results
from pixelgroup.data.transforms import ResizeSample
from pixelgroup.data.voc import open_instance_dataset
from pixelgroup.engine import CHECKPOINT_NAME, evaluate, load_checkpoint, load_model, train
from pixelgroup.engine.checkpoint import build_model_seeded
from pixelgroup.metrics.proposals import PROPOSAL_COUNTS
from pixelgroup.ops import recurrent_mean_shift
from pixelgroup.tasks.proposals import proposals_from_embedding
from pixelgroup.viz import plot_average_recall

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT.parent / "shared" / "data" / "voc"

# Read off the authors' AR plot (±0.01); drawn in the AR figure for reference.
PAPER_POINTS = {
    "paper AR@[.5:.95]": ((11, 0.56), (18, 0.58), (60, 0.61)),
    "paper recall@0.5": ((11, 0.76), (18, 0.78), (60, 0.81)),
    "SharpMask/DeepMask AR (paper plot)": ((10, 0.08), (60, 0.19)),
}

# The full-scale config, shrunk to a CPU pipeline check on the samples.
OVERRIDES = [
    f"data.root={SAMPLES}",
    "data.options={size: [144, 192]}",
    "data.batch_size=4",
    "data.num_workers=0",
    "device=cpu",
    "model.options={backbone: efficientnet_lite0, pretrained: true, freeze_backbone: true, "
    "embedding_dim: 64, output_stride: 8, embedding_stride: 4, head_channels: 128}",
    "loss.num_iters=2",
    "loss.sample_ratio=0.5",
    "loss.stride=2",
    "optim={name: adam, lr: 0.001, poly_power: 0.9, weight_decay: 0.0}",
    "train.epochs=1",
]


def _projection(dim: int) -> torch.Tensor:
    """A fixed random Gaussian D -> 3 projection (the original shows 64-D embeddings so)."""
    return torch.randn(dim, 3, generator=torch.Generator().manual_seed(777))


def _to_rgb(embedding: torch.Tensor, proj: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """``(D, h, w)`` -> ``(H, W, 3)`` min-max normalised projection, upsampled (nearest)."""
    rgb = torch.einsum("dhw,dc->chw", embedding, proj)
    lo, hi = rgb.amin(dim=(1, 2), keepdim=True), rgb.amax(dim=(1, 2), keepdim=True)
    rgb = (rgb - lo) / (hi - lo).clamp_min(1e-8)
    rgb = torch.nn.functional.interpolate(rgb[None], size=size, mode="nearest")[0]
    return rgb.permute(1, 2, 0).numpy()


def _overlay(image: np.ndarray, masks: torch.Tensor) -> np.ndarray:
    """Colour each mask (first drawn last, so the best stays on top) over a dimmed image."""
    out = 0.4 * image.copy()
    colours = np.array([[1, 0.2, 0.2], [0.2, 1, 0.2], [0.3, 0.5, 1], [1, 1, 0.2], [1, 0.3, 1]])
    for i in reversed(range(len(masks))):
        m = masks[i].numpy()
        out[m] = 0.4 * out[m] + 0.6 * colours[i % len(colours)]
    return out


@torch.no_grad()
def export_proposals(model: torch.nn.Module, cfg: ExperimentConfig, path: Path) -> Path:
    """Proposals of ``model`` for every sample at its ORIGINAL resolution, as COCO-RLE JSON.

    The network sees the resized image (``data.options.size``); masks are upsampled to the
    full image, so ``pixelgroup eval-proposals`` scores them against the full-size GT.
    """
    resize = ResizeSample(tuple(cfg.data.options["size"]))
    data = open_instance_dataset(cfg.data.root, cfg.data.eval_split)
    records = []
    model.eval()
    for image_id, sample in zip(data.image_ids, data, strict=True):
        embedding = model(resize(sample).image[None]).embedding[0]
        props = proposals_from_embedding(embedding, tuple(sample.instance.shape), cfg)
        records += masks_to_results(image_id, props.masks, props.scores)
    write_json(records, path)
    return path


@torch.no_grad()
def visual_summary(models: dict[str, torch.nn.Module], cfg: ExperimentConfig, path: Path) -> None:
    """Rows: images; columns: image, GT, each model's embedding before and after T GBMS
    loops (random projection to RGB), the overfit model's top-5 proposals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pixelgroup.tasks import get_task

    task = get_task(cfg.task)
    data = task.build_dataset(cfg, cfg.data.eval_split)
    cols = ["image", "ground truth"]
    for name in models:
        cols += [f"{name}: embedding", f"{name}: after {cfg.grouping.num_iters} loops"]
    cols.append(f"{list(models)[-1]}: top-5 proposals")
    fig, axes = plt.subplots(len(data), len(cols), figsize=(2.2 * len(cols), 1.8 * len(data)))
    for row, sample in enumerate(data):
        image = sample.image.permute(1, 2, 0).numpy()
        size = tuple(sample.instance.shape)
        panels = [image, sample.instance.numpy()]
        for model in models.values():
            emb = model.eval()(sample.image[None]).embedding[0]
            d, h, w = emb.shape
            points = emb.flatten(1).T[None]
            shifted = recurrent_mean_shift(points, cfg.grouping.bandwidth, cfg.grouping.num_iters)
            proj = _projection(d)
            panels.append(_to_rgb(emb, proj, size))
            panels.append(_to_rgb(shifted[-1][0].T.reshape(d, h, w), proj, size))
        props = proposals_from_embedding(emb, size, cfg)
        panels.append(_overlay(image, props.masks[:5]))
        for col, panel in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(panel, cmap="tab20" if col == 1 else None, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if row == 0:
                ax.set_title(cols[col], fontsize=7)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=150, help="training iterations")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "proposals_overfit")
    parser.add_argument("--figures", action="store_true", help="copy PNGs to docs/figures")
    parser.add_argument("--set", action="append", default=[], help="extra config overrides")
    parser.add_argument(
        "--skip-train", action="store_true", help="reuse --out/checkpoint.pt (no training)"
    )
    args = parser.parse_args(argv)
    if not SAMPLES.is_dir():
        print(f"sample folder not found: {SAMPLES}", file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, torch.get_num_threads()))
    base = load_config(ExperimentConfig, ROOT / "configs" / "voc_proposals.yaml")
    overrides = [*OVERRIDES, f"train.iters_per_epoch={args.steps}", *args.set]
    cfg = from_dict(ExperimentConfig, apply_overrides(to_dict(base), overrides))
    args.out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    untrained = build_model_seeded(cfg)
    before = evaluate(untrained, cfg)
    t_eval = time.perf_counter() - t0
    t0 = time.perf_counter()
    if args.skip_train:
        history = load_checkpoint(args.out / CHECKPOINT_NAME)["history"]
    else:
        history = train(cfg, args.out).history
    t_train = time.perf_counter() - t0
    trained, _, _ = load_model(args.out / CHECKPOINT_NAME)
    after = evaluate(trained, cfg)

    # The same proposals at full image resolution, scored by the CLI on the full-size GT.
    full_res = {}
    for name, model in (("untrained", untrained), ("overfit", trained)):
        props = export_proposals(model, cfg, args.out / f"proposals_{name}.json")
        out_json = args.out / f"eval_{name}_full_res.json"
        cli_main(["eval-proposals", str(props), str(SAMPLES), "--output", str(out_json)])
        full_res[name] = json.loads(out_json.read_text())

    curves = {
        "untrained": {k: before[f"AR@{k}"] for k in PROPOSAL_COUNTS},
        f"overfit ({args.steps} steps, same 4 images)": {
            k: after[f"AR@{k}"] for k in PROPOSAL_COUNTS
        },
    }
    plot_average_recall(
        curves,
        args.out / "ar_curve.png",
        title="Pipeline check: 4 VOC samples (not VOC val)",
        references=PAPER_POINTS,
    )
    visual_summary({"untrained": untrained, "overfit": trained}, cfg, args.out / "summary.png")
    losses = [h["loss"] for h in history]
    write_json(
        {
            "note": "pipeline check: trained and evaluated on the same 4 sample images",
            "command": " ".join(sys.argv),
            "overrides": overrides,
            "untrained": before,
            "overfit": after,
            "full_resolution_via_cli": full_res,
            "loss_first10_mean": float(np.mean(losses[:10])),
            "loss_last10_mean": float(np.mean(losses[-10:])),
            "train_seconds": t_train,
            "eval_seconds_untrained": t_eval,
        },
        args.out / "results.json",
    )
    for key in ("AR@1", "AR@10", "AR@100", "R50@10", "box_AR@10"):
        print(f"{key}: untrained {before[key]:.3f} -> overfit {after[key]:.3f}")
        u, o = full_res["untrained"][key], full_res["overfit"][key]
        print(f"{key} (full resolution, eval-proposals): untrained {u:.3f} -> overfit {o:.3f}")
    print(f"loss {np.mean(losses[:10]):.4f} -> {np.mean(losses[-10:]):.4f}; train {t_train:.0f} s")
    if args.figures:
        dest = ROOT / "docs" / "figures" / "proposals"
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("ar_curve.png", "summary.png"):
            shutil.copyfile(args.out / name, dest / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
