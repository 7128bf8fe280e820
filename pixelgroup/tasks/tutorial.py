"""Figures of a trained instance model on its evaluation split (the toy tutorial's pictures).

* ``loops.png``: per image, the image, its ground truth, the embedding as RGB after GBMS loops
  0..T, and the prediction;
* ``loop_instances.png``: the instances read off each loop's embedding (the grouping of
  :func:`~pixelgroup.tasks.instance.instances_from_embedding` without further shifting),
  showing how the loops consolidate groups;
* ``sphere.png``: the 3-D embedding of one image on the unit sphere before and after T loops,
  coloured by ground-truth instance (D = 3 only);
* ``predictions.png``: ground-truth and predicted instances over each image, side by side;
* ``loss_curves.png``: training loss per loop index (when a history is given).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from pixelgroup.config import ExperimentConfig
from pixelgroup.models import EmbeddingOutput
from pixelgroup.ops import RecurrentMeanShift
from pixelgroup.tasks.instance import InstanceTask, instances_from_embedding
from pixelgroup.viz import (
    embedding_to_rgb,
    labels_to_rgb,
    loss_curves,
    overlay,
    overlay_grid,
    panel_grid,
    sphere_scatter,
)

__all__ = ["make_figures", "FIGURE_LOOPS"]

FIGURE_LOOPS = (0, 1, 2, 3, 5, 10)


@torch.no_grad()
def make_figures(
    run: Callable[[torch.Tensor], EmbeddingOutput],
    cfg: ExperimentConfig,
    out_dir: str | Path,
    *,
    history: Sequence[dict[str, float]] | None = None,
    num_images: int = 6,
    loops: Sequence[int] | None = None,
) -> list[Path]:
    """Write the tutorial PNGs for the first ``num_images`` of ``cfg.data.eval_split``.

    ``run``: the model at inference, ``images (B, C, H, W) -> EmbeddingOutput`` (an
    :class:`~pixelgroup.engine.inference.InferenceRunner`; this module never runs a model).

    ``loops``: the GBMS loops to show; default those of FIGURE_LOOPS up to
    ``grouping.num_iters``, plus that last loop.
    """
    if loops is None:
        last = cfg.grouping.num_iters
        loops = sorted({t for t in FIGURE_LOOPS if t < last} | {last})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    task = InstanceTask()
    dataset = task.build_dataset(cfg, cfg.data.eval_split)
    samples = [dataset[i] for i in range(min(num_images, len(dataset)))]  # type: ignore[arg-type]
    batch = task.collate(samples)
    embeddings = run(task.batch_image(batch)).embedding
    # dense: N = H*W is small here, and the explicit kernel is much faster than SDPA on CPU
    shift = RecurrentMeanShift(cfg.grouping.bandwidth, max(loops), impl="dense")

    emb_rows, inst_rows, overlays, spheres = [], [], [], None
    for sample, emb in zip(samples, embeddings, strict=True):
        iterates = shift(emb[None])
        image = sample.image.permute(1, 2, 0).numpy()
        gt = sample.instance.numpy()
        pred = instances_from_embedding(emb, cfg)[0].cpu().numpy()
        emb_rows.append(
            [image, labels_to_rgb(gt)]
            + [embedding_to_rgb(iterates[t][0].cpu()) for t in loops]
            + [labels_to_rgb(pred)]
        )
        per_loop = [
            labels_to_rgb(
                instances_from_embedding(iterates[t][0], cfg, num_iters=0)[0].cpu().numpy()
            )
            for t in loops
        ]
        inst_rows.append([image, labels_to_rgb(gt)] + per_loop)
        overlays += [overlay(image, gt), overlay(image, pred)]
        if spheres is None and emb.shape[0] == 3 and len(np.unique(gt)) > 2:
            spheres = ([iterates[0][0].cpu().numpy(), iterates[-1][0].cpu().numpy()], gt)

    titles = ["image", "ground truth"] + [f"loop {t}" for t in loops]
    paths = [
        panel_grid(emb_rows, titles + ["predicted"], out_dir / "loops.png"),
        panel_grid(inst_rows, titles, out_dir / "loop_instances.png"),
    ]
    if spheres is not None:
        paths.append(
            sphere_scatter(
                spheres[0],
                spheres[1],
                ["network output (loop 0)", f"after {max(loops)} GBMS loops"],
                out_dir / "sphere.png",
            )
        )
    paths.append(
        overlay_grid(
            overlays,
            out_dir / "predictions.png",
            ncols=4,
            title="ground truth | predicted instances, per canvas (overlays)",
        )
    )
    if history:
        paths.append(loss_curves(history, out_dir / "loss_curves.png"))
    return paths
