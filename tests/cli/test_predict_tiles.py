"""``pixelgroup predict --tile / --halo``: tiles by itself past a size, labels as the whole
image's, bad sizes an error (exit 2); labels past 65,535 ids as a 32-bit TIFF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from pixelgroup.cli import main
from pixelgroup.data.toy import ToyDigits
from pixelgroup.tasks.predictions import write_instance_prediction

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TOY = Path(__file__).resolve().parents[1] / "fixtures" / "toy_demo.pt"


def _canvas(path: Path) -> Path:
    image = (ToyDigits("val", 1)[0].image.permute(1, 2, 0).numpy() * 255).round()
    Image.fromarray(image.astype(np.uint8)).save(path)
    return path


def _labels(out: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(out / "canvas_labels.png")).astype(np.int64))


def test_tiled_prediction_equals_the_whole_image(tmp_path, capsys):
    image = _canvas(tmp_path / "canvas.png")
    args = ["predict", "--checkpoint", str(TOY), str(image), "--quiet"]
    assert main([*args, "-o", str(tmp_path / "whole"), "--tile", "0"]) == 0
    assert "in tiles" not in capsys.readouterr().out
    assert main([*args, "-o", str(tmp_path / "tiled"), "--tile", "32", "--halo", "32"]) == 0
    assert "1 in tiles" in capsys.readouterr().out
    assert torch.equal(_labels(tmp_path / "tiled"), _labels(tmp_path / "whole"))


def test_images_past_the_threshold_are_tiled_by_default(tmp_path, monkeypatch, capsys):
    """Past both the threshold and a tile's window (tile + 2 halo = 16 + 32 < 64 px)."""
    monkeypatch.setattr("pixelgroup.engine.inference.AUTO_TILE_ABOVE", 48)
    monkeypatch.setattr("pixelgroup.engine.inference.DEFAULT_TILE", 16)
    image = _canvas(tmp_path / "canvas.png")
    out = tmp_path / "out"
    args = ["predict", "--checkpoint", str(TOY), str(image), "-o", str(out), "--quiet"]
    assert main([*args, "--halo", "16"]) == 0
    assert "1 in tiles" in capsys.readouterr().out


def test_an_image_within_a_tiles_window_is_seen_whole_by_default(tmp_path, monkeypatch, capsys):
    """Past the threshold but within a tile's window (16 + 2 x 64 px, the toy network's halo):
    one window would hold the whole image, tiles would only repeat the model's work."""
    monkeypatch.setattr("pixelgroup.engine.inference.AUTO_TILE_ABOVE", 48)
    monkeypatch.setattr("pixelgroup.engine.inference.DEFAULT_TILE", 16)
    image = _canvas(tmp_path / "canvas.png")
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(TOY), str(image), "-o", str(out), "--quiet"]) == 0
    assert "in tiles" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("option", "match"),
    [
        (["--tile", "40"], "--tile / --halo: tile must be a multiple of 16"),
        (["--tile", "-16"], "--tile / --halo: tile must be"),
        (["--halo", "0"], "halo must be a multiple of 16 pixels >= 16, got 0"),
        (["--halo", "20"], "halo must be"),
    ],
)
def test_bad_tile_sizes_exit_2(option, match, tmp_path, capsys):
    image = _canvas(tmp_path / "canvas.png")
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(TOY), str(image), "-o", str(out), *option]) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_more_than_65535_instances_are_written_as_a_32_bit_tiff(tmp_path):
    labels = torch.zeros(8, 8, dtype=torch.int64)
    labels[:2, :2], labels[4:, 4:] = 3, 70_000
    paths = write_instance_prediction(
        tmp_path, "big", torch.rand(3, 8, 8), labels, torch.full((70_000,), 0.5)
    )
    assert paths[0] == tmp_path / "big_labels.tif"
    stored = tifffile.imread(paths[0])
    assert stored.dtype == np.uint32 and np.array_equal(stored, labels.numpy())
    paths = write_instance_prediction(
        tmp_path, "small", torch.rand(3, 8, 8), labels.clamp(max=9), torch.full((9,), 0.5)
    )
    assert paths[0].name == "small_labels.png"
