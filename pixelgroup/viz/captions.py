"""Text captions drawn on instance overlays (e.g. "cat 0.93" at each instance)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pixelgroup.viz.colors import PALETTE

__all__ = ["draw_captions"]

_LUMA = np.array([0.299, 0.587, 0.114])  # Rec. 601 luma weights of RGB


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
