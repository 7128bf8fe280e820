"""`pixelgroup rehearse`: synthetic releases in the real layouts, and every paper recipe run
unchanged (but for data.root, device and iterations) through train, resume, eval, predict and
the dataset-level evaluator at the tiny size."""

from __future__ import annotations

import json
import os
import re
import warnings

import numpy as np
import pytest
import scipy.io
from PIL import Image
from torchvision.datasets import SBDataset

from pixelgroup.cli import main
from pixelgroup.cli.rehearse import PAPER_RECIPES
from pixelgroup.config import (
    CONFIG_DIR,
    ExperimentConfig,
    expand_stages,
    load_config,
    resolve_config,
)
from pixelgroup.data.bsds import BSDS500
from pixelgroup.data.synthetic import LAYOUTS, write_layouts
from pixelgroup.data.voc import SBDInstances, VOCInstances
from pixelgroup.engine.rehearsal import rehearse_recipe
from pixelgroup.errors import ConfigError
from pixelgroup.tasks import get_task


@pytest.fixture(scope="module")
def tiny_roots(tmp_path_factory):
    return write_layouts(tmp_path_factory.mktemp("layouts"), "tiny")


def test_bsds500_layout(tiny_roots):
    data = tiny_roots["bsds"] / "BSDS500" / "data"
    for split, count in LAYOUTS["tiny"].bsds_counts.items():
        assert len(list((data / "images" / split).glob("*.jpg"))) == count
        assert len(list((data / "groundTruth" / split).glob("*.mat"))) == count
    mat = sorted((data / "groundTruth" / "test").glob("*.mat"))[0]
    raw = scipy.io.loadmat(mat)["groundTruth"]  # a 1 x 5 MATLAB cell of structs
    assert raw.shape == (1, 5) and set(raw[0, 0].dtype.names) == {"Segmentation", "Boundaries"}
    seg = raw[0, 0]["Segmentation"][0, 0]
    assert seg.dtype == np.uint16 and seg.min() >= 1
    sample = BSDS500(tiny_roots["bsds"], "test")[0]
    assert sample.boundaries.shape[0] == 5 and sample.boundaries.any()
    sizes = {tuple(BSDS500(tiny_roots["bsds"], "trainval")[i].image.shape[1:]) for i in range(2)}
    assert sizes == set(LAYOUTS["tiny"].bsds_sizes)
    assert set(LAYOUTS["full"].bsds_sizes) == {(321, 481), (481, 321)}


def test_voc2012_layout(tiny_roots):
    voc = tiny_roots["voc"] / "VOCdevkit" / "VOC2012"
    train = (voc / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    val = (voc / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    trainval = (voc / "ImageSets" / "Segmentation" / "trainval.txt").read_text().split()
    assert trainval == train + val and not set(train) & set(val)
    with Image.open(voc / "SegmentationObject" / f"{val[0]}.png") as im:
        assert im.mode == "P" and im.getpalette()[3:6] == [128, 0, 0]  # VOC's colour map
        objects = np.asarray(im)
    with Image.open(voc / "SegmentationClass" / f"{val[0]}.png") as im:
        classes = np.asarray(im)
    assert 255 in objects and ((objects == 255) == (classes == 255)).all()  # void borders
    assert set(np.unique(classes)) <= set(range(21)) | {255}
    sample = VOCInstances(tiny_roots["voc"], "val")[0]
    assert tuple(sample.image.shape[1:]) in LAYOUTS["tiny"].voc_sizes
    assert (sample.instance > 0).any()


def test_sbd_layout(tiny_roots):
    root = tiny_roots["sbd"]
    assert {p.name for p in root.iterdir()} == {"img", "cls", "inst", "train.txt", "val.txt"}
    image, target = SBDataset(str(root), "train", mode="segmentation")[0]  # torchvision reads it
    assert image.size[::-1] == np.asarray(target).shape
    boundaries = SBDataset(str(root), "train", mode="boundaries")[0][1]
    assert boundaries.shape[0] == 20
    inst = scipy.io.loadmat(root / "inst" / f"{(root / 'val.txt').read_text().split()[0]}.mat")
    assert set(inst["GTinst"].dtype.names) == {"Segmentation", "Boundaries", "Categories"}
    sample = SBDInstances(root, "val")[0]
    assert ((sample.instance > 0) == (sample.semantic > 0)).all() and 255 not in sample.instance


def test_rehearsable_configs_come_from_their_tasks():
    """Which shipped configs can be rehearsed is the tasks' answer, not a list in the engine."""
    rehearsable = {
        path.stem
        for path in CONFIG_DIR.glob("*.yaml")
        if (cfg := load_config(ExperimentConfig, path))
        and get_task(cfg.task).rehearsal(cfg, "tiny")
    }
    assert rehearsable == set(PAPER_RECIPES)


# the VOC recipes build a ResNet-101 and write its checkpoints (550 MB with the optimiser
# state) four times: about 2 minutes each on this 2-core machine, most of it checkpoint I/O
@pytest.mark.parametrize(
    "recipe",
    [r if r == "bsds" else pytest.param(r, marks=pytest.mark.slow) for r in PAPER_RECIPES],
)
def test_tiny_rehearsal_of_each_paper_recipe(
    recipe, tmp_path, one_torch_thread, capsys, monkeypatch
):
    # one core, as torch's DataLoader counts them: the recipes' num_workers exceed it here
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    argv = ["rehearse", "--config", recipe, "-o", str(tmp_path), "--device", "cpu"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main([*argv, "--quiet", "--no-keep-checkpoints"]) == 0
    # --quiet: no progress bar of any step (the evaluators' included), and no torch warning
    # that the recipe's data.num_workers exceed this machine's cores
    assert [str(w.message) for w in caught if "DataLoader will create" in str(w.message)] == []
    shown, err = capsys.readouterr()
    assert err == ""
    assert re.search(rf"^\| {recipe} \| \d \| [\d.]+", shown, re.M), shown
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["size"] == "tiny" and summary["device"] == "cpu"
    r = summary["recipes"][recipe]
    assert r["ok"], r["problems"]
    stages = len(expand_stages(load_config(ExperimentConfig, resolve_config(recipe))))
    assert r["stages"] == stages and len(r["sec_per_iter"]) == stages
    assert r["iterations"] == [2] * (stages - 1) + [4]  # the last stage resumed for 2 more
    assert all(s > 0 for s in r["sec_per_iter"]) and r["sec_per_eval_image"] > 0
    assert r["train_peak_rss_mib"] > 100 and r["eval_peak_rss_mib"] > 100
    assert r["eval_images"] == 2 and r["metrics"] and r["files_checked"] >= 4
    if recipe != "voc_semantic":  # the others have a dataset-level evaluator
        assert r["evaluator_metrics"], "the dataset-level evaluator wrote no scores"
        assert any(c.startswith("pixelgroup eval-") for c in r["commands"])
    assert not list(tmp_path.rglob("checkpoint*.pt"))  # --no-keep-checkpoints


def test_rehearse_errors(tmp_path, tiny_roots, capsys):
    assert main(["rehearse", "--config", "toy", "-o", str(tmp_path), "--size", "tiny"]) == 2
    assert "rehearse writes BSDS500, VOC 2012 and SBD layouts" in capsys.readouterr().err
    assert main(["rehearse", "--size", "huge", "-o", str(tmp_path)]) == 2
    assert "--size must be tiny or full" in capsys.readouterr().err
    assert main(["rehearse", "--iters", "0", "-o", str(tmp_path)]) == 2
    with pytest.raises(ConfigError, match="iters >= 1"):
        rehearse_recipe("bsds", tiny_roots, tmp_path, iters=0)


def test_a_failing_step_is_reported_and_the_next_recipe_runs(tmp_path, monkeypatch):
    import pixelgroup.engine.rehearsal as rehearsal

    def fake(config, roots, out_dir, **kwargs):
        if config == "voc_instance":
            raise OverflowError("Python integer 974 out of bounds for uint8")
        return rehearsal.RecipeReport(config, config, "cpu", 1)

    monkeypatch.setattr(rehearsal, "rehearse_recipe", fake)
    summary = rehearsal.rehearse(["voc_instance", "bsds"], tmp_path)
    failed, ok = summary["recipes"]["voc_instance"], summary["recipes"]["bsds"]
    assert (
        not failed["ok"] and "stopped by OverflowError: Python integer 974" in failed["problems"][0]
    )
    assert ok["ok"]
    assert "stopped by OverflowError" in rehearsal.format_reports(summary)
    assert json.loads((tmp_path / "summary.json").read_text())["recipes"].keys() == {
        "voc_instance",
        "bsds",
    }
