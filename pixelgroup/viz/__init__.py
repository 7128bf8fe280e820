"""Pictures of embeddings, groupings and benchmark curves (PNG; matplotlib imported lazily,
Agg backend)."""

from pixelgroup.viz.captions import draw_captions
from pixelgroup.viz.colors import PALETTE, embedding_to_rgb, labels_to_rgb, mosaic, overlay
from pixelgroup.viz.curves import plot_average_recall, plot_pr_curves
from pixelgroup.viz.figures import (
    loss_curves,
    overlay_grid,
    panel_grid,
    pyplot,
    save_figure,
    sphere_scatter,
)

__all__ = [
    "PALETTE",
    "embedding_to_rgb",
    "labels_to_rgb",
    "overlay",
    "mosaic",
    "draw_captions",
    "pyplot",
    "save_figure",
    "panel_grid",
    "sphere_scatter",
    "loss_curves",
    "overlay_grid",
    "plot_pr_curves",
    "plot_average_recall",
]
