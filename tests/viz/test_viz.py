import numpy as np
import pytest
import torch
from PIL import Image

from pixelgroup.viz import (
    embedding_to_rgb,
    labels_to_rgb,
    loss_curves,
    mosaic,
    overlay,
    panel_grid,
    sphere_scatter,
)


def _unit(d, h=6, w=5, seed=0):
    x = torch.randn(d, h, w, generator=torch.Generator().manual_seed(seed))
    return x / x.norm(dim=0, keepdim=True)


def test_embedding_to_rgb_fixed_map_for_3d():
    e = torch.zeros(3, 2, 2)
    e[0] = 1.0
    rgb = embedding_to_rgb(e)
    assert rgb.shape == (2, 2, 3)
    np.testing.assert_allclose(rgb[0, 0], [1.0, 0.5, 0.5])


def test_embedding_to_rgb_projects_other_dims_deterministically():
    a, b = embedding_to_rgb(_unit(8)), embedding_to_rgb(_unit(8))
    assert a.shape == (6, 5, 3) and 0 <= a.min() and a.max() <= 1
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"\(D, H, W\)"):
        embedding_to_rgb(torch.zeros(3, 4))
    with pytest.raises(TypeError, match="numpy array or torch.Tensor"):
        embedding_to_rgb([1, 2, 3])


def test_labels_to_rgb_and_overlay():
    labels = np.array([[0, 1], [2, 65]])
    rgb = labels_to_rgb(labels)
    assert rgb.shape == (2, 2, 3) and rgb[0, 0].sum() == 0
    assert not np.allclose(rgb[0, 1], rgb[1, 0])
    image = np.full((2, 2, 3), 0.5)
    out = overlay(image, labels, alpha=1.0)
    np.testing.assert_allclose(out[0, 0], 0.5)
    np.testing.assert_allclose(out[0, 1], rgb[0, 1])
    with pytest.raises(ValueError, match="must match"):
        overlay(image, np.zeros((3, 3), int))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        labels_to_rgb(np.zeros(3, int))


def test_mosaic_layout():
    tiles = [np.zeros((4, 3, 3)), np.ones((4, 3, 3)) * 0.5, np.zeros((4, 3, 3))]
    out = mosaic(tiles, ncols=2, pad=1, fill=1.0)
    assert out.shape == (9, 7, 3)
    np.testing.assert_allclose(out[0, 4], 0.5)
    np.testing.assert_allclose(out[4, 0], 1.0)  # padding row
    with pytest.raises(ValueError, match="at least one tile"):
        mosaic([], ncols=2)


def _is_png(path):
    with Image.open(path) as im:
        return im.format == "PNG" and min(im.size) > 50


def test_figures_are_written_as_png(tmp_path):
    emb = _unit(3, 16, 16)
    labels = np.zeros((16, 16), int)
    labels[4:10, 4:10] = 1
    panels = [[embedding_to_rgb(emb), labels_to_rgb(labels)]]
    assert _is_png(panel_grid(panels, ["embedding", "labels"], tmp_path / "grid.png"))
    sphere = sphere_scatter([emb.numpy(), emb.numpy()], labels, ["a", "b"], tmp_path / "s.png")
    assert _is_png(sphere)
    history = [{"loss": 1.0 / (i + 1), "loss_iter0": 0.5, "loss_iter1": 0.4} for i in range(30)]
    assert _is_png(loss_curves(history, tmp_path / "loss.png", smooth=5))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png", "loss.png", "s.png"]


def test_figure_errors(tmp_path):
    with pytest.raises(ValueError, match="needs a non-empty training history"):
        loss_curves([], tmp_path / "x.png")
    with pytest.raises(ValueError, match="every row needs 2 panels"):
        panel_grid([[np.zeros((4, 4, 3))]], ["a", "b"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="needs 3-D embeddings"):
        sphere_scatter([_unit(4).numpy()], np.zeros((6, 5), int), ["a"], tmp_path / "x.png")
    assert not list(tmp_path.iterdir())
