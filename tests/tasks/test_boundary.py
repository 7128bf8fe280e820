"""The boundary task: HED loss, batching, augmentation, evaluator, and a tiny training run."""

from __future__ import annotations

import pytest
import torch

from pixelgroup.config import ExperimentConfig, load_config
from pixelgroup.data import AugmentedDataset, CropFlip
from pixelgroup.data.bsds import BoundarySample
from pixelgroup.engine import load_checkpoint, train
from pixelgroup.engine.checkpoint import save_checkpoint
from pixelgroup.models.boundary import BoundaryOutput
from pixelgroup.tasks import get_task
from pixelgroup.tasks.boundary import (
    BoundaryTask,
    class_balanced_bce,
    collate_boundaries,
)


def _naive_bce(logits, target):
    total = 0.0
    for b in range(logits.shape[0]):
        labelled = [(i, j) for i in range(target.shape[1]) for j in range(target.shape[2])]
        labelled = [(i, j) for i, j in labelled if target[b, i, j] in (0, 1)]
        n_pos = sum(float(target[b, i, j] == 1) for i, j in labelled)
        n_neg = len(labelled) - n_pos
        for k in range(logits.shape[1]):
            s = 0.0
            for i, j in labelled:
                p = torch.sigmoid(logits[b, k, i, j])
                if target[b, i, j] == 1:
                    s += -n_neg / len(labelled) * torch.log(p)
                else:
                    s += -n_pos / len(labelled) * torch.log(1 - p)
            total += s / len(labelled)
    return total / logits.shape[0]


def test_class_balanced_bce_matches_naive():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 2, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randint(-1, 2, (2, 4, 5), generator=g).double()
    torch.testing.assert_close(class_balanced_bce(logits, target), _naive_bce(logits, target))
    assert torch.autograd.gradcheck(lambda x: class_balanced_bce(x, target), (logits,))


def _sample(name, h, w, annotators=2):
    g = torch.Generator().manual_seed(h * w)
    return BoundarySample(
        name, torch.rand(3, h, w, generator=g), torch.rand(annotators, h, w, generator=g) < 0.3
    )


def test_collate_pads_and_labels_by_consensus():
    a, b = _sample("a", 6, 8), _sample("b", 8, 5)
    batch = collate_boundaries([a, b])
    assert batch.image.shape == (2, 3, 8, 8) and batch.target.shape == (2, 8, 8)
    assert batch.sizes == [(6, 8), (8, 5)] and batch.image_ids == ["a", "b"]
    assert (batch.target[0, 6:] == -1).all() and (batch.target[1, :, 5:] == -1).all()
    c = a.consensus
    t = batch.target[0, :6]
    assert ((t == 1) == (c >= 0.5)).all() and ((t == 0) == (c == 0)).all()


def test_augmentation_crops_flips_and_is_reproducible():
    base = [_sample("a", 20, 30)]
    aug = AugmentedDataset(base, CropFlip((10, 12), True), seed=3)
    s = aug[0]
    assert s.image.shape == (3, 10, 12) and s.boundaries.shape == (2, 10, 12)
    again = AugmentedDataset(base, CropFlip((10, 12), True), seed=3)[0]
    torch.testing.assert_close(s.image, again.image)
    big = AugmentedDataset(base, CropFlip((50, 50), False), seed=0)[0]
    assert big.image.shape == (3, 20, 30)  # crops larger than the image keep it whole


def test_turns_and_jitter_move_image_and_boundaries_together():
    """``turn``: the image and its boundary maps get the same flip / 90° turn (a square crop
    takes all four turns, a non-square one keeps its shape); ``jitter`` changes the colours
    only; every draw is reproducible."""
    base = [_sample("a", 20, 20)]
    base[0].image[0] = base[0].boundaries[0]  # channel 0 marks the boundaries of annotator 0
    turned = AugmentedDataset(base, CropFlip(None, True, turn=True), seed=0)
    seen = set()
    for epoch in range(12):
        turned.set_epoch(epoch)
        s = turned[0]
        torch.testing.assert_close(s.image[0], s.boundaries[0].float())
        seen.add(tuple(s.boundaries[0].flatten().tolist()))
    assert len(seen) >= 5  # several of the 8 flips and turns of a square
    wide = AugmentedDataset([_sample("b", 10, 16)], CropFlip(None, False, turn=True), seed=0)
    assert all(wide[0].image.shape == (3, 10, 16) for _ in range(4))
    jittered = CropFlip(None, False, jitter=0.4)
    out = jittered(base[0], torch.Generator().manual_seed(1))
    again = jittered(base[0], torch.Generator().manual_seed(1))
    torch.testing.assert_close(out.image, again.image)
    assert not torch.equal(out.image, base[0].image)
    assert 0 <= out.image.min() <= out.image.max() <= 1
    torch.testing.assert_close(out.boundaries, base[0].boundaries)
    with pytest.raises(ValueError, match="jitter must be in"):
        CropFlip(None, jitter=1.5)


def _cfg(shared, **over):
    overrides = [
        "device=cpu",
        f"data.root={shared / 'bsds'}",
        "data.batch_size=1",
        "data.num_workers=0",
        "data.options={crop: [128, 128], eval_thresholds: 3, eval_workers: 1}",
        "model.options={backbone: resnet50, pretrained: false, stages: [1, 2], input_scale: 0.5}",
        "train.epochs=1",
        "train.iters_per_epoch=2",
        "loss.max_samples=200",
    ] + [f"{k}={v}" for k, v in over.items()]
    return load_config(ExperimentConfig, "configs/bsds.yaml", overrides)


def test_config_errors(shared_data):
    task = BoundaryTask()
    with pytest.raises(ValueError, match="unknown config key 'data.options.size'; valid keys"):
        task.build_dataset(_cfg(shared_data, **{"data.options": "{size: 3}"}), "test")
    with pytest.raises(ValueError, match="the boundary task reads data.name 'bsds'"):
        task.build_dataset(_cfg(shared_data, **{"data.name": "voc"}), "test")
    with pytest.raises(ValueError, match="set loss.num_iters to 0, got 3"):
        task.build_loss(_cfg(shared_data, **{"loss.num_iters": 3}))
    with pytest.raises(ValueError, match=r"loss.margin: .* one site .* got \[0.5, 0.2\]"):
        task.build_loss(_cfg(shared_data, **{"loss.margin": "[0.5, 0.2]"}))


def test_evaluator_scores_the_ground_truth(shared_data):
    cfg = _cfg(shared_data, **{"data.options": "{nms: false, eval_thresholds: 3, eval_workers: 1}"})
    task = get_task("boundary")
    ds = task.build_dataset(cfg, "test")
    batch = task.collate([ds[0], ds[1]])  # portrait + landscape: padded
    perfect = torch.where(batch.target > 0, 20.0, -20.0)[:, None]
    out = BoundaryOutput([], perfect, perfect)
    ev = task.build_evaluator(cfg)
    ev.reset()
    ev.process(out, batch)
    scores = ev.evaluate()
    assert scores["ODS"] > 0.85 and set(scores) >= {"ODS", "OIS", "AP"}


@pytest.mark.slow
def test_tiny_training_run(shared_data, tmp_path):
    from pixelgroup.engine.train import train

    cfg = _cfg(shared_data, **{"loss.bce_weight": 1, "loss.pair_weight": 1})
    result = train(cfg, tmp_path, progress=False)
    assert len(result.history) == 2
    first = result.history[0]
    assert set(first) == {"loss", "bce", "pair"}
    assert first["loss"] == pytest.approx(first["bce"] + first["pair"], rel=1e-5)
    assert result.checkpoint.is_file()


def _fake_output(seed=0, size=(2, 16, 20), sides=2):
    g = torch.Generator().manual_seed(seed)
    embeddings = [
        torch.randn(size[0], 3, *size[1:], generator=g, requires_grad=True) for _ in range(sides)
    ]
    logits = torch.randn(size[0], sides, *size[1:], generator=g, requires_grad=True)
    fused = torch.randn(size[0], 1, *size[1:], generator=g, requires_grad=True)
    target = (torch.rand(*size, generator=g) < 0.2).float()
    target[:, :2] = -1.0  # ignored
    return BoundaryOutput(embeddings, logits, fused), target


@pytest.mark.parametrize(
    ("bce_weight", "pair_weight", "keys"),
    [
        (1.0, 1.0, {"loss", "bce", "pair"}),
        (0.0, 1.0, {"loss", "bce", "pair"}),
        (1.0, 0.0, {"loss", "bce"}),
        (2.0, 0.5, {"loss", "bce", "pair"}),
    ],
)
def test_loss_weights_give_the_two_stages(shared_data, bce_weight, pair_weight, keys):
    """Stage 1 (bce_weight 0): only the side embeddings learn, from the pair loss (the BCE is
    reported, its gradients are zero); stage 2 (pair_weight 0): no pair loss is computed."""
    cfg = _cfg(shared_data, **{"loss.bce_weight": bce_weight, "loss.pair_weight": pair_weight})
    output, target = _fake_output()
    batch = type("Batch", (), {"target": target})()
    terms = BoundaryTask().build_loss(cfg)(output, batch, torch.Generator().manual_seed(0))
    assert set(terms) == keys
    expected = bce_weight * terms["bce"] + pair_weight * terms.get("pair", 0.0)
    assert float(terms["loss"].detach()) == pytest.approx(float(expected), rel=1e-6)
    terms["loss"].backward()
    assert bool(output.side_logits.grad.abs().max() > 0) == (bce_weight > 0)
    assert (output.embeddings[0].grad is not None) == (pair_weight > 0)


def test_loss_weight_errors(shared_data):
    task = BoundaryTask()
    with pytest.raises(ValueError, match="loss.bce_weight must be >= 0, got -1.0"):
        task.build_loss(_cfg(shared_data, **{"loss.bce_weight": -1}))
    with pytest.raises(ValueError, match="both 0: nothing to train"):
        task.build_loss(_cfg(shared_data, **{"loss.bce_weight": 0, "loss.pair_weight": 0}))


def test_crops_do_not_depend_on_workers_or_on_what_was_drawn_before(shared_data):
    """Each item's crop is a function of (seed, epoch, index): the same through a DataLoader
    with 0 or 2 workers, and the same when drawn again (the old per-object counter was not)."""
    cfg = _cfg(shared_data, **{"data.options": "{crop: [64, 64], flip: true}"})
    task = get_task("boundary")
    dataset = task.build_dataset(cfg, "trainval")

    def images(workers):
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=1, num_workers=workers, collate_fn=task.collate
        )
        return [b.image for b in loader]

    first = images(0)
    for a, b in zip(first, images(0) + images(2), strict=False):
        assert torch.equal(a, b)
    dataset.set_epoch(1)
    assert not all(torch.equal(a, b) for a, b in zip(first, images(0), strict=True))


def test_resume_mid_epoch_with_two_workers_is_exact(shared_data, tmp_path, monkeypatch):
    overrides = {
        "data.options": "{crop: [64, 64], eval_thresholds: 3, eval_workers: 1}",
        "data.num_workers": 2,
        "model.options": "{backbone: efficientnet_lite0, pretrained: false, stages: [1, 2], "
        "embedding_dim: 4}",
        "train.iters_per_epoch": 3,
        "train.epochs": 2,
        "train.checkpoint_every": 1,
        "loss.max_samples": 50,
    }
    cfg = _cfg(shared_data, **overrides)
    straight = train(cfg, tmp_path / "a", progress=False)

    calls = []

    def save_then_crash(state, path):  # killed after its second checkpoint (mid-epoch 1)
        save_checkpoint(state, path)
        calls.append(state["step"])
        if len(calls) == 2:
            raise KeyboardInterrupt

    import sys

    monkeypatch.setattr(sys.modules["pixelgroup.engine.train"], "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "b", progress=False)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["step"] == 2
    resumed = train(None, tmp_path / "b", resume=True, progress=False)
    a, b = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    assert a["history"] == b["history"] and len(a["history"]) == 6
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
