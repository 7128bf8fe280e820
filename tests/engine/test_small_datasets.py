"""Training on a few images: an epoch of at least MIN_EPOCH_IMAGES images (new augmentations in
every pass over the data), checkpoints every ``train.checkpoint_every`` steps of the run rather
than after every tiny epoch, and exact resume from them."""

import sys

import pytest
import torch

from pixelgroup.engine import load_checkpoint, train
from pixelgroup.engine.checkpoint import save_checkpoint
from pixelgroup.tasks.instance import InstanceTask
from tests._tiny import crash_after_first_checkpoint, tiny_config

train_module = sys.modules["pixelgroup.engine.train"]


def test_a_tiny_split_makes_epochs_of_min_epoch_images(tmp_path, monkeypatch):
    # 8 items in batches of 4: a pass is 2 steps; at least 16 images make an epoch of 4 steps
    monkeypatch.setattr(train_module, "MIN_EPOCH_IMAGES", 16)
    epochs: list[int] = []
    # the augmentation epochs the train loop sets (through the task, as for AugmentedDataset)
    monkeypatch.setattr(
        InstanceTask, "set_epoch", lambda self, dataset, epoch: epochs.append(epoch)
    )
    cfg = tiny_config(train={"epochs": 2, "iters_per_epoch": None})
    result = train(cfg, tmp_path / "a", progress=False)
    assert len(result.history) == 2 * 4
    assert epochs == [0, 1, 2, 3]  # each pass of each epoch draws its own augmentations
    # a split of at least MIN_EPOCH_IMAGES keeps one pass an epoch
    monkeypatch.setattr(train_module, "MIN_EPOCH_IMAGES", 8)
    assert len(train(cfg, tmp_path / "b", progress=False).history) == 2 * 2


def test_checkpoint_every_counts_steps_across_epochs_and_resumes_exactly(tmp_path, monkeypatch):
    # 3 epochs of 2 steps, checkpoint_every 3: after step 3 (epoch 1, step 1) and the last step,
    # not after each epoch
    cfg = tiny_config(train={"epochs": 3, "iters_per_epoch": 2, "checkpoint_every": 3})
    saved = []

    def record(state, path):
        saved.append((state["epoch"], state["step"]))
        save_checkpoint(state, path)

    monkeypatch.setattr(train_module, "save_checkpoint", record)
    straight = train(cfg, tmp_path / "a", progress=False)
    assert saved == [(1, 1), (3, 0)]

    crash_after_first_checkpoint(cfg, tmp_path / "b", monkeypatch)
    state = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert (state["epoch"], state["step"], len(state["history"])) == (1, 1, 3)
    resumed = train(None, tmp_path / "b", resume=True, progress=False)
    a, b = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    assert a["history"] == b["history"] and len(a["history"]) == 6
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


def test_too_few_items_for_one_batch(tmp_path):
    cfg = tiny_config(data={"options": {"length": 3}}, train={"iters_per_epoch": 5})
    with pytest.raises(
        ValueError, match="the training split has 3 items, fewer than one batch of 4"
    ):
        train(cfg, tmp_path, progress=False)
