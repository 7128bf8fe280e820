"""VOC 2012, SBD and sample-.mat readers: the samples, synthetic layouts, errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from pixelgroup.data.transforms import ResizeSample
from pixelgroup.data.voc import (
    MatInstances,
    SBDInstances,
    VOCInstances,
    instance_masks,
    open_instance_dataset,
)

# instances per sample, as annotated in the original release (gtMat.instMap)
SAMPLE_INSTANCES = {"2008_000215": 3, "2008_000234": 3, "2008_000359": 2, "2008_002240": 4}


def test_samples_have_the_annotated_instances(shared_data):
    ds = open_instance_dataset(shared_data / "voc")
    assert isinstance(ds, MatInstances)
    assert ds.image_ids == sorted(SAMPLE_INSTANCES)
    for image_id, sample in zip(ds.image_ids, ds, strict=True):
        raw = scipy.io.loadmat(shared_data / "voc" / f"{image_id}.mat")
        masks = instance_masks(sample.instance)
        assert len(masks) == SAMPLE_INSTANCES[image_id]
        assert sample.image.dtype == torch.float32 and sample.image.shape[0] == 3
        assert 0 <= sample.image.min() and sample.image.max() <= 1
        assert sample.instance.shape == sample.image.shape[1:] == sample.semantic.shape
        assert masks.shape == (len(masks), *sample.image.shape[1:])
        inst = raw["gtMat"]["instMap"][0, 0]
        assert [int(m.sum()) for m in masks] == [
            int((inst == i).sum()) for i in range(1, 1 + len(masks))
        ]


def _image(h=6, w=8):
    return (np.arange(h * w * 3) % 251).astype(np.uint8).reshape(h, w, 3)


def _instances():
    inst = np.zeros((6, 8), np.uint8)
    inst[1:3, 1:3] = 1
    inst[3:5, 4:7] = 2
    inst[0, :] = 255  # a void border
    return inst


def _voc_root(tmp_path):
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "SegmentationObject", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / d).mkdir(parents=True)
    inst = _instances()
    cls = np.where(inst == 1, 15, np.where(inst == 2, 7, inst)).astype(np.uint8)
    Image.fromarray(_image()).save(voc / "JPEGImages" / "a.jpg")
    for folder, labels in (("SegmentationObject", inst), ("SegmentationClass", cls)):
        png = Image.fromarray(labels, mode="L").convert("P")
        png.save(voc / folder / "a.png")
    (voc / "ImageSets/Segmentation/val.txt").write_text("a\n")
    return tmp_path


def test_voc_layout(tmp_path):
    root = _voc_root(tmp_path)
    for r in (root, root / "VOCdevkit", root / "VOCdevkit" / "VOC2012"):
        ds = open_instance_dataset(r, "val", ignore_index=-1)
        assert isinstance(ds, VOCInstances) and len(ds) == 1
    sample = ds[0]
    assert ds.image_ids == ["a"] and len(instance_masks(sample.instance, -1)) == 2
    assert int((sample.instance == -1).sum()) == 8
    assert (sample.instance[0] == -1).all() and (sample.semantic[0] == -1).all()
    assert sorted(sample.semantic.unique().tolist()) == [-1, 0, 7, 15]


def _sbd_root(tmp_path):
    root = tmp_path / "benchmark_RELEASE" / "dataset"
    for d in ("img", "inst", "cls"):
        (root / d).mkdir(parents=True)
    inst = _instances()
    inst[0, :] = 0  # SBD has no void
    Image.fromarray(_image()).save(root / "img" / "b.jpg")
    scipy.io.savemat(root / "inst" / "b.mat", {"GTinst": {"Segmentation": inst}})
    scipy.io.savemat(root / "cls" / "b.mat", {"GTcls": {"Segmentation": (inst > 0) * 3}})
    (root / "val.txt").write_text("b\n")
    return root


def test_sbd_layout(tmp_path):
    root = _sbd_root(tmp_path)
    for r in (root, root.parent):
        ds = open_instance_dataset(r)
        assert isinstance(ds, SBDInstances)
    sample = ds[0]
    assert ds.image_ids == ["b"] and len(instance_masks(sample.instance)) == 2
    assert not (sample.instance == 255).any()
    assert sorted(sample.semantic.unique().tolist()) == [0, 3]


def test_transform_applies(shared_data):
    ds = MatInstances(shared_data / "voc", transform=lambda s: s.image.shape)
    assert ds[0] == (3, 375, 500)


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset folder not found"):
        open_instance_dataset(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="is not a VOC 2012 root"):
        open_instance_dataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="no .mat annotation files"):
        MatInstances(tmp_path)
    root = _voc_root(tmp_path / "v")
    with pytest.raises(FileNotFoundError, match="split file not found: .*train.txt"):
        VOCInstances(root, "train")
    with pytest.raises(ValueError, match="split must be one of"):
        VOCInstances(root, "test")
    (root / "VOCdevkit/VOC2012/SegmentationObject/a.png").unlink()
    with pytest.raises(FileNotFoundError, match="image not found: .*SegmentationObject"):
        VOCInstances(root)[0]
    Image.fromarray(_image()).save(root / "VOCdevkit/VOC2012/SegmentationObject/a.png")
    with pytest.raises(ValueError, match="expected a single-channel label map"):
        VOCInstances(root)[0]
    with pytest.raises(FileNotFoundError, match="VOC 2012 folder not found"):
        VOCInstances(tmp_path / "nothing")
    sbd = _sbd_root(tmp_path / "s")
    with pytest.raises(FileNotFoundError, match="SBD split file not found"):
        SBDInstances(sbd, "train")
    scipy.io.savemat(sbd / "inst" / "b.mat", {"other": 1})
    with pytest.raises(ValueError, match="expected a struct 'GTinst'"):
        SBDInstances(sbd)[0]
    scipy.io.savemat(sbd / "inst" / "b.mat", {"GTinst": {"Segmentation": np.zeros((3, 3))}})
    with pytest.raises(ValueError, match="instance map is 3x3 but the image is 6x8"):
        SBDInstances(sbd)[0]
    (sbd / "inst" / "b.mat").write_bytes(b"not a mat file")
    with pytest.raises(ValueError, match="cannot read MATLAB file"):
        SBDInstances(sbd)[0]
    mats = tmp_path / "m"
    mats.mkdir()
    scipy.io.savemat(
        mats / "c.mat", {"gtMat": {"segMap": np.zeros((6, 8)), "instMap": np.zeros((6, 8))}}
    )
    with pytest.raises(FileNotFoundError, match="image not found: .*c.jpg"):
        open_instance_dataset(mats)[0]
    (mats / "c.jpg").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read image"):
        open_instance_dataset(mats)[0]


def test_instance_masks_skip_background_and_void():
    inst = torch.tensor([[0, 3, 3], [255, 1, 0]])
    masks = instance_masks(inst)
    assert masks.shape == (2, 2, 3)
    assert masks[0].nonzero().tolist() == [[1, 1]] and masks[1].sum() == 2
    assert instance_masks(torch.zeros(2, 2, dtype=torch.int64)).shape == (0, 2, 2)


def test_resize_sample_keeps_labels(shared_data):
    ds = MatInstances(shared_data / "voc", transform=ResizeSample((48, 64)))
    sample = ds[3]
    assert sample.image.shape == (3, 48, 64) and sample.instance.shape == (48, 64)
    assert 0 <= sample.image.min() and sample.image.max() <= 1
    assert sample.instance.dtype == torch.int64
    assert set(sample.instance.unique().tolist()) == {0, 1, 2, 3, 4}  # no blended ids
    assert set(sample.semantic.unique().tolist()) <= {0, 14}
    with pytest.raises(ValueError, match=r"size must be \(H, W\) with positive ints"):
        ResizeSample((0, 4))
