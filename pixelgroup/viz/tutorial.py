"""The toy tutorial's pictures of an embedding model on a few images (``pixelgroup demo``).

* ``loops.png``: per image, the image, its ground truth, the embedding as RGB after GBMS loops
  0..T, and the prediction;
* ``loop_instances.png``: the instances read off each loop's embedding (grouped as it is, no
  further shifting), showing how the loops consolidate groups;
* ``sphere.png``: the 3-D embedding of one image on the unit sphere before and after T loops,
  coloured by ground-truth instance (D = 3 only);
* ``predictions.png``: ground-truth and predicted instances over each image, side by side;
* ``loss_curves.png``: training loss per loop index (when a history is given).

The task (``tasks/base.py::TaskBase.figures``) runs the model and says how an embedding is
grouped; this module only shifts and draws.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from pixelgroup.ops import RecurrentMeanShift
from pixelgroup.viz.colors import embedding_to_rgb, labels_to_rgb, overlay
from pixelgroup.viz.figures import loss_curves, overlay_grid, panel_grid, sphere_scatter

__all__ = ["tutorial_figures", "FIGURE_LOOPS"]

FIGURE_LOOPS = (0, 1, 2, 3, 5, 10)
"""The GBMS loops the figures show (those below ``grouping.num_iters``, then that one)."""


@torch.no_grad()
def tutorial_figures(
    images: torch.Tensor,
    truths: torch.Tensor,
    embeddings: torch.Tensor,
    group: Callable[[torch.Tensor, int | None], torch.Tensor],
    *,
    bandwidth: float,
    loops: Sequence[int],
    out_dir: str | Path,
    history: Sequence[dict[str, float]] | None = None,
) -> list[Path]:
    """Write the tutorial PNGs (module docstring) into ``out_dir``; returns their paths.

    Args:
        images: ``(B, 3, H, W)`` in [0, 1].
        truths: ``(B, H, W)`` ground-truth instance ids (0 background).
        embeddings: ``(B, D, H, W)`` unit embeddings of the images.
        group: ``group(embedding (D, H, W), num_iters) -> labels (H, W)``: the task's
            grouping, ``num_iters`` None for its own number of loops, 0 for none.
        bandwidth: δ of the GBMS loops drawn.
        loops: the loops to show (their largest is run).
        history: training history (``loss_iter<t>`` per epoch) for ``loss_curves.png``.

    Cost: ``max(loops)`` dense GBMS loops per image, O((H W)²) each: small images only.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # dense: N = H*W is small here, and the explicit kernel is much faster than SDPA on CPU
    shift = RecurrentMeanShift(bandwidth, max(loops), impl="dense")
    emb_rows, inst_rows, overlays, spheres = [], [], [], None
    for image_t, truth, emb in zip(images, truths, embeddings, strict=True):
        iterates = shift(emb[None])
        image = image_t.permute(1, 2, 0).cpu().numpy()
        gt = truth.cpu().numpy()
        pred = group(emb, None).cpu().numpy()
        emb_rows.append(
            [image, labels_to_rgb(gt)]
            + [embedding_to_rgb(iterates[t][0].cpu()) for t in loops]
            + [labels_to_rgb(pred)]
        )
        per_loop = [labels_to_rgb(group(iterates[t][0], 0).cpu().numpy()) for t in loops]
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
