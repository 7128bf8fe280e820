"""semantic_instances: majority-vote classes, background dropped, scores, upsampling, errors."""

from __future__ import annotations

import pytest
import torch

from pixelgroup.postprocess import group_pixels
from pixelgroup.postprocess.semantic_instances import semantic_instances


def _scene(dtype=torch.float32, device="cpu"):
    """Background + two objects on distinct sphere directions; logits mostly agree."""
    emb = torch.zeros(3, 12, 12, dtype=dtype, device=device)
    emb[0] = 1.0
    emb[:, 1:5, 1:7] = torch.tensor([0.0, 1.0, 0.0], dtype=dtype, device=device)[:, None, None]
    emb[:, 7:11, 3:11] = torch.tensor([0.0, 0.0, 1.0], dtype=dtype, device=device)[:, None, None]
    logits = torch.zeros(21, 12, 12, dtype=dtype, device=device)
    logits[0] = 4.0
    logits[5, 1:5, 1:7] = 8.0
    logits[9, 1:3, 1:3] = 12.0  # a minority of object A votes 9
    logits[12, 7:11, 3:11] = 6.0
    return emb, logits


def test_classes_by_majority_and_background_dropped(device):
    emb, logits = _scene(device=device)
    out = semantic_instances(emb, logits, min_area=1)
    assert sorted(out.classes.tolist()) == [5, 12]
    assert out.masks.shape == (2, 12, 12) and out.masks.dtype == torch.bool
    assert out.masks.device.type == device.type
    by_class = dict(zip(out.classes.tolist(), out.masks, strict=True))
    assert int(by_class[5].sum()) == 24 and int(by_class[12].sum()) == 32
    assert not (out.masks[0] & out.masks[1]).any()
    assert (out.scores[:-1] >= out.scores[1:]).all()


def test_score_is_mean_probability_times_grouping_quality():
    emb, logits = _scene(torch.float64)
    out = semantic_instances(emb, logits, min_area=1)
    grouping = group_pixels(emb, min_area=1)
    probs = torch.softmax(logits, 0)
    for mask, c, score in zip(out.masks, out.classes, out.scores, strict=True):
        k = int(grouping.labels[mask][0])
        expected = probs[c][mask].mean() * grouping.scores[k]
        assert float(score) == pytest.approx(float(expected), rel=1e-5)
    assert out.scores.dtype == torch.float32


def test_upsampled_to_image_size():
    emb, logits = _scene()
    out = semantic_instances(emb, logits, image_size=(24, 24), min_area=1)
    assert out.masks.shape == (2, 24, 24)
    assert sorted(int(m.sum()) for m in out.masks) == [96, 128]


def test_all_background_gives_no_instances():
    emb, logits = _scene()
    logits[0] = 100.0
    out = semantic_instances(emb, logits, image_size=(6, 6), min_area=1)
    assert len(out) == 0 and out.masks.shape == (0, 6, 6) and out.classes.shape == (0,)


def test_errors():
    emb, logits = _scene()
    with pytest.raises(ValueError, match=r"logits must be \(C, H, W\) at the embedding's"):
        semantic_instances(emb, logits[:, :5])
    with pytest.raises(ValueError, match="logits"):
        semantic_instances(emb, logits[0])
    with pytest.raises(TypeError, match="logits must be a floating-point tensor"):
        semantic_instances(emb, logits.long())
    with pytest.raises(ValueError, match=r"background must be a class id in 0..20, got 21"):
        semantic_instances(emb, logits, background=21)
    with pytest.raises(ValueError, match="image_size must be"):
        semantic_instances(emb, logits, image_size=(0, 4))
