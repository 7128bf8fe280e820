"""Images read window by window (data/arrays.py, data/lazy_image.py) equal the eager read
(data/io.py::read_image); broken files and zarr stores that are not images are one-line errors;
PNGs beyond PIL's limit too."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
import zarr
from PIL import Image

from pixelgroup.data import lazy_image
from pixelgroup.data.arrays import open_array
from pixelgroup.data.io import image_size, read_image
from pixelgroup.data.lazy_image import LazyImage
from pixelgroup.errors import DataError
from pixelgroup.postprocess.tiles import Box, plan_tiles

BOX = Box(10, 20, 77, 101)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """One 16-bit 3-channel image (100 x 130) as a tiled TIFF, an uncompressed big-endian
    (C, H, W) TIFF in one strip (read through a memory map), a pyramidal OME-TIFF (level 1
    half size), an OME-Zarr (t, c, y, x; two levels) and a plain zarr array (C, H, W)."""
    root = tmp_path_factory.mktemp("stored")
    values = (np.random.default_rng(0).random((100, 130, 3)) * 4000).astype(np.uint16)
    tifffile.imwrite(root / "tiled.tif", values, tile=(32, 32), photometric="rgb")
    planes = values.transpose(2, 0, 1)
    tifffile.imwrite(root / "contiguous.tif", planes, byteorder=">", photometric="minisblack")
    with tifffile.TiffWriter(root / "pyramid.ome.tif", bigtiff=True) as w:
        w.write(values, tile=(32, 32), subifds=1, photometric="rgb", metadata={"axes": "YXS"})
        w.write(values[::2, ::2], tile=(32, 32), subfiletype=1, photometric="rgb")
    group = zarr.open_group(root / "image.ome.zarr", mode="w")
    for level, step in (("0", 1), ("1", 2)):
        part = values[::step, ::step].transpose(2, 0, 1)[None]
        group.create_array(level, shape=part.shape, chunks=(1, 1, 32, 32), dtype="uint16")[:] = part
    group.attrs["multiscales"] = [
        {
            "axes": [{"name": n} for n in ("t", "c", "y", "x")],
            "datasets": [{"path": "0"}, {"path": "1"}],
        }
    ]
    plain = zarr.open_array(root / "plain.zarr", mode="w", shape=(3, 100, 130), chunks=(1, 40, 40))
    plain[:] = values.transpose(2, 0, 1)
    return root, values


@pytest.mark.parametrize(
    "name", ["tiled.tif", "contiguous.tif", "pyramid.ome.tif", "image.ome.zarr", "plain.zarr"]
)
@pytest.mark.parametrize(("channels", "select"), [(3, None), (1, None), (3, [2, 0]), (1, [1])])
def test_windows_equal_the_whole_image_read_at_once(stored, name, channels, select):
    root, values = stored
    whole = read_image(root / "tiled.tif", channels, "auto", select)
    image = LazyImage(root / name, channels, "auto", select)
    assert image.size == (100, 130) == image_size(root / name)
    for t in plan_tiles(image.size, tile=48, halo=16):
        rows, cols = t.window.slices()
        assert torch.equal(image.read(t.window), whole[:, rows, cols])
    assert torch.equal(read_image(root / name, channels, "auto", select), whole)
    raw = open_array(root / name)
    assert np.array_equal(raw.read(slice(2, 50, 3), slice(3, 90, 4)), values[2:50:3, 3:90:4])
    assert type(raw._array).__name__ == ("_Mapped" if name == "contiguous.tif" else "Array")


def test_a_larger_image_is_normalised_by_a_strided_sample(stored, monkeypatch):
    root, values = stored
    monkeypatch.setattr(lazy_image, "SAMPLE_PIXELS", 1500)  # 13,000 px: stride 3
    image = LazyImage(root / "tiled.tif")
    sample = values[::3, ::3].astype(np.float32)
    expected = np.percentile(sample, (1.0, 99.8), axis=(0, 1))
    np.testing.assert_allclose(image.value_range, expected, rtol=1e-6)
    window = image.read(BOX)
    lo, hi = expected
    raw = values[10:77, 20:101].astype(np.float32)
    np.testing.assert_allclose(
        window.permute(1, 2, 0).numpy(), np.clip((raw - lo) / (hi - lo), 0, 1), atol=1e-6
    )


def test_8_bit_images_need_no_statistics(tmp_path):
    values = np.random.default_rng(1).integers(0, 256, (40, 50), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "a.tif", values)
    image = LazyImage(tmp_path / "a.tif", 1)
    assert image.value_range is None
    assert torch.equal(image.read(Box(0, 0, 40, 50))[0], torch.from_numpy(values / 255).float())


def test_a_truncated_tiff_is_a_one_line_error(stored, tmp_path):
    root, _ = stored
    data = (root / "tiled.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(DataError, match="junk.tif: not a readable TIFF file"):
        LazyImage(tmp_path / "junk.tif")
    with pytest.raises(DataError, match=r"cut.tif.*(unreadable|not a readable TIFF)"):
        image = LazyImage(tmp_path / "cut.tif")
        for t in plan_tiles(image.size, tile=48, halo=0):
            image.read(t.window)


def test_a_zarr_that_is_not_an_image_is_a_one_line_error(tmp_path):
    zarr.open_group(tmp_path / "empty.zarr", mode="w")
    with pytest.raises(DataError, match="empty.zarr: a zarr group without arrays"):
        LazyImage(tmp_path / "empty.zarr")
    zarr.open_array(tmp_path / "line.zarr", mode="w", shape=(7,), dtype="uint8")
    with pytest.raises(DataError, match="line.zarr: expected a 2-D image"):
        LazyImage(tmp_path / "line.zarr")
    zarr.open_array(tmp_path / "stack.zarr", mode="w", shape=(4, 5, 6, 7), dtype="uint8")
    with pytest.raises(DataError, match="stack.zarr: expected a 2-D image"):
        LazyImage(tmp_path / "stack.zarr")
    zarr.open_array(tmp_path / "flags.zarr", mode="w", shape=(8, 8), dtype="bool")
    with pytest.raises(DataError, match="flags.zarr: images must hold integer or float"):
        LazyImage(tmp_path / "flags.zarr")
    (tmp_path / "folder").mkdir()
    with pytest.raises(DataError, match="folder: not a zarr array or group"):
        LazyImage(tmp_path / "folder")


def test_a_missing_channel_is_named(stored):
    root, _ = stored
    with pytest.raises(DataError, match="has 3 channel.*asks for 5"):
        LazyImage(root / "image.ome.zarr", 3, "auto", [5])


def test_a_png_beyond_pils_limit_is_a_one_line_error(tmp_path, monkeypatch):
    Image.new("L", (64, 64)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 4,096 px > 2 x 100
    for read in (read_image, image_size):
        with pytest.raises(DataError, match="big.png: larger than PIL reads.*tiled TIFF"):
            read(tmp_path / "big.png")
