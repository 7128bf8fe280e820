"""Never a lost file, never a silent wrong answer (issue 30): outputs that would replace an
input or an existing file, interrupted checkpoint writes, bad config values, overrides that a
checkpoint cannot honour, NaN in JSON, and the one-line errors of user mistakes."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
import typing

import numpy as np
import pytest
import scipy.io
import torch
import yaml
from PIL import Image

from pixelgroup._atomic import write_json
from pixelgroup.cli import main
from pixelgroup.cli.eval import format_table
from pixelgroup.config import ExperimentConfig, to_dict
from pixelgroup.engine import load_checkpoint, train
from pixelgroup.engine.checkpoint import previous_checkpoint, save_checkpoint
from pixelgroup.errors import CheckpointError, DataError
from tests._cli import one_line_error
from tests._tiny import TINY, tiny_config

# --- shared fixtures -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished one-epoch tiny run: checkpoint.pt, checkpoint.prev.pt and config.json."""
    out = tmp_path_factory.mktemp("reliability") / "run"
    train(tiny_config(train={"epochs": 1, "iters_per_epoch": 1}), out, progress=False)
    return out


@pytest.fixture(scope="module")
def ckpt(run_dir):
    return run_dir / "checkpoint.pt"


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "img.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
    return path


def _snapshot(*folders):
    """Every file under ``folders`` -> SHA-256 of its bytes."""
    out = {}
    for folder in folders:
        for root, _, files in os.walk(folder):
            for name in files:
                path = os.path.join(root, name)
                with open(path, "rb") as f:
                    out[path] = hashlib.sha256(f.read()).hexdigest()
    return out


# --- 1, 2: an output is never an input, never an existing file unasked ----------------------


def _bsds_gt(folder):
    folder.mkdir()
    gt = np.zeros((20, 24), np.uint8)
    gt[10, 2:22] = 1
    cell = np.empty((1, 1), dtype=object)
    cell[0, 0] = {"Segmentation": np.ones((20, 24)), "Boundaries": gt}
    scipy.io.savemat(folder / "s0.mat", {"groundTruth": cell})
    return gt


def test_eval_boundaries_never_replaces_ground_truth_or_existing_output(tmp_path, capsys):
    gt = _bsds_gt(tmp_path / "gt")
    (tmp_path / "pred").mkdir()
    Image.fromarray(gt * 255).save(tmp_path / "pred" / "s0.png")
    before = _snapshot(tmp_path)
    base = ["eval-boundaries", str(tmp_path / "pred"), str(tmp_path / "gt"), "--workers", "1"]
    for target, what in (
        (tmp_path / "gt" / "s0.mat", "is inside the input folder"),
        (tmp_path / "pred" / "s0.png", "is an input of this command"),
    ):
        assert main([*base, "--output", str(target), "--overwrite", "--quiet"]) == 2
        one_line_error(capsys, what)
    assert _snapshot(tmp_path) == before
    (tmp_path / "mine.json").write_text("{}")
    before = _snapshot(tmp_path)
    assert main([*base, "--output", str(tmp_path / "mine.json"), "--quiet"]) == 2
    one_line_error(capsys, "exists; pass --overwrite to replace it")
    assert _snapshot(tmp_path) == before
    # the default output is never replaced either: the second run writes the next free name
    assert main([*base, "--quiet", "--thresholds", "3"]) == 0
    assert main([*base, "--quiet", "--thresholds", "3"]) == 0
    assert (tmp_path / "pred" / "eval_boundaries-2.json").is_file()
    assert capsys.readouterr().err == ""  # --quiet: no progress bar


def test_eval_proposals_and_instances_never_replace_their_input(shared_data, tmp_path, capsys):
    from tests.cli.test_eval_proposals import _gt_records

    voc = shared_data / "voc"
    records = _gt_records(voc)
    for r in records:
        r["category_id"] = 1
    props = tmp_path / "props.json"
    props.write_text(json.dumps(records))
    taken = tmp_path / "taken.json"
    taken.write_text("{}")
    (tmp_path / "taken.png").write_bytes(b"")
    before = _snapshot(tmp_path)
    for command in ("eval-proposals", "eval-instances"):
        assert main([command, str(props), str(voc), "--output", str(props), "--overwrite"]) == 2
        one_line_error(capsys, f"--output {props} is an input of this command")
        assert main([command, str(props), str(voc), "--output", str(taken)]) == 2
        one_line_error(capsys, f"--output {taken} exists; pass --overwrite to replace it")
    plot = ["--plot", str(tmp_path / "taken.png")]
    assert main(["eval-proposals", str(props), str(voc), *plot]) == 2
    one_line_error(capsys, "--plot", "exists; pass --overwrite")
    assert _snapshot(tmp_path) == before
    assert main(["eval-proposals", str(props), str(voc), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_eval_and_export_never_replace_the_checkpoint(ckpt, tmp_path, capsys):
    before = _snapshot(ckpt.parent)
    assert main(["eval", "--checkpoint", str(ckpt), "-o", str(ckpt), "--overwrite"]) == 2
    one_line_error(capsys, f"-o {ckpt} is an input of this command")
    args = ["export", "--checkpoint", str(ckpt), "--format", "torchscript", "-o", str(ckpt)]
    assert main([*args, "--overwrite"]) == 2
    one_line_error(capsys, f"-o {ckpt} is an input of this command")
    assert _snapshot(ckpt.parent) == before


# --- 3: a second predict into the same folder --------------------------------------------------


def test_predict_again_into_a_folder_merges_results_json(ckpt, image, tmp_path, capsys):
    other = tmp_path / "other.png"
    other.write_bytes(image.read_bytes())
    out = tmp_path / "preds"
    args = ["predict", "--checkpoint", str(ckpt), "-o", str(out), "--quiet"]
    assert main([*args, str(image)]) == 0
    first = json.loads((out / "img.json").read_text())
    assert main([*args, str(other)]) == 0
    assert main([*args, str(other)]) == 2  # its files exist: replaced only when told
    one_line_error(capsys, "other_labels.png exists; pass --overwrite to replace it")
    assert main([*args, "--overwrite", str(other)]) == 0  # predicted again: records replaced
    records = json.loads((out / "results.json").read_text())
    assert [r for r in records if r["image_id"] == "img"] == first
    assert [r for r in records if r["image_id"] == "other"] == json.loads(
        (out / "other.json").read_text()
    )
    (out / "results.json").write_text("{not json")
    before = _snapshot(out)
    assert main([*args, "--overwrite", str(image)]) == 2
    one_line_error(capsys, "results.json is not a results list that new predictions can be merged")
    assert _snapshot(out) == before


def test_predict_never_replaces_a_users_files_without_overwrite(ckpt, image, tmp_path, capsys):
    """A user's masks named like predict's outputs (``STEM_labels.png`` beside the images)
    are refused before any work, with a one-line error, unless --overwrite."""
    mask = image.parent / f"{image.stem}_labels.png"
    mask.write_bytes(b"the user's hand-drawn mask")
    before = _snapshot(image.parent)
    args = ["predict", "--checkpoint", str(ckpt), "-o", str(image.parent), str(image)]
    assert main([*args, "--quiet"]) == 2
    one_line_error(capsys, f"{mask} exists; pass --overwrite to replace it")
    assert _snapshot(image.parent) == before
    assert main([*args, "--quiet", "--overwrite"]) == 0
    assert mask.read_bytes() != b"the user's hand-drawn mask"


# --- 4: a checkpoint write killed at any point is resumable --------------------------------


class _Killed(BaseException):
    """A kill -9: nothing after it runs (no cleanup either)."""


def _state(epoch):
    return {"config": to_dict(tiny_config()), "model": {"w": torch.full((3,), 1.0)}, "epoch": epoch}


def _save_killed_at(path, step, monkeypatch):
    """``save_checkpoint`` of epoch 2 over the epoch-1 ``path``, killed before its ``step``-th
    rename or link (cleanup of temp files included); True if it ran to the end."""
    calls = {"n": 0}
    real = {name: getattr(os, name) for name in ("replace", "link", "unlink")}

    def op(name):
        def wrapped(*args, **kwargs):
            if name != "unlink":
                calls["n"] += 1
                if calls["n"] == step:
                    calls["killed"] = True
                    raise _Killed
            elif calls.get("killed"):
                return None  # a killed process removes nothing
            return real[name](*args, **kwargs)

        return wrapped

    for name in real:
        monkeypatch.setattr(os, name, op(name))
    try:
        save_checkpoint(_state(2), path)
        finished = True
    except _Killed:
        finished = False
    for name, fn in real.items():
        monkeypatch.setattr(os, name, fn)
    return finished


def test_every_crash_point_of_save_checkpoint_leaves_a_checkpoint(tmp_path, monkeypatch):
    step = 1
    while True:
        folder = tmp_path / f"kill{step}"
        path = folder / "checkpoint.pt"
        save_checkpoint(_state(1), path)
        finished = _save_killed_at(path, step, monkeypatch)
        # at every point checkpoint.pt is a whole checkpoint, the old or the new one
        assert load_checkpoint(path)["epoch"] in (1, 2)
        from pixelgroup.engine.checkpoint import finish_interrupted_save

        finish_interrupted_save(path)  # what train does on start
        assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []
        assert load_checkpoint(path)["epoch"] in (1, 2)
        if finished:
            assert load_checkpoint(path)["epoch"] == 2
            assert load_checkpoint(previous_checkpoint(path))["epoch"] == 1
            break
        step += 1
    assert step >= 3  # the new file, the link to .prev and the renames were all interrupted


def test_a_save_killed_between_renames_by_an_older_version_is_finished(tmp_path, capsys):
    """The layout the old two-rename save left: no checkpoint.pt, the previous one as
    .prev.pt and the complete new one as a temp file."""
    out = tmp_path / "run"
    cfg = dict(TINY, train={"epochs": 2, "iters_per_epoch": 1})
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(config), "-o", str(out), "--quiet"]) == 0
    path = out / "checkpoint.pt"
    complete = out / ".checkpoint.pt.x1y2.tmp"
    os.replace(path, complete)
    (out / ".checkpoint.pt.half.tmp").write_bytes(complete.read_bytes()[:100])
    # without --resume: not trained from scratch over it, not deleted
    assert main(["train", "--config", str(config), "-o", str(out), "--quiet"]) == 2
    one_line_error(capsys, "already holds a checkpoint; continue it with --resume")
    assert load_checkpoint(path)["epoch"] == 2
    assert not (out / ".checkpoint.pt.half.tmp").exists()
    assert main(["train", "-o", str(out), "--resume", "--quiet", "--set", "train.epochs=3"]) == 0
    assert load_checkpoint(path)["epoch"] == 3


def test_load_checkpoint_names_the_previous_one_when_missing(tmp_path):
    save_checkpoint(_state(1), tmp_path / "checkpoint.prev.pt")
    with pytest.raises(FileNotFoundError, match="the previous checkpoint is .*checkpoint.prev.pt"):
        load_checkpoint(tmp_path / "checkpoint.pt")


# --- 5, 10, 13: every numeric config field is checked where a config is read -------------------

# bad values for every numeric field of ExperimentConfig (YAML text, as after --set KEY=)
BAD_VALUES = {
    "seed": ["-1", "4294967296"],
    "data.batch_size": ["0", "-2"],
    "data.num_workers": ["-1"],
    "loss.margin": ["-0.1", "1.5", ".nan", "[0.5, .inf]"],
    "loss.bandwidth": ["0", "-0.1", ".inf", ".nan"],
    "loss.num_iters": ["-1"],
    "loss.iter_weights": ["[-1.0]", "[.nan]"],
    "loss.sample_ratio": ["0", "1.5", ".nan"],
    "loss.max_samples": ["0"],
    "loss.pos_weight": ["-1", ".nan"],
    "loss.neg_weight": ["-1", ".inf"],
    "loss.stride": ["0"],
    "loss.loop_stride": ["0"],
    "loss.aux_weight": ["-1", ".nan"],
    "loss.bce_weight": ["-1", ".nan"],
    "loss.pair_weight": ["-1", ".nan"],
    "loss.center_weight": ["-1", ".inf"],
    "optim.lr": ["-1", ".nan", ".inf"],
    "optim.momentum": ["-0.1", "1.5", ".nan"],
    "optim.weight_decay": ["-1", ".nan"],
    "optim.poly_power": ["-1", ".nan"],
    "train.epochs": ["0", "-1"],
    "train.iters_per_epoch": ["0", "-1"],
    "train.grad_clip": ["-1", "0", ".nan"],
    "train.grad_accum": ["0"],
    "train.checkpoint_every": ["0"],
    "grouping.bandwidth": ["0", ".inf", ".nan"],
    "grouping.num_iters": ["-1"],
    "grouping.threshold": ["-1.5", "2", ".nan"],
    "grouping.min_area": ["-5"],
    "grouping.stride": ["0"],
    "grouping.max_points": ["0"],
}
# bad values of the string fields with a fixed set of choices
BAD_CHOICES = {
    "train.amp": ["fp8"],
    "optim.name": ["rmsprop"],
    "loss.kind": ["hinge"],
    "grouping.background": ["none"],
    "model.test_bn": ["train"],
}


def _numeric_fields():
    def numeric(tp):
        args = typing.get_args(tp) or (tp,)
        return any(a in (int, float) or numeric(a) for a in args if a is not tp)

    def walk(cls, prefix):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            if dataclasses.is_dataclass(tp):
                yield from walk(tp, f"{prefix}{f.name}.")
            elif tp in (int, float) or numeric(tp):
                yield f"{prefix}{f.name}"

    from pixelgroup.tasks import TASKS  # and each task's own loss keys

    fields = set(walk(ExperimentConfig, ""))
    for task in TASKS.values():
        fields |= set(walk(task.loss_options, "loss."))
    return fields


def test_the_table_covers_every_numeric_config_field():
    assert set(BAD_VALUES) == _numeric_fields()


CASES = [(k, v) for k, vs in {**BAD_VALUES, **BAD_CHOICES}.items() for v in vs]


@pytest.fixture(scope="module")
def tiny_yaml(tmp_path_factory):
    path = tmp_path_factory.mktemp("yaml") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def test_bad_config_values_stop_every_command_in_one_line(ckpt, tiny_yaml, image, tmp_path, capsys):
    folder = tmp_path / "outputs"
    folder.mkdir()
    before = _snapshot(tmp_path, ckpt.parent)
    for key, value in CASES:
        commands = {
            "train": ["train", "--config", str(tiny_yaml), "-o", str(folder / "run")],
            "eval": ["eval", "--checkpoint", str(ckpt), "-o", str(folder / "m.json")],
            "predict": ["predict", "--checkpoint", str(ckpt), str(image), "-o", str(folder)],
            "tune": ["tune", "--checkpoint", str(ckpt)],  # would store its best in ckpt
            "demo": ["demo", "-o", str(folder / "demo")],
        }
        for name, args in commands.items():
            assert main([*args, "--quiet", "--set", f"{key}={value}"]) == 2, (name, key, value)
            one_line_error(capsys, key)
    train = commands["train"]
    assert main([*train, "--quiet", "--set", "train.amp=fp16"]) == 2  # on the CPU
    one_line_error(capsys, "train.amp 'fp16' needs a CUDA device, got device 'cpu'")
    assert _snapshot(tmp_path, ckpt.parent) == before


def test_a_yaml_file_with_a_nan_is_refused(tmp_path, capsys):
    path = tmp_path / "nan.yaml"
    path.write_text(yaml.safe_dump(TINY) + "optim:\n  lr: .nan\n")
    assert main(["train", "--config", str(path), "-o", str(tmp_path / "r"), "--quiet"]) == 2
    one_line_error(capsys, "optim.lr must be a finite number, got nan")
    assert not (tmp_path / "r").exists()


def test_checkpoints_with_bad_stored_values_are_refused_by_export_and_eval(ckpt, tmp_path, capsys):
    state = load_checkpoint(ckpt)
    for key, values in BAD_VALUES.items():
        config = json.loads(json.dumps(state["config"]))
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = yaml.safe_load(values[-1])
        bad = tmp_path / "bad.pt"
        save_checkpoint({**state, "config": config}, bad)
        before = _snapshot(tmp_path)
        out = tmp_path / "x.pt"
        assert (
            main(["export", "--checkpoint", str(bad), "--format", "torchscript", "-o", str(out)])
            == 2
        )
        one_line_error(capsys, key)
        assert main(["eval", "--checkpoint", str(bad), "-o", str(tmp_path / "m.json")]) == 2
        one_line_error(capsys, key)
        assert _snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("command", "fragment"),
    [
        (["export", "--format", "onnx", "--num-iters", "-1"], "--num-iters must be >= 0"),
        (["export", "--format", "onnx", "--bandwidth", "nan"], "--bandwidth must be a finite"),
        (["export", "--format", "onnx", "--bandwidth", "inf"], "--bandwidth must be a finite"),
        (["export", "--format", "onnx", "--stride", "0"], "--stride must be >= 1"),
        (["predict", "--max-size", "-1", "IMAGE"], "--max-size must be >= 0"),
        (["eval", "--threads", "0"], "--threads must be >= 1"),
        (["eval-boundaries", "P", "G", "--thresholds", "0"], "--thresholds must be >= 1"),
        (["eval-boundaries", "P", "G", "--max-dist", "nan"], "--max-dist must be a number"),
        (["eval-boundaries", "P", "G", "--max-dist", "-1"], "--max-dist must be a number"),
        (["eval-boundaries", "P", "G", "--workers", "0"], "--workers must be >= 1"),
        (["eval-proposals", "P", "G", "--plot", "a.png", "--reference", "x=0:nan"], "not a point"),
    ],
)
def test_bad_numeric_arguments(ckpt, image, tmp_path, capsys, command, fragment):
    args = [a.replace("IMAGE", str(image)) for a in command]
    if args[0] in ("export", "eval", "predict"):
        args += ["--checkpoint", str(ckpt), "-o", str(tmp_path / "out")]
    before = _snapshot(tmp_path, ckpt.parent)
    assert main(args) == 2
    one_line_error(capsys, fragment)
    assert _snapshot(tmp_path, ckpt.parent) == before


def test_non_finite_weights_are_never_written_nor_used(ckpt, tmp_path, capsys):
    state = load_checkpoint(ckpt)
    name = next(iter(state["model"]))
    weights = dict(state["model"])
    weights[name] = torch.full_like(weights[name], math.nan)
    with pytest.raises(CheckpointError, match=f"refusing to write checkpoint .*{name}"):
        save_checkpoint({**state, "model": weights}, tmp_path / "nan.pt")
    assert not (tmp_path / "nan.pt").exists()
    torch.save({**state, "model": weights}, tmp_path / "old.pt")  # an older, unwrapped one
    out = tmp_path / "x.onnx"
    assert (
        main(
            ["export", "--checkpoint", str(tmp_path / "old.pt"), "--format", "onnx", "-o", str(out)]
        )
        == 2
    )
    one_line_error(capsys, "cannot use checkpoint", "NaN/inf values")
    assert not out.exists()


# --- 6: overrides a checkpoint cannot honour -----------------------------------------------


@pytest.mark.parametrize(
    "override", ["model.name=dense", "model.options.embedding_dim=8", "task=semantic"]
)
def test_eval_predict_and_tune_refuse_overrides_of_what_the_checkpoint_fixes(
    ckpt, image, tmp_path, capsys, override
):
    key = override.split("=")[0]
    for args in (
        ["eval", "--checkpoint", str(ckpt), "-o", str(tmp_path / "m.json")],
        ["predict", "--checkpoint", str(ckpt), str(image), "-o", str(tmp_path / "p")],
        ["tune", "--checkpoint", str(ckpt), "--dry-run"],
    ):
        assert main([*args, "--set", override, "--quiet"]) == 2
        one_line_error(capsys, f"--set {key}:", "is fixed by")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.png"]


# --- 7: config.json describes the checkpoint beside it --------------------------------------


def test_config_json_always_describes_the_checkpoint(tiny_yaml, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    base = ["train", "--config", str(tiny_yaml), "-o", str(out), "--quiet"]
    assert main([*base, "--set", "train.epochs=2"]) == 0

    def stored():
        return load_checkpoint(out / "checkpoint.pt")["config"]

    assert json.loads((out / "config.json").read_text()) == stored()
    before = _snapshot(out)
    assert main(["train", "-o", str(out), "--resume", "--set", "train.epochs=1", "--quiet"]) == 2
    one_line_error(capsys, "train.epochs=1 is fewer than the 2 epochs it has completed")
    assert _snapshot(out) == before

    train_module = sys.modules["pixelgroup.engine.train"]

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_train_one_epoch", killed)
    assert main([*base, "--overwrite", "--set", "optim.lr=0.01"]) == 130  # killed at once
    assert json.loads((out / "config.json").read_text()) == stored()
    assert stored()["optim"]["lr"] == pytest.approx(1e-3)


# --- 8: NaN is never written into JSON ----------------------------------------------------------


def test_undefined_metrics_are_null_in_json_and_a_dash_in_the_table(tmp_path):
    metrics = {"AP50": math.nan, "coco_APm": float("nan"), "images": 2, "instances": 0}
    write_json(metrics, tmp_path / "m.json")

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    parsed = json.loads((tmp_path / "m.json").read_text(), parse_constant=refuse)
    assert parsed["AP50"] is None and parsed["coco_APm"] is None and parsed["images"] == 2
    table = format_table(metrics)
    assert "nan" not in table.lower().replace("instances", "") and "AP50       –" in table
    assert "the split has no instances" in table


# --- 11, 12, 14, 15, 18: one-line errors and notes ----------------------------------------


def test_a_data_error_raised_in_a_dataloader_worker_is_one_line(monkeypatch, capsys):
    from torch._utils import ExceptionWrapper

    import pixelgroup.cli.eval as eval_cli

    def run(args):
        try:
            raise DataError("img7.jpg: image file is truncated")
        except DataError:
            ExceptionWrapper(where="in DataLoader worker process 0").reraise()

    monkeypatch.setattr(eval_cli, "run", run)
    assert main(["eval", "--checkpoint", "x.pt"]) == 2
    err = one_line_error(capsys)
    assert err == "pixelgroup eval: error: img7.jpg: image file is truncated"


def test_a_corrupt_ground_truth_mat_is_one_line(tmp_path, capsys):
    gt = _bsds_gt(tmp_path / "gt")
    (tmp_path / "gt" / "s0.mat").write_bytes(b"")  # scipy: MatReadError, "appears truncated"
    (tmp_path / "pred").mkdir()
    Image.fromarray(gt * 255).save(tmp_path / "pred" / "s0.png")
    args = ["eval-boundaries", str(tmp_path / "pred"), str(tmp_path / "gt"), "--workers", "1"]
    assert main(args) == 2
    one_line_error(capsys, "s0.mat")


def test_output_paths_are_checked_before_any_work(ckpt, monkeypatch, capsys):
    import pixelgroup.engine

    def never(*args, **kwargs):
        raise AssertionError("evaluated before checking the output path")

    monkeypatch.setattr(pixelgroup.engine, "evaluate", never)
    assert main(["eval", "--checkpoint", str(ckpt), "-o", "/proc/m.json", "--quiet"]) == 2
    one_line_error(capsys, "-o /proc: cannot write in /proc")


@pytest.mark.parametrize(
    "command",
    [
        ["train", "--config", "toy", "-o", "/proc/run"],
        ["predict", "--checkpoint", "CKPT", "IMAGE", "-o", "/proc/preds"],
        ["export", "--checkpoint", "CKPT", "--format", "onnx", "-o", "/proc/m.onnx"],
        ["eval-boundaries", "TMP", "TMP", "--output", "/proc/b.json"],
        ["eval-proposals", "TMP/p.json", "TMP", "--output", "/proc/p.json"],
        ["eval-instances", "TMP/p.json", "TMP", "--output", "/proc/i.json"],
        ["rehearse", "-o", "/proc/rehearsal"],
        ["demo", "-o", "/proc/demo"],
    ],
)
def test_every_command_checks_its_output_first(command, ckpt, image, tmp_path, capsys):
    args = [
        a.replace("CKPT", str(ckpt)).replace("IMAGE", str(image)).replace("TMP", str(tmp_path))
        for a in command
    ]
    assert main(args if args[0] == "export" else [*args, "--quiet"]) == 2
    one_line_error(capsys, "cannot write in /proc")


def test_files_that_are_not_checkpoints_are_named(ckpt, tmp_path, capsys):
    text = tmp_path / "notes.pt"
    text.write_text("hello, not a checkpoint\n")
    flipped = tmp_path / "flipped.pt"
    data = bytearray(ckpt.read_bytes())
    data[data.rfind(b"data.pkl")] ^= 0xFF  # a file name in the zip's central directory
    flipped.write_bytes(bytes(data))
    for path in (text, flipped):
        assert main(["eval", "--checkpoint", str(path), "-o", str(tmp_path / "m.json")]) == 2
        one_line_error(capsys, f"cannot read checkpoint {path}: not a pixelgroup checkpoint")


def test_binary_boundary_maps_say_why_ap_is_zero(tmp_path, capsys):
    gt = _bsds_gt(tmp_path / "gt")
    (tmp_path / "pred").mkdir()
    Image.fromarray(gt * 255).save(tmp_path / "pred" / "s0.png")
    args = ["eval-boundaries", str(tmp_path / "pred"), str(tmp_path / "gt"), "--workers", "1"]
    assert main([*args, "--thresholds", "5"]) == 0
    out = capsys.readouterr().out
    assert "ODS 1.000" in out and "AP  0.000  (binary maps: one operating point" in out


# --- 16: shape errors name the real problem ------------------------------------------------


def test_shape_errors_blame_the_right_thing():
    from pixelgroup.ops import RecurrentMeanShift, normalize_to_sphere
    from pixelgroup.postprocess import group_pixels

    dense = normalize_to_sphere(torch.randn(3, 8, 8), dim=0)  # (D, H, W), no batch dim
    with pytest.raises(ValueError, match=r"read as \(B, N, D\) points.*add the batch dim"):
        RecurrentMeanShift(0.3, 1)(dense)
    assert RecurrentMeanShift(0.3, 1)(dense[None])[-1].shape == (1, 3, 8, 8)
    with pytest.raises(ValueError, match=r"unit-norm vectors along dim 0 \(D\) of \(D, H, W\)"):
        group_pixels(dense * 2)
    with pytest.raises(TypeError, match="got ndarray; convert it with torch.from_numpy"):
        group_pixels(dense.numpy())


def test_an_rgb_mask_is_found_when_the_folder_opens(tmp_path):
    from pixelgroup.data import ImageMaskFolder
    from tests.data.test_folder import _write_split

    _write_split(tmp_path)
    mask = tmp_path / "train" / "masks" / "im1.png"
    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(mask)
    with pytest.raises(DataError, match=f"{mask}: expected a single-channel label map.*RGB"):
        ImageMaskFolder(tmp_path, "train")


# --- 9: export's default stride bounds memory; 1-pixel-wide images ---------------------------


def test_export_defaults_to_a_bounded_stride_and_runs_one_pixel_wide_images(tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    from pixelgroup.engine.export import read_metadata
    from tests.engine.test_export import tiny_checkpoint

    out = tmp_path / "g.onnx"
    ckpt = tiny_checkpoint(tmp_path)  # the toy model: embedding at the image's size
    assert main(["export", "--checkpoint", str(ckpt), "--format", "onnx", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "stride=8" in printed and "4096 x 4096 float32 kernel takes 64 MiB" in printed
    assert read_metadata(out)["stride"] == 8
    session = ort.InferenceSession(str(out))
    rng = np.random.default_rng(0)
    for shape in [(1, 3, 1, 20), (1, 3, 20, 1), (1, 3, 1, 1)]:
        images = rng.random(shape, dtype=np.float32)
        outputs = session.run(None, {session.get_inputs()[0].name: images})
        assert all(np.isfinite(o).all() for o in outputs), shape


# --- 17: a split without instances -----------------------------------------------------------


def test_coco_images_without_instances_warn_and_a_split_without_any_is_an_error(tmp_path, caplog):
    from pixelgroup.data import CocoInstances
    from tests.data.test_coco_dataset import write_tiny_coco

    write_tiny_coco(tmp_path, {"train": 3})
    path = tmp_path / "annotations" / "instances_train.json"
    data = json.loads(path.read_text())
    first = data["images"][0]["id"]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != first]
    path.write_text(json.dumps(data))
    with caplog.at_level("WARNING"):
        CocoInstances(tmp_path / "images" / "train", path)
    assert "1 of 3 images have no instance annotation (all background); 0 annotations" in (
        caplog.text
    )
    flat = [[1.0, 1.0, 5.0, 5.0, 9.0, 9.0]]  # three points on a line
    data["annotations"] = [{**a, "segmentation": flat} for a in data["annotations"]]
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="none of its 3 images has an instance annotation"):
        CocoInstances(tmp_path / "images" / "train", path)
    data["annotations"] = []
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="none of its 3 images has an instance annotation"):
        CocoInstances(tmp_path / "images" / "train", path)


@pytest.mark.parametrize(
    "command",
    [
        ["analyze", "gradient", "--output-dir", "/proc/figures", "--steps", "1"],
        ["analyze", "capacity", "--figure", "/proc/cap.png", "--dim", "2", "--margin", "0.5"],
        ["bench", "--quick", "--out", "/proc/bench.md"],
    ],
)
def test_studies_check_their_output_before_any_work(command, capsys):
    assert main(command) == 2
    one_line_error(capsys, "cannot write in /proc")


def _set_mask(path, value, dtype=np.uint8, annotated=False):
    """Replace the mask at ``path`` by one of its size holding ``value`` everywhere (and an
    instance id at one pixel if ``annotated``); 16-bit masks are written as TIFF."""
    ids = np.full(np.asarray(Image.open(path)).shape, value, dtype)
    ids[0, 0] = 3 if annotated else value
    path.unlink()
    Image.fromarray(ids).save(path.with_suffix(".tif") if dtype == np.uint16 else path)


def test_folder_masks_without_instances_warn_and_a_split_without_any_is_an_error(
    tmp_path, caplog, capsys
):
    from pixelgroup.data import ImageMaskFolder
    from pixelgroup.data.partial import UNANNOTATED
    from tests.data.test_coco_dataset import write_tiny_folder

    root = write_tiny_folder(tmp_path / "data", {"train": 4})
    masks = sorted((root / "train" / "masks").iterdir())
    _set_mask(masks[0], 0)  # all background
    _set_mask(masks[1], UNANNOTATED, np.uint16)  # all unannotated
    _set_mask(masks[2], UNANNOTATED, np.uint16, annotated=True)  # one annotated pixel
    with caplog.at_level("WARNING"):
        ImageMaskFolder(root, "train")
    assert "2 of 4 masks hold no instance (all background), e.g. train_0.png" in caplog.text
    _set_mask(masks[2].with_suffix(".tif"), 0)
    _set_mask(masks[3], 0)
    config = tmp_path / "folder.yaml"
    values = {**TINY, "data": {"name": "folder", "root": str(root), "options": {"size": [32, 32]}}}
    config.write_text(yaml.safe_dump(values))
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "-o", str(out), "--quiet"]) == 2
    one_line_error(capsys, "masks: none of its 4 masks holds an instance (every pixel is 0")
    assert not out.exists()


# --- 19: --quiet is quiet ---------------------------------------------------------------------


def test_predict_quiet_states_no_image_conversion(ckpt, tmp_path, monkeypatch, caplog, capsys):
    """Without --quiet, each kind of conversion is stated once per run; with it (any
    subcommand: pixelgroup.cli.main), never."""
    import pixelgroup.data.io

    monkeypatch.setattr(pixelgroup.data.io, "_REPORTED", set())
    rng = np.random.default_rng(0)
    images = []
    for name in ("a.png", "b.png"):
        images.append(str(tmp_path / name))
        rgb = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(rgb).convert("P").save(images[-1])
    args = ["predict", "--checkpoint", str(ckpt), *images]
    with caplog.at_level("INFO"):
        assert main([*args, "-o", str(tmp_path / "quiet"), "--quiet"]) == 0
    assert caplog.text == "" and capsys.readouterr().err == ""
    (tmp_path / "bad.png").write_text("not an image")
    with caplog.at_level("INFO"):  # the error path: the error alone
        assert main([*args, str(tmp_path / "bad.png"), "-o", str(tmp_path / "q2"), "--quiet"]) == 2
    assert caplog.text == ""
    one_line_error(capsys, "cannot read image")
    with caplog.at_level("INFO"):
        assert main([*args, "-o", str(tmp_path / "loud")]) == 0
    assert caplog.text.count("images of mode P are converted to RGB on load") == 1
