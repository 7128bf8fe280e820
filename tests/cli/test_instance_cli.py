import json

import numpy as np
import pytest
import yaml
from PIL import Image
from pycocotools import mask as mask_utils

from pixelgroup.cli import main
from tests._cli import one_line_error
from tests._tiny import TINY

COMMANDS = ["train", "eval", "predict", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_examples(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"pixelgroup {command}" in out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = root / "run"
    assert main(["train", "--config", str(config), "-o", str(out), "--quiet"]) == 0
    return out


def test_train_resume_is_a_no_op_when_finished(run_dir, capsys):
    assert main(["train", "-o", str(run_dir), "--resume", "--quiet"]) == 0
    assert "checkpoint:" in capsys.readouterr().out


def test_eval_prints_table_and_writes_json(run_dir, tmp_path, capsys):
    out = tmp_path / "m.json"
    ckpt = str(run_dir / "checkpoint.pt")
    assert main(["eval", "--checkpoint", ckpt, "-o", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "AP50" in text and "ARI" in text
    metrics = json.loads(out.read_text())
    assert metrics["images"] == 2 and 0.0 <= metrics["ARI"] <= 1.0


def test_predict_writes_valid_files(run_dir, tmp_path):
    image = tmp_path / "digits.png"
    rgb = np.zeros((40, 48, 3), np.uint8)
    rgb[5:20, 5:15], rgb[22:35, 30:44] = (250, 40, 40), (40, 250, 40)
    Image.fromarray(rgb).save(image)
    out = tmp_path / "pred"
    ckpt = str(run_dir / "checkpoint.pt")
    assert main(["predict", "--checkpoint", ckpt, str(image), "-o", str(out), "--quiet"]) == 0
    labels = np.asarray(Image.open(out / "digits_labels.png"))
    assert labels.shape == (40, 48)
    overlay = np.asarray(Image.open(out / "digits_overlay.png"))
    assert overlay.shape == (40, 48, 3) and overlay.dtype == np.uint8
    results = json.loads((out / "digits.json").read_text())
    assert len(results) == len(np.unique(labels[labels > 0]))
    for r in results:
        rle = dict(r["segmentation"], counts=r["segmentation"]["counts"].encode())
        mask = mask_utils.decode(rle).astype(bool)
        assert mask.shape == labels.shape and np.all(labels[mask] == labels[mask][0])
        assert 0.0 <= r["score"] <= 1.0


def test_unknown_config_key(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--set", "loss.margni=0.3", "-o", str(out), "--quiet"]) == 2
    one_line_error(capsys, "unknown config key 'loss.margni'")
    assert not out.exists()


def test_missing_checkpoint(tmp_path, capsys):
    assert main(["eval", "--checkpoint", str(tmp_path / "none.pt")]) == 2
    one_line_error(capsys, "checkpoint not found")
    assert not (tmp_path / "metrics.json").exists()


def test_predict_unreadable_image_leaves_no_output(run_dir, tmp_path, capsys):
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(good)
    bad.write_bytes(b"\x89PNG garbage")
    out = tmp_path / "pred"
    ckpt = str(run_dir / "checkpoint.pt")
    assert main(["predict", "--checkpoint", ckpt, str(good), str(bad), "-o", str(out)]) == 2
    one_line_error(capsys, "cannot read image")
    assert not out.exists()


def test_predict_reads_grey_and_rejects_unreadable_images_before_writing(run_dir, tmp_path, capsys):
    gray = tmp_path / "gray.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(gray)
    broken = tmp_path / "broken.png"
    broken.write_text("not a png")
    out = tmp_path / "pred"
    ckpt = str(run_dir / "checkpoint.pt")
    assert main(["predict", "--checkpoint", ckpt, str(gray), str(broken), "-o", str(out)]) == 2
    one_line_error(capsys, f"cannot read image {broken}")
    assert not out.exists()
    assert main(["predict", "--checkpoint", ckpt, str(gray), "-o", str(out), "--quiet"]) == 0
    assert (out / "gray_labels.png").is_file()


def test_resume_rejects_config(tmp_path, capsys):
    assert main(["train", "--resume", "--config", "toy", "-o", str(tmp_path)]) == 2
    one_line_error(capsys, "--resume uses the config stored in the checkpoint")


def test_demo_missing_config(tmp_path, capsys):
    assert main(["demo", "--config", str(tmp_path / "none.yaml"), "-o", str(tmp_path / "d")]) == 2
    one_line_error(capsys, "config not found")
    assert not (tmp_path / "d").exists()


def test_demo_end_to_end(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "demo"
    args = ["demo", "--config", str(config), "-o", str(out), "--quiet"]
    assert main(args + ["--set", "train.epochs=1", "--set", "train.iters_per_epoch=1"]) == 0
    printed = capsys.readouterr().out
    assert (out / "metrics.json").is_file() and "figure:" in printed
    for name in ("loops", "loop_instances", "predictions", "loss_curves"):
        with Image.open(out / "figures" / f"{name}.png") as im:
            assert im.format == "PNG" and im.size[0] > 100
    # re-evaluate with other grouping settings, without training
    first = (out / "checkpoint.pt").stat().st_mtime_ns
    redo = ["demo", "-o", str(out), "--quiet", "--skip-train", "--set", "grouping.min_area=1"]
    assert main(redo) == 0
    assert (out / "checkpoint.pt").stat().st_mtime_ns == first
    capsys.readouterr()
    assert main(["demo", "-o", str(out), "--skip-train", "--set", "grouping.nope=1"]) == 2
    one_line_error(capsys, "unknown config key 'grouping.nope'")


def test_demo_skip_train_on_a_checkpoint_without_history(tmp_path, capsys):
    """An older checkpoint stores no training history: the figures come without loss curves."""
    import shutil
    from pathlib import Path

    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "toy_demo.pt"
    (tmp_path / "run").mkdir()
    shutil.copy(fixture, tmp_path / "run" / "checkpoint.pt")
    args = ["demo", "-o", str(tmp_path / "run"), "--quiet", "--skip-train"]
    assert main(args + ["--set", "data.options.eval_length=2"]) == 0
    figures = tmp_path / "run" / "figures"  # the first evaluation of this folder
    assert (figures / "loops.png").is_file() and not (figures / "loss_curves.png").exists()
    assert "Traceback" not in capsys.readouterr().err


def test_bad_thread_count(tmp_path, capsys):
    assert main(["train", "--threads", "0", "-o", str(tmp_path / "r")]) == 2
    one_line_error(capsys, "--threads must be >= 1, got 0")
    assert not (tmp_path / "r").exists()
