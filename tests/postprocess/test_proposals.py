"""Mask proposals from an embedding: recovery of planted objects, ranking, contract, errors."""

from __future__ import annotations

import pytest
import torch

from pixelgroup.metrics import ProposalEvaluator, ProposalPrediction, ProposalTarget
from pixelgroup.ops import normalize_to_sphere
from pixelgroup.postprocess.proposals import Proposals, propose, score_masks


def _scene(noise=0.05, seed=0):
    """A 24x32 unit embedding (D=8): background plus three planted objects."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.zeros(24, 32, dtype=torch.int64)
    labels[3:9, 4:12] = 1
    labels[12:20, 6:14] = 2
    labels[6:16, 18:28] = 3
    directions = torch.eye(8)[:4]
    emb = directions[labels].permute(2, 0, 1) + noise * torch.randn(8, 24, 32, generator=g)
    return normalize_to_sphere(emb, dim=0), labels


def test_recovers_planted_objects_first():
    emb, labels = _scene()
    p = propose(emb, image_size=(48, 64), max_proposals=20)
    assert isinstance(p, Proposals)
    gt = (labels[None] == torch.arange(1, 4)[:, None, None]).repeat_interleave(2, 1)
    gt = gt.repeat_interleave(2, 2)
    ev = ProposalEvaluator(counts=(3, 10))
    ev.process([ProposalPrediction(p.masks, p.scores)], [ProposalTarget(gt)])
    out = ev.evaluate()
    assert out["AR@3"] == 1.0  # the three objects are the three best proposals, exactly
    # the background (covering the border) ranks below them
    border_cover = p.masks[:, 0, :].float().mean(1)
    assert (border_cover[:3] == 0).all() and (border_cover[3:] > 0).any()


def test_contract(device):
    emb, _ = _scene()
    p = propose(emb.to(device), image_size=(30, 40), max_proposals=5, bandwidths=(0.2, 0.4))
    k = len(p)
    assert 1 <= k <= 5
    assert p.masks.shape == (k, 30, 40) and p.masks.dtype == torch.bool
    assert p.boxes.shape == (k, 4) and p.scores.shape == (k,)
    assert (p.scores[:-1] >= p.scores[1:]).all()
    assert p.masks.flatten(1).any(1).all()
    for mask, box in zip(p.masks, p.boxes, strict=True):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        assert box.tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]
    low = propose(emb.to(device), max_proposals=5, bandwidths=(0.2, 0.4))  # dedup is at this size
    flat = low.masks.flatten(1).float()
    inter = flat @ flat.T
    iou = inter / (flat.sum(1)[:, None] + flat.sum(1)[None] - inter)
    assert (iou.fill_diagonal_(0) <= 0.9).all()  # near-duplicates were merged


def test_default_size_is_embedding_size_and_pairs_add_candidates():
    emb, _ = _scene()
    with_pairs = propose(emb, bandwidths=(0.3,), dedup_iou=1.0)
    without = propose(emb, bandwidths=(0.3,), dedup_iou=1.0, pair_unions=False)
    assert with_pairs.masks.shape[1:] == (24, 32)
    # 4 groups; background touches each object: 3 adjacent unions
    assert len(without) == 4 and len(with_pairs) == 7


def test_score_masks_cues():
    emb, labels = _scene(noise=0.0)
    masks = torch.stack([labels == 1, torch.ones_like(labels, dtype=torch.bool), labels <= 1])
    s = score_masks(emb, masks)
    # object: compactness 1, ring orthogonal (s_ring = 0.5), off the border -> 0.5
    assert s[0].item() == pytest.approx(0.5, abs=1e-4)
    assert s[1].item() == 0.0  # the whole image has no ring
    assert s[2] < s[0]  # background + object is neither compact nor off the border


def test_errors():
    emb, _ = _scene()
    with pytest.raises(ValueError, match=r"embedding must have shape \(D, H, W\)"):
        propose(emb[None])
    with pytest.raises(TypeError, match="embedding must be a torch.Tensor"):
        propose(emb.numpy())
    with pytest.raises(ValueError, match="need at least one value each"):
        propose(emb, bandwidths=())
    with pytest.raises(ValueError, match="bandwidths must be a finite number > 0"):
        propose(emb, bandwidths=(0.0,))
    with pytest.raises(ValueError, match="dedup_iou must lie in"):
        propose(emb, dedup_iou=0.0)
    with pytest.raises(ValueError, match="max_proposals must be an int >= 1"):
        propose(emb, max_proposals=0)
    with pytest.raises(ValueError, match="image_size must be"):
        propose(emb, image_size=(10,))
    with pytest.raises(ValueError, match=r"unit-norm vectors along dim 0 \(D\)"):
        propose(emb * 3)


def _dedup_reference(masks, scores, max_iou):
    """The first implementation: the whole IoU matrix, then a loop over every candidate."""
    order = torch.argsort(scores, descending=True, stable=True)
    flat = masks[order].flatten(1).float()
    inter = flat @ flat.T
    area = flat.sum(1)
    iou = inter / (area[:, None] + area[None, :] - inter).clamp_min(1.0)
    kept = []
    for i in range(len(order)):
        if not kept or bool((iou[i, kept] <= max_iou).all()):
            kept.append(i)
    return order[kept]


@pytest.mark.parametrize("seed", range(4))
def test_dedup_keeps_what_the_full_iou_matrix_keeps(seed):
    """Greedy suppression one IoU row per kept mask equals the whole-matrix loop, with ties in
    score, repeated masks and every limit."""
    from pixelgroup.postprocess.proposals import _dedup

    g = torch.Generator().manual_seed(seed)
    base = torch.rand(40, 12, 16, generator=g) < 0.3
    jitter = torch.rand(40, 12, 16, generator=g) < 0.03
    masks = torch.cat([base, base ^ jitter, base[:10]])  # near and exact repeats
    scores = torch.randint(0, 20, (len(masks),), generator=g).float()  # many ties
    for max_iou in (0.5, 0.9, 1.0):
        expected = _dedup_reference(masks, scores, max_iou)
        for limit in (1, 7, len(masks)):
            torch.testing.assert_close(_dedup(masks, scores, max_iou, limit), expected[:limit])
