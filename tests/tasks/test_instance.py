import json

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from pixelgroup.data import IGNORE_LABEL, InstanceSample
from pixelgroup.data.coco import masks_to_results
from pixelgroup.models import EmbeddingOutput
from pixelgroup.tasks.instance import InstanceTaskEvaluator, instances_from_embedding
from pixelgroup.tasks.predictions import write_instance_prediction
from tests._tiny import tiny_config


def _planted(h=16, w=16):
    """Background (largest) plus two blobs with orthogonal unit directions."""
    emb = torch.zeros(3, h, w)
    emb[0] = 1.0
    emb[:, 2:6, 2:8] = torch.tensor([0.0, 1.0, 0.0])[:, None, None]
    emb[:, 9:14, 8:14] = torch.tensor([0.0, 0.0, 1.0])[:, None, None]
    gt = np.zeros((h, w), np.int64)
    gt[2:6, 2:8], gt[9:14, 8:14] = 1, 2
    return emb, gt


@pytest.mark.parametrize("stride", [1, 2])
def test_extract_instances_recovers_planted_groups(stride):
    emb, gt = _planted()
    cfg = tiny_config(grouping={"stride": stride, "min_area": 4, "num_iters": 3})
    labels, scores = instances_from_embedding(emb, cfg)
    assert labels.shape == (16, 16) and labels.dtype == torch.int64
    assert (labels == 0).sum() == (gt == 0).sum()  # background is the largest group
    gt_flat = torch.from_numpy(gt).flatten()
    pairs = {(int(a), int(b)) for a, b in zip(labels.flatten(), gt_flat, strict=True)}
    assert len(pairs) == 3 and len(scores) == 2


def test_task_evaluator_reports_the_matching_scores_beside_coco():
    # the planted blobs are found; the top 2 of blob 2's 5 rows are a crowd region in the gt:
    # left out of both maps, blob 2 matches with IoU 1 (18 / 30 = 0.6 if they counted)
    emb, gt = _planted()
    gt[9:11, 8:14] = IGNORE_LABEL
    cfg = tiny_config(grouping={"stride": 1, "min_area": 4, "num_iters": 3})
    ev = InstanceTaskEvaluator(cfg)
    ev.reset()
    batch = InstanceSample(
        image=torch.zeros(1, 3, 16, 16),
        instance=torch.from_numpy(gt)[None],
        semantic=torch.from_numpy((gt > 0).astype(np.int64))[None],
    )
    ev.process(EmbeddingOutput(embedding=emb[None], raw=emb[None], semantic=None), batch)
    out = ev.evaluate()
    assert out["acc50"] == out["acc95"] == out["acc50_95"] == out["f1_75"] == 1.0
    assert (out["tp50"], out["fp50"], out["fn50"]) == (2, 0, 0) and out["pq50"] == 1.0
    assert out["AP50"] == 1.0 and out["coco_AP50"] == 1.0  # the other evaluators still run


def test_bad_grouping_stride():
    emb, _ = _planted()
    with pytest.raises(ValueError, match="grouping.stride must be >= 1, got 0"):  # at load
        instances_from_embedding(emb, tiny_config(grouping={"stride": 0}))


def test_prediction_json_decodes_to_the_masks(tmp_path):
    labels = np.zeros((6, 7), np.int64)
    labels[1:3, 1:4], labels[4:, 5:] = 1, 3
    paths = write_instance_prediction(
        tmp_path,
        "img",
        torch.rand(3, 6, 7),
        torch.from_numpy(labels),
        torch.tensor([0.9, 0.5, 0.7]),
    )
    assert [p.name for p in paths] == ["img_labels.png", "img_overlay.png", "img.json"]
    results = json.loads(paths[2].read_text())
    assert [r["score"] for r in results] == pytest.approx([0.9, 0.7])  # label 2 is absent
    for r, k in zip(results, (1, 3), strict=True):
        assert r["image_id"] == "img" and r["category_id"] == 1
        rle = {"size": r["segmentation"]["size"], "counts": r["segmentation"]["counts"].encode()}
        assert np.array_equal(mask_utils.decode(rle).astype(bool), labels == k)
        assert r["area"] == int((labels == k).sum())
    assert results[0]["bbox"] == [1.0, 1.0, 3.0, 2.0]


def test_prediction_json_equals_whole_image_masks(tmp_path):
    # records from bounding-box crops equal those of each instance's whole-image mask: an
    # instance in two parts, one down to the last pixel, one in the first column; an id
    # without a score (4) is left out, as before
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, (9, 11))
    labels[:, 0], labels[-1, -1] = 2, 3
    scores = torch.tensor([0.2, 0.9, 0.4])
    paths = write_instance_prediction(
        tmp_path, "img", torch.rand(3, 9, 11), torch.from_numpy(labels), scores
    )
    expected = [
        masks_to_results("img", (labels == k)[None], scores[[k - 1]].numpy())[0] for k in (1, 2, 3)
    ]
    assert json.loads(paths[2].read_text()) == json.loads(json.dumps(expected))


def test_a_nan_score_is_refused(tmp_path):
    labels = torch.tensor([[0, 1], [2, 2]])
    with pytest.raises(ValueError, match="score must be finite"):
        write_instance_prediction(
            tmp_path, "img", torch.rand(3, 2, 2), labels, torch.tensor([float("nan"), 0.6])
        )
