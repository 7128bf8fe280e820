"""Reading and normalising images of every bit depth (8/12/16-bit, float, RGB16 TIFF) and
instance masks in PNG / TIFF; one-line errors for bad input."""

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from pixelgroup.data.io import normalize_intensity, read_image, read_label_map
from pixelgroup.errors import DataError


def _ramp(dtype, top, shape=(20, 50)):
    """A ramp 0..top of ``shape`` (1000 values) in ``dtype``."""
    return np.linspace(0, top, shape[0] * shape[1]).reshape(shape).astype(dtype)


@pytest.mark.parametrize(
    ("dtype", "top"), [(np.uint16, 235), (np.uint16, 4095), (np.uint16, 65535), (np.int32, 900)]
)
def test_wide_integers_are_percentile_normalised(tmp_path, dtype, top):
    raw = _ramp(dtype, top)
    tifffile.imwrite(tmp_path / "a.tif", raw)
    image = read_image(tmp_path / "a.tif")
    assert image.shape == (3, 20, 50) and image.dtype == torch.float32
    assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])  # grey x 3
    lo, hi = np.percentile(raw.astype(np.float32), (1, 99.8))
    expected = np.clip((raw.astype(np.float32) - lo) / (hi - lo), 0, 1)
    np.testing.assert_allclose(image[0].numpy(), expected, atol=1e-6)
    assert float(image.max()) == 1.0 and float(image.min()) == 0.0  # the whole range is used


def test_eight_bit_is_divided_by_255_and_fixed_mode_by_the_type_range(tmp_path):
    raw = _ramp(np.uint8, 200)
    Image.fromarray(raw).save(tmp_path / "a.png")
    np.testing.assert_allclose(read_image(tmp_path / "a.png")[0].numpy(), raw / 255, atol=1e-6)
    wide = _ramp(np.uint16, 4095)
    tifffile.imwrite(tmp_path / "b.tif", wide)
    fixed = read_image(tmp_path / "b.tif", normalize="fixed")[0].numpy()
    np.testing.assert_allclose(fixed, wide / 65535, atol=1e-6)


def test_float_tiff_is_not_clipped(tmp_path):
    raw = _ramp(np.float32, 1000.0)
    tifffile.imwrite(tmp_path / "f.tif", raw)
    image = read_image(tmp_path / "f.tif")[0].numpy()
    assert (image >= 1.0).mean() < 0.01 and (image <= 0.0).mean() < 0.02  # not 99 % at 1.0
    assert np.all(np.diff(image.ravel()) >= 0)  # the ramp's order is kept


def test_rgb16_tiff_keeps_its_16_bit_levels_per_channel(tmp_path):
    raw = np.stack([_ramp(np.uint16, 60000), _ramp(np.uint16, 3000), _ramp(np.uint16, 300)], 2)
    tifffile.imwrite(tmp_path / "rgb.tif", raw, photometric="rgb")
    image = read_image(tmp_path / "rgb.tif")
    assert image.shape == (3, 20, 50)
    assert len(torch.unique(image[2])) > 200  # 300 levels, not 16 (an 8-bit conversion)
    np.testing.assert_allclose(image[0].numpy(), image[2].numpy(), atol=5e-3)  # each by its own
    planar = raw.transpose(2, 0, 1).copy()  # (C, H, W) is recognised too
    tifffile.imwrite(tmp_path / "planar.tif", planar, photometric="rgb", planarconfig="separate")
    assert torch.allclose(read_image(tmp_path / "planar.tif"), image)


def test_two_channels_get_a_zero_third_and_many_channels_are_refused(tmp_path):
    two = np.stack([_ramp(np.uint16, 500, (50, 20))] * 2, 2)
    tifffile.imwrite(tmp_path / "two.tif", two)
    image = read_image(tmp_path / "two.tif")
    assert image.shape == (3, 50, 20) and float(image[2].abs().max()) == 0.0
    tifffile.imwrite(tmp_path / "six.tif", np.zeros((10, 12, 6), np.uint16))
    with pytest.raises(DataError, match="6 channels"):
        read_image(tmp_path / "six.tif")


def test_normalize_errors_are_one_line():
    with pytest.raises(ValueError, match="normalize must be one of auto, percentile, fixed"):
        normalize_intensity(np.zeros((2, 2, 1), np.uint8), "minmax")
    with pytest.raises(DataError, match="NaN or infinite"):
        normalize_intensity(np.full((2, 2, 1), np.nan, np.float32))
    flat = normalize_intensity(np.full((4, 4, 1), 7, np.uint16))
    assert float(flat.max()) == 0.0  # a flat image is 0, never NaN


def test_broken_tiff_is_a_data_error(tmp_path):
    (tmp_path / "bad.tif").write_bytes(b"II*\x00not a tiff")
    with pytest.raises(DataError, match="not a readable TIFF"):
        read_image(tmp_path / "bad.tif")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.int32])
def test_tiff_masks_of_every_integer_type(tmp_path, dtype):
    mask = np.zeros((6, 7), dtype)
    mask[1:3, 1:4], mask[4:, 5:] = 1, 300 if np.iinfo(dtype).max > 300 else 3
    tifffile.imwrite(tmp_path / "m.tif", mask)
    labels = read_label_map(tmp_path / "m.tif")
    assert labels.dtype == torch.int64 and torch.equal(
        labels, torch.from_numpy(mask.astype(np.int64))
    )


def test_float_masks_must_hold_whole_numbers(tmp_path):
    tifffile.imwrite(tmp_path / "ok.tif", np.array([[0, 1], [2, 2]], np.float32))
    assert read_label_map(tmp_path / "ok.tif").tolist() == [[0, 1], [2, 2]]
    tifffile.imwrite(tmp_path / "bad.tif", np.array([[0, 0.5]], np.float32))
    with pytest.raises(DataError, match="integer ids"):
        read_label_map(tmp_path / "bad.tif")


def test_channels_pick_stored_channels_of_a_multichannel_tiff(tmp_path):
    """A 5-channel 16-bit stack: ``select`` picks channels before normalisation; one channel is
    repeated to RGB, two get a zero third; an index the file lacks is a one-line DataError;
    the folder dataset and the instance task's predict-time reader apply
    ``data.options.channels`` alike."""
    from pixelgroup.config import ExperimentConfig, from_dict
    from pixelgroup.data import build_dataset
    from pixelgroup.tasks import get_task

    rng = np.random.default_rng(0)
    stack = (rng.random((5, 12, 16)) * 4000).astype(np.uint16)
    stack[2, :6] = 0  # channel 2: dark top half
    path = tmp_path / "root" / "train" / "images" / "a.tif"
    path.parent.mkdir(parents=True)
    tifffile.imwrite(path, stack)  # (C, H, W) with C <= 4 < W: read as (H, W, C)
    (tmp_path / "root" / "train" / "masks").mkdir()
    mask = np.zeros((12, 16), np.uint16)
    mask[2:5, 3:7] = 1
    tifffile.imwrite(tmp_path / "root" / "train" / "masks" / "a.tif", mask)
    one = read_image(path, select=[2])
    assert one.shape == (3, 12, 16) and torch.equal(one[0], one[2])
    assert float(one[:, :6].max()) == 0.0 and float(one.max()) == 1.0
    two = read_image(path, select=[2, 0])
    assert torch.equal(two[0], one[0]) and float(two[2].abs().max()) == 0.0
    with pytest.raises(DataError, match=r"a.tif: has 5 channel\(s\) \(0..4\), .* asks for 7"):
        read_image(path, select=[7])
    with pytest.raises(DataError, match=r"5 channels.*data.options.channels"):
        read_image(path)
    options = {"channels": [2, 0]}
    data = build_dataset("folder", str(tmp_path / "root"), "train", options)
    assert torch.equal(data[0].image, two)
    cfg = from_dict(
        ExperimentConfig,
        {
            "task": "instance",
            "data": {"name": "folder", "root": str(tmp_path / "root"), "options": options},
        },
    )
    assert torch.equal(get_task("instance").read_image(cfg, path), two)
