"""Offline evaluation as library calls: the same scores as the ``eval-*`` commands, one-line
:class:`DataError` for unusable files, and each task's record builder shared with its
evaluator."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pixelgroup.cli import main
from pixelgroup.config import ExperimentConfig, load_config, override_config, resolve_config
from pixelgroup.data.boundary_maps import evaluate_boundary_maps
from pixelgroup.data.coco import masks_to_results
from pixelgroup.data.voc import MatInstances, instance_masks
from pixelgroup.errors import DataError
from pixelgroup.metrics.instance_map import instances_from_maps
from pixelgroup.tasks import get_task
from pixelgroup.tasks.offline import score_results
from pixelgroup.tasks.proposals import PROPOSAL_SCORING, proposal_target
from pixelgroup.tasks.voc_instance import INSTANCE_SCORING, instance_map_target


@pytest.fixture
def voc(shared_data):
    return shared_data / "voc"


def _results(voc, tmp_path, classes: bool):
    records = []
    dataset = MatInstances(voc)
    for image_id, sample in zip(dataset.image_ids, dataset, strict=True):
        masks, labels = instances_from_maps(sample.instance, sample.semantic)
        masks = torch.roll(masks, 20, dims=2)
        scores = np.linspace(1.0, 0.5, len(masks))
        records += masks_to_results(image_id, masks, scores, labels if classes else None)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(records))
    return path


@pytest.mark.parametrize(
    ("scoring", "classes"), [(PROPOSAL_SCORING, False), (INSTANCE_SCORING, True)]
)
def test_the_library_gives_the_commands_scores(voc, tmp_path, capsys, scoring, classes):
    results = _results(voc, tmp_path, classes)
    scores = score_results(results, voc, scoring, progress=False)
    command = scoring.command
    out = tmp_path / "cli.json"
    assert main([command, str(results), str(voc), "--output", str(out), "--quiet"]) == 0
    written = json.loads(out.read_text())
    assert {k: v for k, v in written.items() if k in scores} == pytest.approx(scores, nan_ok=True)
    assert set(written) - set(scores) <= {"proposals", "predictions", "gt_dir"}


def test_unusable_files_are_data_errors(voc, tmp_path):
    with pytest.raises(DataError, match="proposals file not found"):
        score_results(tmp_path / "none.json", voc, PROPOSAL_SCORING)
    results = _results(voc, tmp_path, classes=True)
    with pytest.raises(DataError, match="PRED_DIR is not a folder"):
        evaluate_boundary_maps(tmp_path / "none", voc)
    with pytest.raises(DataError, match=r"no <id>\.mat ground-truth files"):
        evaluate_boundary_maps(tmp_path, tmp_path)
    assert results.is_file()


def test_record_builders_match_the_ground_truth(voc):
    sample = MatInstances(voc)[0]
    target = proposal_target(sample.instance, 255)
    assert torch.equal(target.masks, instance_masks(sample.instance, 255))
    mapped = instance_map_target(sample.instance, sample.semantic, 255)
    masks, classes = instances_from_maps(sample.instance, sample.semantic, 255)
    assert torch.equal(torch.as_tensor(mapped.masks), torch.as_tensor(masks))
    assert torch.equal(torch.as_tensor(mapped.classes), torch.as_tensor(classes))
    assert torch.equal(mapped.void, sample.instance == 255)


@pytest.mark.parametrize("recipe", ["voc_proposals", "voc_instance"])
def test_the_rehearsal_scores_its_prediction_folder_through_the_library(voc, tmp_path, recipe):
    cfg = load_config(ExperimentConfig, resolve_config(recipe))
    cfg = override_config(cfg, [f"data.root={voc}"])
    pred = tmp_path / "pred"
    pred.mkdir()
    records = json.loads(_results(voc, tmp_path, classes=True).read_text())
    for image_id in {r["image_id"] for r in records}:
        mine = [r for r in records if r["image_id"] == image_id]
        (pred / f"{image_id}.json").write_text(json.dumps(mine))
    plan = get_task(cfg.task).rehearsal(cfg, "tiny")
    evaluation = plan.evaluator(cfg, pred, False)
    scoring = PROPOSAL_SCORING if recipe == "voc_proposals" else INSTANCE_SCORING
    assert evaluation.command.startswith(f"pixelgroup {scoring.command} ")
    expected = score_results(
        tmp_path / "results.json", voc, scoring, cfg.data.eval_split, progress=False
    )
    assert evaluation.run() == pytest.approx(expected, nan_ok=True)
