"""BSDS500 readers: release layout (synthetic), sample .mat files, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from pixelgroup.data.bsds import (
    BSDS500,
    BSDSMatFolder,
    load_boundary_ground_truth,
    open_boundary_dataset,
)


def _write_release(root, split="test", ids=("1", "2"), size=(12, 16), annotators=3):
    rng = np.random.default_rng(0)
    (root / "BSR/BSDS500/data/images" / split).mkdir(parents=True)
    (root / "BSR/BSDS500/data/groundTruth" / split).mkdir(parents=True)
    truths = {}
    for i in ids:
        rgb = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(root / "BSR/BSDS500/data/images" / split / f"{i}.jpg")
        bounds = [(rng.random(size) < 0.2).astype(np.uint8) for _ in range(annotators)]
        cell = np.empty((1, annotators), dtype=object)
        for k, b in enumerate(bounds):
            cell[0, k] = {"Segmentation": np.ones(size, np.uint16), "Boundaries": b}
        path = root / "BSR/BSDS500/data/groundTruth" / split / f"{i}.mat"
        scipy.io.savemat(path, {"groundTruth": cell})
        truths[i] = np.stack(bounds) != 0
    return truths


def test_release_layout_reads_every_annotator(tmp_path):
    truths = _write_release(tmp_path)
    for root in (tmp_path, tmp_path / "BSR", tmp_path / "BSR/BSDS500/data"):
        ds = BSDS500(root, "test")
        assert len(ds) == 2
    s = ds[1]
    assert s.image_id == "2"
    assert s.image.shape == (3, 12, 16) and s.image.dtype == torch.float32
    assert s.boundaries.shape == (3, 12, 16) and s.boundaries.dtype == torch.bool
    np.testing.assert_array_equal(s.boundaries.numpy(), truths["2"])
    np.testing.assert_allclose(s.consensus.numpy(), truths["2"].mean(0))
    assert isinstance(open_boundary_dataset(tmp_path, "test"), BSDS500)


def test_release_ground_truth_matches_pyedgeeval_loader(tmp_path):
    bsds = pytest.importorskip("pyEdgeEval.datasets.bsds", reason="pyEdgeEval not installed")
    _write_release(tmp_path, annotators=2)
    path = tmp_path / "BSR/BSDS500/data/groundTruth/test/1.mat"
    theirs = np.stack(bsds.load_bsds_gt_boundaries(str(path))) != 0
    np.testing.assert_array_equal(load_boundary_ground_truth(path), theirs)


def test_single_annotator_cell(tmp_path):
    cell = np.empty((1, 1), dtype=object)
    cell[0, 0] = {"Segmentation": np.ones((4, 5)), "Boundaries": np.eye(4, 5)}
    scipy.io.savemat(tmp_path / "a.mat", {"groundTruth": cell})
    gt = load_boundary_ground_truth(tmp_path / "a.mat")
    assert gt.shape == (1, 4, 5) and gt.sum() == 4


def test_samples(shared_data):
    ds = open_boundary_dataset(shared_data / "bsds")
    assert isinstance(ds, BSDSMatFolder) and len(ds) == 2
    s = ds[0]
    assert s.image_id == "104010"
    assert s.boundaries.shape[0] == 1 and s.boundaries.shape[1:] == s.image.shape[1:]
    assert sorted(s.image.shape[1:]) == [321, 481]
    assert 0.05 < float(s.boundaries.float().mean()) < 0.09  # 6-8 % boundary pixels
    jpg = np.asarray(Image.open(shared_data / "bsds" / "104010.jpg"))
    assert np.abs(s.image.numpy().transpose(1, 2, 0) * 255 - jpg).max() < 0.5


def test_layout_errors_name_the_missing_part(tmp_path):
    with pytest.raises(FileNotFoundError, match="BSDS500 root folder not found"):
        BSDS500(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no BSDS500 layout under"):
        BSDS500(tmp_path)
    _write_release(tmp_path, split="test")
    with pytest.raises(FileNotFoundError, match=r"BSDS500 folder missing: .*images/train"):
        BSDS500(tmp_path, "train")
    with pytest.raises(ValueError, match="split must be one of"):
        BSDS500(tmp_path, "tset")
    (tmp_path / "BSR/BSDS500/data/groundTruth/test/2.mat").unlink()
    with pytest.raises(FileNotFoundError, match=r"ground truth missing for 2.jpg"):
        BSDS500(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="ground-truth file not found"):
        load_boundary_ground_truth(tmp_path / "x.mat")
    with pytest.raises(FileNotFoundError, match="BSDS sample folder not found"):
        BSDSMatFolder(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no <id>.mat files"):
        BSDSMatFolder(tmp_path)


def test_bad_mat_contents(tmp_path):
    scipy.io.savemat(tmp_path / "w.mat", {"foo": np.zeros(3)})
    with pytest.raises(
        ValueError, match=r"expected a 'groundTruth' cell .* found variables \['foo'\]"
    ):
        load_boundary_ground_truth(tmp_path / "w.mat")
    (tmp_path / "junk.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(ValueError, match="cannot read .* as a MATLAB .mat file"):
        load_boundary_ground_truth(tmp_path / "junk.mat")
    (tmp_path / "junk.mat").unlink()
    (tmp_path / "w.mat").unlink()
    scipy.io.savemat(tmp_path / "s.mat", {"im": np.zeros((4, 5, 3), np.uint8), "GT": np.eye(5)})
    with pytest.raises(ValueError, match=r"ground truth is \(5, 5\) but the image is \(4, 5\)"):
        BSDSMatFolder(tmp_path)[0]
