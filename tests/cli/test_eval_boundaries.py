"""``pixelgroup eval-boundaries`` end to end on tiny synthetic data and the samples."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import scipy.io
from PIL import Image

from pixelgroup.cli import main


def _gt_folder(path, ids=("a", "b"), size=(100, 120)):
    path.mkdir()
    truths = {}
    for i, name in enumerate(ids):
        gt = np.zeros(size, np.uint8)
        gt[30 + i, 10:110] = 1
        gt[10:90, 40 + 9 * i] = 1
        cell = np.empty((1, 2), dtype=object)
        cell[0, 0] = {"Segmentation": np.ones(size), "Boundaries": gt}
        cell[0, 1] = {"Segmentation": np.ones(size), "Boundaries": np.roll(gt, 1, axis=0)}
        scipy.io.savemat(path / f"{name}.mat", {"groundTruth": cell})
        truths[name] = gt
    return truths


def test_eval_boundaries_16_bit_perfect_prediction(tmp_path, capsys):
    truths = _gt_folder(tmp_path / "gt")
    (tmp_path / "pred").mkdir()
    for name, gt in truths.items():
        Image.fromarray(gt.astype(np.uint16) * 65535).save(tmp_path / "pred" / f"{name}.png")
    out = tmp_path / "scores.json"
    code = main(
        ["eval-boundaries", str(tmp_path / "pred"), str(tmp_path / "gt"), "--thresholds", "5"]
        + ["--workers", "1", "--output", str(out), "--plot", str(tmp_path / "pr.png")]
        + ["--reference", "Kong & Fowlkes (paper)=0.796", "--reference", "HED=0.78"]
    )
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    labelled = {ln.split()[0]: ln.split()[1] for ln in lines[:4]}
    assert list(labelled) == ["ODS", "OIS", "AP", "R50"]
    results = json.loads(out.read_text())
    # both annotators match: the second is shifted by 1 px, within the 1.17 px radius
    assert results["ODS"] == pytest.approx(1.0) and float(labelled["ODS"]) == 1.0
    assert len(results["curve"]) == 5 and results["num_images"] == 2
    assert (tmp_path / "pr.png").read_bytes()[:4] == b"\x89PNG"


def test_eval_boundaries_on_samples(shared_data, tmp_path, capsys):
    from skimage import color, filters

    (tmp_path / "pred").mkdir()
    for name in ("104010", "130066"):
        m = scipy.io.loadmat(shared_data / "bsds" / f"{name}.mat", squeeze_me=True)
        pb = filters.sobel(color.rgb2gray(m["im"]))
        Image.fromarray(np.round(pb / pb.max() * 255).astype(np.uint8)).save(
            tmp_path / "pred" / f"{name}.png"
        )
    args = ["eval-boundaries", str(tmp_path / "pred"), str(shared_data / "bsds")]
    assert main(args + ["--thresholds", "3", "--workers", "2"]) == 0
    results = json.loads((tmp_path / "pred" / "eval_boundaries.json").read_text())
    assert 0.3 < results["ODS"] <= results["OIS"] < 0.7
    assert "ODS" in capsys.readouterr().out


def test_eval_boundaries_errors(tmp_path, capsys):
    truths = _gt_folder(tmp_path / "gt")
    pred = tmp_path / "pred"
    pred.mkdir()
    args = ["eval-boundaries", str(pred), str(tmp_path / "gt"), "--workers", "1"]
    assert main(args) == 2
    assert "2 of 2 ground-truth images have no prediction" in capsys.readouterr().err
    Image.fromarray(np.zeros((31, 120), np.uint8)).save(pred / "a.png")
    Image.fromarray(truths["b"] * 255).save(pred / "b.png")
    assert main(args) == 2
    assert "a: prediction is 31x120 but the ground truth is 100x120" in capsys.readouterr().err
    Image.fromarray(np.zeros((100, 120, 3), np.uint8)).save(pred / "a.png")
    assert main(args) == 2
    assert "expected an 8- or 16-bit grayscale PNG, got PIL mode 'RGB'" in capsys.readouterr().err
    (pred / "a.png").write_bytes(b"nope")
    assert main(args) == 2
    assert "cannot read prediction" in capsys.readouterr().err
    assert main(["eval-boundaries", str(pred), str(tmp_path / "none")]) == 2
    assert "GT_DIR is not a folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["eval-boundaries", str(pred), str(empty)]) == 2
    assert "no <id>.mat ground-truth files" in capsys.readouterr().err
    scipy.io.savemat(empty / "a.mat", {"GT": np.zeros((30, 40))})
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(pred / "a.png")
    assert main(["eval-boundaries", str(pred), str(empty)]) == 2
    assert "ground truth is empty" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--max-dist", "-1"], r"--max-dist must be a number >= 0 .*, got -1.0$"),
        (["--max-dist", "inf"], "--max-dist must be a number >= 0"),
        (["--workers", "0"], r"--workers must be >= 1 \(1 = no extra process"),
        (["--thresholds", "0"], "--thresholds must be >= 1, got 0"),
        (["--reference", "HED=0.78"], "--reference needs --plot"),
        (["--plot", "{tmp}/pr.png", "--reference", "HED"], "--reference must be LABEL=F"),
        (["--plot", "{tmp}/pr.png", "--reference", "HED=1.5"], "F must be a number in .0, 1.,"),
        (["--output", "{tmp}"], "--output .* is a folder; give a file name"),
        (["--output", "{tmp}/gt/a.mat/x.json"], "a.mat is a file, not a folder"),
        (["--plot", "{tmp}/dir.png"], "--plot .*dir.png is a folder"),
        (["--plot", "{tmp}/pr.jpg"], "--plot must end in .png"),
    ],
)
def test_eval_boundaries_argument_errors_come_first(tmp_path, capsys, extra, message):
    """Bad arguments and unwritable outputs fail in one line before any matching; here the
    predictions are missing, so any later check would give another message."""
    _gt_folder(tmp_path / "gt")
    (tmp_path / "pred").mkdir()
    (tmp_path / "dir.png").mkdir()
    argv = ["eval-boundaries", str(tmp_path / "pred"), str(tmp_path / "gt")]
    assert main(argv + [a.format(tmp=tmp_path) for a in extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pixelgroup eval-boundaries: error: ") and len(err.splitlines()) == 1
    assert re.search(message, err.strip()), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.png", "gt", "pred"]
