import numpy as np
import pytest
import torch
from PIL import Image

from pixelgroup.data import ImageMaskFolder
from pixelgroup.data.io import read_image, read_label_map, write_png


def _write_split(root, split="train", n=2, size=(12, 10)):
    rng = np.random.default_rng(0)
    (root / split / "images").mkdir(parents=True)
    (root / split / "masks").mkdir(parents=True)
    for i in range(n):
        rgb = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        mask = rng.integers(0, 4, size, dtype=np.uint8)
        Image.fromarray(rgb).save(root / split / "images" / f"im{i}.png")
        Image.fromarray(mask).save(root / split / "masks" / f"im{i}.png")
    return rgb, mask


def test_reads_pairs(tmp_path):
    rgb, mask = _write_split(tmp_path)
    ds = ImageMaskFolder(tmp_path, "train")
    assert len(ds) == 2
    s = ds[1]
    assert s.image.shape == (3, 12, 10) and s.image.dtype == torch.float32
    np.testing.assert_allclose(s.image.permute(1, 2, 0).numpy(), rgb / 255.0, atol=1e-6)
    assert torch.equal(s.instance, torch.from_numpy(mask.astype(np.int64)))
    assert torch.equal(s.semantic, (s.instance > 0).long())


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="expected ROOT/val/images"):
        ImageMaskFolder(tmp_path, "val")


def test_missing_mask(tmp_path):
    _write_split(tmp_path)
    (tmp_path / "train" / "masks" / "im0.png").unlink()
    with pytest.raises(FileNotFoundError, match="have no mask.*im0.png"):
        ImageMaskFolder(tmp_path, "train")


def test_empty_folder(tmp_path):
    (tmp_path / "train" / "images").mkdir(parents=True)
    (tmp_path / "train" / "masks").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images"):
        ImageMaskFolder(tmp_path)


def test_mask_size_mismatch(tmp_path):
    _write_split(tmp_path)
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "train" / "masks" / "im0.png")
    with pytest.raises(ValueError, match="mask size"):
        ImageMaskFolder(tmp_path)[0]


def test_read_image_errors(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(ValueError, match="cannot read image"):
        read_image(bad)
    with pytest.raises(FileNotFoundError, match="image not found"):
        read_image(tmp_path / "none.png")
    gray = tmp_path / "gray.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(gray)
    with pytest.raises(ValueError, match="expected an image with 3 channels, got 1"):
        read_image(gray)
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(rgb)
    with pytest.raises(ValueError, match="single-channel label map"):
        read_label_map(rgb)


def test_write_png_atomic_roundtrip(tmp_path):
    labels = np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000
    write_png(labels, tmp_path / "l.png")
    assert torch.equal(
        read_label_map(tmp_path / "l.png"), torch.from_numpy(labels.astype(np.int64))
    )
    assert [p.name for p in tmp_path.iterdir()] == ["l.png"]
