"""Pictures of embeddings and groupings (PNG; matplotlib imported lazily, Agg backend)."""

from pixelgroup.viz.colors import PALETTE, embedding_to_rgb, labels_to_rgb, mosaic, overlay
from pixelgroup.viz.figures import loss_curves, panel_grid, save_figure, sphere_scatter

__all__ = [
    "PALETTE",
    "embedding_to_rgb",
    "labels_to_rgb",
    "overlay",
    "mosaic",
    "save_figure",
    "panel_grid",
    "sphere_scatter",
    "loss_curves",
]
