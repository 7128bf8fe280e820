import json

import pytest
import torch

from pixelgroup import tasks as tasks_module
from pixelgroup.cli import main
from pixelgroup.config import override_config
from pixelgroup.engine import (
    NonFiniteLossError,
    evaluate,
    load_checkpoint,
    load_model,
    train,
)
from pixelgroup.engine.checkpoint import build_model_seeded
from pixelgroup.engine.distributed import DistInfo
from pixelgroup.engine.train import _loader, _pass_seed
from pixelgroup.errors import CheckpointError, ConfigError
from pixelgroup.tasks import get_task
from pixelgroup.tasks.instance import InstanceTask
from tests._tiny import crash_after_first_checkpoint, tiny_config


def test_a_few_steps_lower_the_loss():
    cfg = tiny_config(loss={"sample_ratio": None, "num_iters": 1, "stride": 4})
    task = get_task(cfg.task)
    batch = task.collate([task.build_dataset(cfg, "train")[i] for i in range(4)])
    model = build_model_seeded(cfg)
    criterion = task.build_loss(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)

    def loss_value() -> float:
        model.eval()
        with torch.no_grad():
            return float(criterion(model(batch.image), batch, gen)["loss"])

    before = loss_value()
    model.train()
    for _ in range(15):
        loss = criterion(model(batch.image), batch, gen)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss_value() < 0.8 * before


def test_checkpoint_round_trip_and_exact_resume(tmp_path, monkeypatch):
    cfg = tiny_config()
    straight = train(cfg, tmp_path / "a", progress=False)

    crash_after_first_checkpoint(cfg, tmp_path / "b", monkeypatch)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["epoch"] == 1
    resumed = train(None, tmp_path / "b", resume=True, progress=False)
    a, b = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    assert a["epoch"] == b["epoch"] == 2
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a["history"] == b["history"] and len(a["history"]) == 4
    assert set(a["history"][0]) >= {"loss", "loss_iter0", "loss_iter1", "pos_iter1", "neg_iter0"}
    model, loaded_cfg, _ = load_model(straight.checkpoint)
    assert loaded_cfg == cfg and not model.training
    assert json.loads((tmp_path / "a" / "config.json").read_text())["model"]["name"] == "toy"


@pytest.mark.filterwarnings("error:Converting a tensor with requires_grad")  # losses detached
def test_training_is_deterministic(tmp_path):
    cfg = tiny_config(train={"epochs": 1, "iters_per_epoch": 1})
    h1 = train(cfg, tmp_path / "a", progress=False).history
    h2 = train(cfg, tmp_path / "b", progress=False).history
    assert h1 == h2


def test_resume_with_different_config(tmp_path):
    cfg = tiny_config(train={"epochs": 1, "iters_per_epoch": 1})
    train(cfg, tmp_path, progress=False)
    with pytest.raises(ValueError, match="seed cannot change"):
        train(override_config(cfg, ["seed=3"]), tmp_path, resume=True, progress=False)


def test_resume_may_change_test_bn_only_of_the_model_settings(tmp_path, capsys):
    """``model.test_bn`` only affects evaluation: ``--resume --set model.test_bn=batch`` is
    accepted (and stored); a setting of the model itself still is refused."""
    train(tiny_config(train={"epochs": 1, "iters_per_epoch": 1}), tmp_path, progress=False)
    resume = ["train", "-o", str(tmp_path), "--resume", "--quiet", "--set", "train.epochs=2"]
    assert main([*resume, "--set", "model.options.width=8"]) == 2
    err = capsys.readouterr().err
    assert "model.options cannot change" in err and "model.test_bn" in err
    assert main([*resume, "--set", "model.test_bn=batch"]) == 0
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 2 and state["config"]["model"]["test_bn"] == "batch"


class _NanTask(InstanceTask):
    def build_loss(self, cfg):
        def loss(output, batch, generator):
            return {"loss": output.embedding.sum() * float("nan")}

        return loss


def test_non_finite_loss_stops_without_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setitem(tasks_module.TASKS, "nan", _NanTask())
    cfg = tiny_config(task="nan")
    with pytest.raises(NonFiniteLossError, match="loss is nan at epoch 1, iteration 1"):
        train(cfg, tmp_path, progress=False)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_evaluate_reports_instance_metrics(tmp_path):
    cfg = tiny_config(train={"epochs": 1, "iters_per_epoch": 1})
    model, cfg, _ = load_model(train(cfg, tmp_path, progress=False).checkpoint)
    metrics = evaluate(model, cfg, progress=False)
    assert metrics["images"] == 2
    assert {"AP50", "AP70", "MBO", "covering", "ARI"} <= set(metrics)


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_text("junk")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a pixelgroup checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


@pytest.mark.parametrize(
    "sections, error, match",
    [
        ({"task": "nope"}, ConfigError, "unknown task 'nope'; valid tasks: .*instance"),
        ({"data": {"name": "nope"}}, ConfigError, "unknown dataset 'nope'; valid datasets: toy"),
        ({"data": {"options": {"lenght": 3}}}, ConfigError, "key 'data.options.lenght'"),
        ({"model": {"options": {"widht": 3}}}, ConfigError, "key 'model.options.widht'"),
        (
            {"optim": {"name": "lbfgs"}},
            ConfigError,
            "optim.name must be one of 'sgd', 'adam', got 'lbfgs'",
        ),
        ({"data": {"name": "folder", "options": {}}}, ConfigError, "data.root must name a folder"),
        (
            {"data": {"name": "folder"}},
            ConfigError,
            "unknown config key 'data.options.eval_length'",
        ),
    ],
)
def test_bad_config_values(tmp_path, sections, error, match):
    with pytest.raises(error, match=match):
        train(tiny_config(**sections), tmp_path, progress=False)


def test_init_from_starts_the_next_stage_from_a_checkpoints_weights(tmp_path):
    """train.init_from: stage 2 (here with a GBMS loop in the loss) starts from stage 1's
    weights, loaded strictly, with a fresh optimiser, schedule and epoch count."""
    stage1 = tiny_config(train={"epochs": 1, "iters_per_epoch": 1}, loss={"num_iters": 0})
    first = load_checkpoint(train(stage1, tmp_path / "s1", progress=False).checkpoint)
    init = f"train.init_from={tmp_path / 's1' / 'checkpoint.pt'}"
    # lr 0: the parameters stay exactly where stage 1 left them
    stage2 = override_config(stage1, [init, "loss.num_iters=1", "optim.lr=0"])
    state = load_checkpoint(train(stage2, tmp_path / "s2", progress=False).checkpoint)
    assert state["epoch"] == 1 and len(state["history"]) == 1
    assert "loss_iter1" in state["history"][0]
    params = dict(build_model_seeded(stage1).named_parameters())
    for key in params:
        assert torch.equal(state["model"][key], first["model"][key]), key
    fresh = build_model_seeded(stage1).state_dict()
    assert any(not torch.equal(fresh[k], first["model"][k]) for k in params)

    # a resumed second stage keeps its own weights: init_from is not read again
    (tmp_path / "s1" / "checkpoint.pt").unlink()
    train(override_config(stage2, ["train.epochs=2"]), tmp_path / "s2", resume=True, progress=False)


def test_init_from_errors(tmp_path):
    missing = tiny_config(train={"init_from": str(tmp_path / "none.pt")})
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        train(missing, tmp_path / "a", progress=False)
    train(tiny_config(train={"epochs": 1, "iters_per_epoch": 1}), tmp_path / "s1", progress=False)
    wider = tiny_config(
        model={"options": {"width": 8, "num_blocks": 1}},
        train={"init_from": str(tmp_path / "s1" / "checkpoint.pt")},
    )
    with pytest.raises(CheckpointError, match=r"does not fit the model .* has shape"):
        train(wider, tmp_path / "b", progress=False)


def test_no_two_passes_over_the_data_share_a_shuffle_order():
    """An epoch of ``train.iters_per_epoch`` steps may hold many passes over a small split.
    The seed used to be ``epoch * 1000 + first step of the pass``: with one step a pass, the
    pass at step 1000 of epoch 0 repeated the order of epoch 1's first pass."""
    seeds = [_pass_seed(e, k) for e in range(20) for k in range(1500)]
    assert len(set(seeds)) == len(seeds)
    assert [_pass_seed(e, 0) for e in range(3)] == [0, 1000, 2000]  # first passes as before

    class Task:
        collate = staticmethod(list)

    cfg, data = tiny_config(), list(range(32))

    def order(epoch, pass_index):
        loader = _loader(cfg, data, Task, epoch, pass_index, DistInfo(), batch_size=1)
        return [x for batch in loader for x in batch]

    assert order(0, 1000) != order(1, 0)
    assert order(2, 0) == order(2, 0) and sorted(order(0, 1)) == data
