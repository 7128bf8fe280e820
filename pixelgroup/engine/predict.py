"""Inference on image files: instance label maps, overlays and COCO-style RLE results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch import nn

from pixelgroup._atomic import atomic_path
from pixelgroup.data.io import write_png
from pixelgroup.engine.tasks import extract_instances
from pixelgroup.experiment import ExperimentConfig
from pixelgroup.viz import overlay

__all__ = ["predict_image", "instances_to_coco", "write_prediction"]


@torch.no_grad()
def predict_image(
    model: nn.Module, cfg: ExperimentConfig, image: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``image (C, H, W)`` in [0, 1] -> ``labels (H, W)`` (0 = background) and ``scores (K,)``."""
    device = next(model.parameters()).device
    model.eval()
    embedding = model(image[None].to(device)).embedding[0]
    labels, scores = extract_instances(embedding, cfg)
    return labels.cpu(), scores.cpu()


def instances_to_coco(
    labels: np.ndarray, scores: np.ndarray, image_id: str
) -> list[dict[str, Any]]:
    """COCO result dicts (one per instance 1..K present in ``labels (H, W)``) with RLE masks.

    Each has ``image_id``, ``category_id`` 1 (class-agnostic), ``segmentation`` (RLE with
    string counts), ``score``, ``area`` and ``bbox`` [x, y, w, h]; the list suits
    ``pixelgroup eval-proposals`` and ``pycocotools.coco.COCO.loadRes``.
    """
    results = []
    for k in range(1, len(scores) + 1):
        mask = labels == k
        if not mask.any():
            continue
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        results.append(
            {
                "image_id": image_id,
                "category_id": 1,
                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
                "score": float(scores[k - 1]),
                "area": int(mask_utils.area(rle)),
                "bbox": [float(v) for v in mask_utils.toBbox(rle)],
            }
        )
    return results


def write_prediction(
    out_dir: str | Path, stem: str, image: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor
) -> list[Path]:
    """Write ``STEM_labels.png`` (uint16 ids), ``STEM_overlay.png`` and ``STEM.json`` atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lab = labels.numpy()
    paths = [
        out_dir / f"{stem}_labels.png",
        out_dir / f"{stem}_overlay.png",
        out_dir / f"{stem}.json",
    ]
    write_png(lab.astype(np.uint16), paths[0])
    rgb = image.permute(1, 2, 0).numpy()
    write_png((overlay(rgb, lab) * 255).round().astype(np.uint8), paths[1])
    with atomic_path(paths[2]) as tmp:
        tmp.write_text(json.dumps(instances_to_coco(lab, scores.numpy(), stem), indent=1) + "\n")
    return paths
