"""Checkpoints whose weights do not fit their config: one-line errors, nothing written;
`train` prints its checkpoint line on rank 0 only."""

from __future__ import annotations

import pytest
import torch
import yaml

import pixelgroup.engine
import pixelgroup.engine.schedule
from pixelgroup.cli import main
from pixelgroup.config import to_dict
from pixelgroup.engine.checkpoint import build_model_seeded, load_weights, save_checkpoint
from pixelgroup.engine.distributed import DistInfo
from pixelgroup.engine.train import TrainResult
from tests._cli import one_line_error
from tests._tiny import TINY, tiny_config


def _checkpoint(path, weights):
    save_checkpoint({"config": to_dict(tiny_config()), "model": weights, "epoch": 1}, path)
    return path


def _wider_weights():
    return build_model_seeded(tiny_config(model={"options": {"width": 8, "num_blocks": 1}}))


@pytest.fixture
def wider(tmp_path):
    """A checkpoint whose config builds width 4 but whose weights are of width 8."""
    return _checkpoint(tmp_path / "wider.pt", _wider_weights().state_dict())


def test_eval_rejects_weights_of_another_shape(wider, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    assert main(["eval", "--checkpoint", str(wider), "-o", str(out), "--quiet"]) == 2
    err = one_line_error(capsys, str(wider), "does not fit the model its config builds")
    first = next(iter(build_model_seeded(tiny_config()).state_dict()))
    assert f"{first!r} has shape" in err and "the model expects" in err
    assert not out.exists()


def test_predict_rejects_another_model(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "other.pt", {"encoder.weight": torch.zeros(3)})
    out = tmp_path / "pred"
    assert (
        main(["predict", "--checkpoint", str(ckpt), str(tmp_path / "x.png"), "-o", str(out)]) == 2
    )
    one_line_error(capsys, str(ckpt), "missing from the checkpoint")
    assert not out.exists()


def test_unexpected_key_is_named(tmp_path):
    model = build_model_seeded(tiny_config())
    weights = {**model.state_dict(), "extra.bias": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"x.pt does not fit .*'extra.bias' is not a weight"):
        load_weights(model, weights, tmp_path / "x.pt")


def test_resume_rejects_weights_of_another_shape(tmp_path, capsys):
    run_dir = tmp_path / "run"
    ckpt = _checkpoint(run_dir / "checkpoint.pt", _wider_weights().state_dict())
    before = ckpt.read_bytes()
    assert main(["train", "-o", str(run_dir), "--resume", "--quiet"]) == 2
    one_line_error(capsys, str(ckpt), "has shape")
    assert ckpt.read_bytes() == before and sorted(p.name for p in run_dir.iterdir()) == [
        "checkpoint.pt"
    ]


@pytest.mark.parametrize(("rank", "printed"), [(0, True), (1, False)])
def test_train_prints_checkpoint_on_rank_0_only(rank, printed, tmp_path, monkeypatch, capsys):
    def fake_train(cfg, run_dir, resume, overwrite, progress):
        return TrainResult(run_dir / "checkpoint.pt", [], DistInfo(rank, 2, rank))

    monkeypatch.setattr(pixelgroup.engine.schedule, "train", fake_train)  # what the CLI runs
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    assert main(["train", "--config", str(config), "-o", str(tmp_path / "run")]) == 0
    assert ("checkpoint:" in capsys.readouterr().out) == printed
