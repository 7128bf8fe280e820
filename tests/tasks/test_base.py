"""What every task shares: config-built models, the grouping loss, grouping arguments."""

from __future__ import annotations

import pytest
import torch

import pixelgroup.losses.recurrent as recurrent_module
import pixelgroup.postprocess.instances as instances_module
import pixelgroup.tasks.proposals as proposals_module
from pixelgroup.cli import main
from pixelgroup.config import GroupingConfig, LossConfig
from pixelgroup.errors import ConfigError
from pixelgroup.losses import RecurrentGroupingLoss
from pixelgroup.ops import normalize_to_sphere
from pixelgroup.tasks import TASKS
from pixelgroup.tasks.base import build_grouping_loss, grouping_arguments
from pixelgroup.tasks.instance import InstanceTask
from tests._tiny import tiny_config


def test_min_area_is_converted_from_label_pixels_to_embedding_pixels():
    g = GroupingConfig(min_area=64, bandwidth=0.2, num_iters=3, max_points=None)
    args = grouping_arguments(g, label_size=(64, 64), embedding_size=(16, 16))
    assert args == {
        "bandwidth": 0.2,
        "num_iters": 3,
        "threshold": None,
        "min_area": 4,
        "max_points": None,
    }
    assert grouping_arguments(g, (64, 64), (64, 64))["min_area"] == 64
    assert grouping_arguments(GroupingConfig(min_area=3), (64, 64), (8, 8))["min_area"] == 1


def test_proposals_task_groups_with_min_area_in_embedding_pixels(monkeypatch):
    """grouping.min_area counts image pixels; the proposals task used to pass it unchanged to
    a grouping that counts stride-4 embedding pixels (16x too large)."""
    seen = {}

    def spy(embedding, **kwargs):
        seen.update(kwargs)
        raise StopIteration

    monkeypatch.setattr(proposals_module, "propose", spy)
    cfg = tiny_config(task="proposals", grouping={"min_area": 160, "stride": 1})
    with pytest.raises(StopIteration):
        proposals_module.proposals_from_embedding(torch.zeros(3, 8, 8), (32, 32), cfg)
    assert seen["min_area"] == 10 and seen["image_size"] == (32, 32)


def test_model_options_are_checked_against_the_constructor():
    with pytest.raises(ConfigError, match=r"unknown config key 'model.options.widht'; valid"):
        InstanceTask().build_model(tiny_config(model={"options": {"widht": 4}}))
    with pytest.raises(ConfigError, match=r"model.options.width: expected int, got 'four'"):
        InstanceTask().build_model(tiny_config(model={"options": {"width": "four"}}))
    with pytest.raises(ConfigError, match=r"unknown model 'resnet'; valid models: dense, "):
        InstanceTask().build_model(tiny_config(model={"name": "resnet"}))


def test_data_options_are_typed():
    task = InstanceTask()
    with pytest.raises(ConfigError, match=r"unknown config key 'data.options.lenght'"):
        task.build_dataset(tiny_config(data={"options": {"lenght": 3}}), "train")
    with pytest.raises(ConfigError, match=r"data.options.length: expected int, got 2.5"):
        task.build_dataset(tiny_config(data={"options": {"length": 2.5}}), "train")


def test_a_bug_keeps_its_traceback_through_the_cli(monkeypatch, tmp_path):
    """A TypeError that mentions an 'argument' is a bug, not a config error: the CLI used to
    print it as one line; now only the project's errors are."""

    class Buggy(InstanceTask):
        def build_dataset(self, cfg, split):
            raise TypeError("f() got an unexpected keyword argument 'x'")

    monkeypatch.setitem(TASKS, "instance", Buggy())
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        main(["train", "-o", str(tmp_path / "run"), "--quiet"])


def test_a_config_error_is_one_line_with_exit_2(tmp_path, capsys):
    code = main(["train", "-o", str(tmp_path / "r"), "--set", "model.options.widht=4", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert err.startswith("pixelgroup train: error: unknown config key 'model.options.widht'")


def test_loss_and_grouping_pool_the_same_pixels_on_odd_sizes(monkeypatch):
    """loss.stride, loss.loop_stride and grouping.stride all pool with pool_to_sphere; the
    loss used to floor (dropping the last row and column of a 5 x 7 map) where grouping and
    export kept them."""
    x = normalize_to_sphere(torch.randn(1, 3, 5, 7, generator=torch.Generator().manual_seed(0)))
    labels = torch.zeros(1, 5, 7, dtype=torch.long)
    seen = {}

    def loss_spy(self, embedding, labels, generator=None):
        seen["loss"] = embedding
        return {"loss": embedding.sum()}

    def group_spy(small, **kwargs):
        seen["grouping"] = small
        raise StopIteration

    def loops_spy(points, *args, **kwargs):
        seen["loops"] = points
        raise StopIteration

    monkeypatch.setattr(RecurrentGroupingLoss, "forward", loss_spy)
    build_grouping_loss(LossConfig(stride=2, num_iters=0), None)(x, labels, None)
    monkeypatch.setattr(instances_module, "group_pixels", group_spy)
    with pytest.raises(StopIteration):
        instances_module.extract_instances(x[0], num_iters=0, stride=2)
    monkeypatch.undo()
    monkeypatch.setattr(recurrent_module, "recurrent_mean_shift", loops_spy)
    with pytest.raises(StopIteration):
        RecurrentGroupingLoss(num_iters=1, loop_stride=2)(x, labels)
    assert seen["loss"].shape == (1, 3, 3, 4)
    torch.testing.assert_close(seen["loss"][0], seen["grouping"])
    torch.testing.assert_close(seen["loops"], seen["loss"].flatten(2).transpose(1, 2))


def test_figures_are_a_task_member_the_2d_default_and_the_volume_override(tmp_path, shared_data):
    """The demo's figures come from the task: TaskBase draws the toy tutorial's 2-D panels,
    the volume task its orthogonal slices, a task of other batches says it draws none."""
    from pixelgroup.engine import InferenceRunner
    from pixelgroup.tasks.base import TaskBase
    from pixelgroup.tasks.volume import VolumeTask

    assert TASKS["volume"].figures.__func__ is VolumeTask.figures  # type: ignore[attr-defined]
    assert TASKS["instance"].figures.__func__ is TaskBase.figures  # type: ignore[attr-defined]
    cfg = tiny_config()
    task = TASKS["instance"]
    torch.manual_seed(0)
    run = InferenceRunner.from_config(task.build_model(cfg), cfg)
    history = [{"loss": 1.0, "loss_iter0": 0.6, "loss_iter1": 0.4}]
    paths = task.figures(run, cfg, tmp_path, history=history)
    names = {p.name for p in paths}
    assert {"loops.png", "loop_instances.png", "predictions.png", "loss_curves.png"} <= names
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)
    root = str(shared_data / "bsds")
    bsds = tiny_config(task="boundary", data={"name": "bsds", "root": root, "options": {}})
    with pytest.raises(ConfigError, match="^the boundary task draws no figures"):
        TASKS["boundary"].figures(run, bsds, tmp_path)
