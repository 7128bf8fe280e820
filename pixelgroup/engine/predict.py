"""Inference on image files: instance label maps, overlays and COCO-style RLE results.

Class-agnostic instances (:func:`write_prediction`) and VOC semantic instances
(:func:`write_semantic_prediction`, overlay captioned with class names) share the layout
``STEM_labels.png`` / ``STEM_overlay.png`` / ``STEM.json``; every file is written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from pycocotools import mask as mask_utils
from torch import nn

from pixelgroup._atomic import atomic_path
from pixelgroup.data.io import write_png
from pixelgroup.engine.tasks import extract_instances
from pixelgroup.experiment import ExperimentConfig
from pixelgroup.metrics import instance_map
from pixelgroup.postprocess.semantic_instances import SemanticInstances
from pixelgroup.viz import PALETTE, overlay

__all__ = [
    "predict_image",
    "instances_to_coco",
    "write_prediction",
    "masks_to_labels",
    "draw_captions",
    "write_semantic_prediction",
]


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


_LUMA = np.array([0.299, 0.587, 0.114])  # Rec. 601 luma weights of RGB


def masks_to_labels(masks: torch.Tensor) -> np.ndarray:
    """``masks (K, H, W)`` bool, best first -> ``(H, W)`` uint16 ids 1..K (0 = none).

    Where masks overlap the earlier (higher-scored) one wins.
    """
    labels = np.zeros(masks.shape[1:], dtype=np.uint16)
    for k in range(len(masks) - 1, -1, -1):
        labels[masks[k].numpy()] = k + 1
    return labels


def draw_captions(rgb: np.ndarray, labels: np.ndarray, captions: list[str]) -> np.ndarray:
    """Write ``captions[k - 1]`` at the top-left of instance k of ``labels (H, W)`` on
    ``rgb (H, W, 3)`` uint8, on a box of the instance's overlay colour (black or white ink,
    whichever reads better) -> ``(H, W, 3)`` uint8."""
    picture = Image.fromarray(rgb)
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default()
    height, width = labels.shape
    for k, caption in enumerate(captions, start=1):
        ys, xs = np.nonzero(labels == k)
        if not len(ys):
            continue
        left, top, right, bottom = draw.textbbox((0, 0), caption, font=font)
        x = max(0, min(int(xs.min()), width - (right - left) - 2))
        y = max(0, min(int(ys.min()), height - (bottom - top) - 2))
        colour = PALETTE[(k - 1) % (len(PALETTE) - 1) + 1]  # labels_to_rgb's colour for id k
        fill = tuple(int(round(c * 255)) for c in colour)
        draw.rectangle((x, y, x + right - left + 1, y + bottom - top + 1), fill=fill)
        ink = (0, 0, 0) if float(colour @ _LUMA) > 0.5 else (255, 255, 255)
        draw.text((x + 1 - left, y + 1 - top), caption, fill=ink, font=font)
    return np.asarray(picture)


def write_semantic_prediction(
    out_dir: str | Path, stem: str, image: torch.Tensor, instances: SemanticInstances
) -> list[Path]:
    """Write the VOC semantic instances of ``image (3, H, W)`` in [0, 1] atomically.

    ``instances`` has ``masks (K, H, W)`` (best first), ``classes (K,)`` in 1..20 and
    ``scores (K,)``. Files: ``STEM_labels.png`` (uint16 ids 1..K in that order),
    ``STEM_overlay.png`` (instances over the image, captioned "class score") and ``STEM.json``
    (``pixelgroup eval-instances`` records: RLE ``segmentation``, ``category_id``, ``score``).
    """
    out_dir = Path(out_dir)
    masks, classes, scores = (
        t.cpu() for t in (instances.masks, instances.classes, instances.scores)
    )
    if masks.shape[1:] != image.shape[1:]:
        raise ValueError(
            f"instance masks (K, H, W) must match the image (3, H, W), got {tuple(masks.shape)} "
            f"and {tuple(image.shape)}"
        )
    records = instance_map.instances_to_coco(stem, masks, classes, scores)
    labels = masks_to_labels(masks)
    blended = (overlay(image.permute(1, 2, 0).numpy(), labels) * 255).round().astype(np.uint8)
    captions = [
        f"{instance_map.VOC_CLASSES[c - 1]} {s:.2f}"
        for c, s in zip(classes.tolist(), scores.tolist(), strict=True)
    ]
    paths = [
        out_dir / f"{stem}_labels.png",
        out_dir / f"{stem}_overlay.png",
        out_dir / f"{stem}.json",
    ]
    write_png(labels, paths[0])
    write_png(draw_captions(blended, labels, captions), paths[1])
    with atomic_path(paths[2]) as tmp:
        tmp.write_text(json.dumps(records, indent=1) + "\n")
    return paths
