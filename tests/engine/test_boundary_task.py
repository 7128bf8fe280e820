"""The boundary task: HED loss, batching, augmentation, evaluator, and a tiny training run."""

from __future__ import annotations

import pytest
import torch

from pixelgroup.config import load_config
from pixelgroup.data.bsds import BoundarySample
from pixelgroup.engine.boundary_task import (
    BoundaryTask,
    _Augmented,
    class_balanced_bce,
    collate_boundaries,
)
from pixelgroup.engine.tasks import get_task
from pixelgroup.experiment import ExperimentConfig
from pixelgroup.models.boundary import BoundaryOutput


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
    aug = _Augmented(base, [10, 12], True, seed=3)
    s = aug[0]
    assert s.image.shape == (3, 10, 12) and s.boundaries.shape == (2, 10, 12)
    again = _Augmented(base, [10, 12], True, seed=3)[0]
    torch.testing.assert_close(s.image, again.image)
    big = _Augmented(base, [50, 50], False, seed=0)[0]
    assert big.image.shape == (3, 20, 30)  # crops larger than the image keep it whole


def _cfg(shared, **over):
    overrides = [
        "device=cpu",
        f"data.root={shared / 'bsds'}",
        "data.batch_size=1",
        "data.num_workers=0",
        "data.options={crop: [128, 128], eval_thresholds: 3, eval_workers: 0}",
        "model.options={backbone: resnet50, pretrained: false, stages: [1, 2], input_scale: 0.5}",
        "train.epochs=1",
        "train.iters_per_epoch=2",
        "loss.max_samples=200",
    ] + [f"{k}={v}" for k, v in over.items()]
    return load_config(ExperimentConfig, "configs/bsds.yaml", overrides)


def test_config_errors(shared_data):
    task = BoundaryTask()
    with pytest.raises(ValueError, match="unknown data.options key 'size' for the boundary task"):
        task.build_dataset(_cfg(shared_data, **{"data.options": "{size: 3}"}), "test")
    with pytest.raises(ValueError, match="the boundary task reads data.name 'bsds'"):
        task.build_dataset(_cfg(shared_data, **{"data.name": "voc"}), "test")
    with pytest.raises(ValueError, match="set loss.num_iters to 0, got 3"):
        task.build_loss(_cfg(shared_data, **{"loss.num_iters": 3}))


def test_evaluator_scores_the_ground_truth(shared_data):
    cfg = _cfg(shared_data, **{"data.options": "{nms: false, eval_thresholds: 3, eval_workers: 0}"})
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

    cfg = _cfg(shared_data)
    result = train(cfg, tmp_path, progress=False)
    assert len(result.history) == 2
    first = result.history[0]
    assert set(first) == {"loss", "bce", "pair"}
    assert first["loss"] == pytest.approx(first["bce"] + first["pair"], rel=1e-5)
    assert result.checkpoint.is_file()
