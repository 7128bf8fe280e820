"""Partial labels: no loss term (pair, loop or semantic) is taken on an unannotated pixel."""

import torch

import pixelgroup.losses.pairwise as pairwise
from pixelgroup.data import IGNORE_LABEL, InstanceSample
from pixelgroup.models import EmbeddingOutput
from pixelgroup.ops import normalize_to_sphere
from pixelgroup.tasks import get_task
from tests._tiny import tiny_config


def _batch():
    """Two 8 x 8 images: background 0, instances 1..3, and instance pixels left unannotated
    (IGNORE_LABEL) in both maps."""
    instance = torch.zeros(2, 8, 8, dtype=torch.int64)
    instance[:, :3, :3], instance[:, 4:, :4], instance[:, 5:, 5:] = 1, 2, 3
    instance[0, 1:3, 5:8] = IGNORE_LABEL
    instance[1, :2, 4:] = IGNORE_LABEL
    semantic = torch.where(instance == IGNORE_LABEL, IGNORE_LABEL, (instance > 0).long())
    return InstanceSample(torch.rand(2, 3, 8, 8), instance, semantic)


def test_no_loss_term_on_an_unannotated_pixel(monkeypatch):
    batch = _batch()
    unannotated = batch.instance == IGNORE_LABEL
    cfg = tiny_config(
        loss={"num_iters": 2, "sample_ratio": 1.0, "stride": 1, "loop_stride": 2},
        model={"options": {"width": 4, "num_blocks": 1, "num_classes": 2}},
    )
    seen = []
    pair_terms = pairwise._pair_terms

    def spy(samples, *args):
        seen.extend(y.clone() for _, y in samples)
        return pair_terms(samples, *args)

    monkeypatch.setattr(pairwise, "_pair_terms", spy)
    loss = get_task("instance").build_loss(cfg)
    g = torch.Generator().manual_seed(0)
    embedding = normalize_to_sphere(torch.randn(2, 4, 8, 8, generator=g), dim=1)
    embedding.requires_grad_(True)
    logits = torch.randn(2, 2, 8, 8, generator=g, requires_grad=True)
    terms = loss(EmbeddingOutput(embedding, embedding, logits), batch, g)

    # pair terms at loop 0 and after each of the 2 loops, 2 images each: no sampled pixel
    # is unannotated, and with sample_ratio 1 every annotated pixel is sampled at loop 0
    assert len(seen) == 6 and not any(bool((y == IGNORE_LABEL).any()) for y in seen)
    assert [len(y) for y in seen[:2]] == (~unannotated).flatten(1).sum(1).tolist()
    # loop 0's pair term and the semantic term have no gradient on an unannotated pixel
    grad_pair = torch.autograd.grad(terms["loss_iter0"], embedding, retain_graph=True)[0]
    assert bool((grad_pair.norm(dim=1)[unannotated] == 0).all())
    assert bool((grad_pair.norm(dim=1)[~unannotated] > 0).all())
    grad_sem = torch.autograd.grad(terms["semantic"], logits)[0]
    assert bool((grad_sem.abs().sum(1)[unannotated] == 0).all())
    assert bool((grad_sem.abs().sum(1)[~unannotated] > 0).all())
