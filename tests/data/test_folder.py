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


def _modes(tmp_path):
    """One 6 x 4 picture in every mode a user's folder may hold: (file, expected RGB)."""
    rgb = np.zeros((6, 4, 3), np.uint8)
    rgb[:3] = (200, 40, 10)
    rgb[3:] = (10, 90, 250)
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    files = {}
    for mode in ("L", "P", "LA", "RGBA", "1"):
        path = tmp_path / f"{mode}.png"
        Image.fromarray(rgb).convert(mode).save(path)
        files[path] = np.asarray(Image.open(path).convert("RGB"))
    wide = tmp_path / "grey16.png"
    Image.fromarray(grey.astype(np.uint16) * 257).save(wide)
    files[wide] = np.repeat(grey[:, :, None], 3, axis=2)
    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(rgb).convert("CMYK").save(cmyk, quality=100)
    files[cmyk] = np.asarray(Image.open(cmyk).convert("RGB"))
    gif = tmp_path / "anim.gif"
    frames = [Image.fromarray(rgb), Image.fromarray(255 - rgb)]
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    files[gif] = np.asarray(Image.open(gif).convert("RGB"))
    return files


def test_images_of_any_mode_are_read_as_rgb(tmp_path, caplog):
    for path, expected in _modes(tmp_path).items():
        image = read_image(path, normalize="fixed")
        assert image.shape == (3, 6, 4) and image.dtype == torch.float32, path.name
        assert np.allclose(image.permute(1, 2, 0).numpy() * 255, expected, atol=1.01), path.name
    assert "converted to RGB" in caplog.text


def test_exif_orientation_is_applied(tmp_path):
    rgb = np.zeros((6, 4, 3), np.uint8)
    rgb[0, 0] = 255
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored as 6 x 4, shown rotated 90 degrees clockwise: 4 x 6
    Image.fromarray(rgb).save(path, exif=exif, quality=100)
    from pixelgroup.data.io import image_size

    assert read_image(path).shape == (3, 4, 6) and image_size(path) == (4, 6)


def test_folder_checks_every_mask_when_opened_and_resizes(tmp_path):
    for split, sizes in (("train", [(20, 30), (24, 16)]), ("val", [(20, 30), (21, 30)])):
        for i, (h, w) in enumerate(sizes):
            (tmp_path / split / "images").mkdir(parents=True, exist_ok=True)
            (tmp_path / split / "masks").mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.zeros((h, w), np.uint8)).save(
                tmp_path / split / "images" / f"{i}.png"
            )
            mh = h if split == "train" or i == 0 else h - 1
            Image.fromarray(np.ones((mh, w), np.uint8)).save(
                tmp_path / split / "masks" / f"{i}.png"
            )
    ds = ImageMaskFolder(tmp_path, "train", size=(16, 16))
    assert [ds[i].image.shape for i in range(2)] == [(3, 16, 16)] * 2
    with pytest.raises(ValueError, match=r"masks/1.png: mask size \(20, 30\) != image size"):
        ImageMaskFolder(tmp_path, "val")  # found when opened, not when the sample is loaded
