"""The command line never loses work: finished runs, metrics and outputs are not replaced
unasked, checkpoints are verified, and every user error is one line with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import yaml

from pixelgroup.cli import main
from pixelgroup.engine import load_checkpoint
from pixelgroup.errors import CheckpointError
from tests._tiny import TINY


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "tiny.yaml"
    tiny = {**TINY, "train": {"epochs": 1, "iters_per_epoch": 2}}
    path.write_text(yaml.safe_dump(tiny))
    return path


def _error(capsys, fragment):
    err = capsys.readouterr().err.strip()
    assert fragment in err, err
    assert "\n" not in err and "Traceback" not in err
    return err


def _train(config, out, *extra):
    return main(["train", "--config", str(config), "-o", str(out), "--quiet", *extra])


def test_train_into_a_finished_run_needs_resume_or_overwrite(config, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(config, out) == 0
    before = (out / "checkpoint.pt").read_bytes()
    assert _train(config, out, "--set", "train.epochs=2") == 2
    _error(capsys, "already holds a checkpoint; continue it with --resume, or replace it")
    assert (out / "checkpoint.pt").read_bytes() == before
    assert _train(config, out, "--overwrite") == 0
    assert (out / "checkpoint.prev.pt").read_bytes() == before  # the replaced one is kept


def test_resume_accepts_safe_overrides_only(config, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(config, out) == 0
    assert main(["train", "-o", str(out), "--resume", "--set", "loss.margin=0.3", "--quiet"]) == 2
    _error(capsys, "loss.margin cannot change (0.5 -> 0.3); a resumed run may change only")
    assert main(["train", "-o", str(out), "--resume", "--set", "train.epochs=2", "--quiet"]) == 0
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["epoch"] == 2 and len(state["history"]) == 4


def test_a_corrupt_checkpoint_is_an_error_not_a_different_run(config, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(config, out) == 0
    path = out / "checkpoint.pt"
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4] = bytes(255 - b for b in data[middle : middle + 4])
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checkpoint.pt"):
        load_checkpoint(path)
    assert main(["train", "-o", str(out), "--resume", "--set", "train.epochs=2", "--quiet"]) == 2
    _error(capsys, str(path))


def test_stale_temporaries_are_removed_on_start(config, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    stale = out / ".checkpoint.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    assert _train(config, out) == 0
    assert not stale.exists() and (out / "checkpoint.pt").is_file()


def test_eval_keeps_earlier_metrics(config, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(config, out) == 0
    ckpt = str(out / "checkpoint.pt")
    assert main(["eval", "--checkpoint", ckpt, "--quiet"]) == 0
    first = (out / "metrics.json").read_text()
    assert main(["eval", "--checkpoint", ckpt, "--quiet", "--set", "grouping.num_iters=1"]) == 0
    assert (out / "metrics.json").read_text() == first
    assert json.loads((out / "metrics-2.json").read_text())["images"] == 2
    taken = tmp_path / "m.json"
    taken.write_text("{}")
    assert main(["eval", "--checkpoint", ckpt, "-o", str(taken), "--quiet"]) == 2
    _error(capsys, f"-o {taken} exists; pass --overwrite")
    assert main(["eval", "--checkpoint", ckpt, "-o", str(taken), "--overwrite", "--quiet"]) == 0
    assert "ARI" in json.loads(taken.read_text())


def test_exponent_floats_and_bad_set_values_on_the_command_line(config, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(config, out, "--set", "optim.lr=1e-3") == 0
    assert load_checkpoint(out / "checkpoint.pt")["config"]["optim"]["lr"] == 0.001
    assert _train(config, tmp_path / "r2", "--set", "loss.iter_weights=[1,") == 2
    _error(capsys, "--set loss.iter_weights=[1,: not valid YAML")
    if not torch.cuda.is_available():
        assert _train(config, tmp_path / "r3", "--set", "device=cuda") == 2
        _error(capsys, "device=cuda but no CUDA device is available here")


def test_unwritable_outputs_fail_before_any_work(config, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert _train(config, afile) == 2
    _error(capsys, f"-o {afile} is a file, not a folder")
    assert _train(config, afile / "sub") == 2
    _error(capsys, f"{afile} is a file, not a folder")


def test_shipped_configs_by_name_from_any_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    overrides = ["--set", "data.options.length=8", "--set", "data.options.eval_length=2"]
    overrides += ["--set", "train.epochs=1", "--set", "train.iters_per_epoch=1"]
    overrides += ["--set", "model.options.width=4", "--set", "model.options.num_blocks=1"]
    assert main(["train", "--config", "toy", "-o", "r", "--quiet", *overrides]) == 0
    assert (tmp_path / "r" / "checkpoint.pt").is_file()
    assert main(["train", "--config", "toyy", "-o", "r2", "--quiet"]) == 2
    _error(capsys, "config not found: toyy (a YAML file, or a shipped config: bsds")


def test_help_does_not_import_torch():
    """`pixelgroup --help` and argument errors stay fast: no subcommand imports torch (or the
    library) before it runs."""
    code = (
        "import sys; from pixelgroup.cli import build_parser; build_parser(); "
        "heavy = [m for m in ('torch', 'numpy', 'matplotlib') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
