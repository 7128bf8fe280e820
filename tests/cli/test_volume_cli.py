"""The volume task from the command line: train / eval / predict / demo on tiny toy volumes and
TIFF stacks, exact resume, one-line errors for bad input."""

import numpy as np
import pytest
import tifffile
import torch
import yaml

from pixelgroup.cli import main
from pixelgroup.config import ExperimentConfig, from_dict, load_config, resolve_config
from pixelgroup.data.sample import InstanceSample
from pixelgroup.data.synthetic_volumes import ToyVolumes
from pixelgroup.engine import load_checkpoint, train
from tests._cli import one_line_error
from tests._tiny import crash_after_first_checkpoint

TINY3D = {
    "task": "volume",
    "data": {
        "name": "toy3d",
        "options": {"shape": [6, 24, 24], "count": 4, "length": 8, "eval_length": 2},
        "batch_size": 2,
        "eval_split": "test",
    },
    "model": {
        "name": "volume",
        "options": {
            "width": 4,
            "num_blocks": 1,
            "embedding_dim": 8,
            "spatial_scale": 3.0,
            "voxel_size": [2.0, 1.0, 1.0],
        },
    },
    "loss": {"num_iters": 1, "loop_stride": 4, "max_samples": 200},
    "train": {"epochs": 2, "iters_per_epoch": 2},
    "grouping": {"num_iters": 2, "stride": 2, "min_area": 4, "background": "semantic"},
}


@pytest.fixture(scope="module")
def run3d(tmp_path_factory):
    root = tmp_path_factory.mktemp("vol")
    config = root / "tiny3d.yaml"
    config.write_text(yaml.safe_dump(TINY3D))
    assert main(["train", "--config", str(config), "-o", str(root / "run"), "--quiet"]) == 0
    return root


def test_the_shipped_toy3d_config_loads():
    cfg = load_config(ExperimentConfig, resolve_config("toy3d"))
    assert cfg.task == "volume" and cfg.model.name == "volume"


def test_train_eval_predict_on_tiny_volumes(run3d, tmp_path, capsys):
    ckpt = run3d / "run" / "checkpoint.pt"
    metrics = tmp_path / "m.json"
    assert main(["eval", "--checkpoint", str(ckpt), "-o", str(metrics), "--quiet"]) == 0
    assert "acc50" in metrics.read_text() and "f1_50" in metrics.read_text()
    volume = ToyVolumes("test", 1, shape=(5, 20, 28))[0]
    stack = (volume.image[0].numpy() * 4000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    out = tmp_path / "pred"
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(ckpt),
                str(tmp_path / "stack.tif"),
                "-o",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    labels = tifffile.imread(out / "stack_labels.tif")
    assert labels.shape == (5, 20, 28) and labels.dtype == np.uint16
    assert (out / "stack_slices.png").stat().st_size > 0
    capsys.readouterr()
    again = ["predict", "--checkpoint", str(ckpt), str(tmp_path / "stack.tif"), "-o", str(out)]
    assert main([*again, "--quiet"]) == 2
    one_line_error(capsys, "stack_labels.tif exists", "--overwrite")
    assert main([*again, "--quiet", "--overwrite"]) == 0
    # the task says a stack is seen whole (Task.tiles_images): a tile option changes nothing
    assert main([*again, "--quiet", "--overwrite", "--tile", "16", "--halo", "16"]) == 0
    assert np.array_equal(tifffile.imread(out / "stack_labels.tif"), labels)
    tiled = tmp_path / "m16.json"
    assert (
        main(["eval", "--checkpoint", str(ckpt), "-o", str(tiled), "--quiet", "--tile", "16"]) == 0
    )
    assert tiled.read_text() == metrics.read_text()
    capsys.readouterr()
    # a 2-D image to the 3-D model: one line, exit 2
    tifffile.imwrite(tmp_path / "plane.tif", stack[0])
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(ckpt),
                str(tmp_path / "plane.tif"),
                "-o",
                str(tmp_path / "p2"),
                "--quiet",
            ]
        )
        == 2
    )
    one_line_error(capsys, "plane.tif", "not a volume")


def test_a_volume_given_to_a_2d_model_is_one_line(tmp_path, capsys):
    from tests._tiny import tiny_config

    run = train(
        tiny_config(train={"epochs": 1, "iters_per_epoch": 1}), tmp_path / "r", progress=False
    )
    tifffile.imwrite(
        tmp_path / "stack.tif",
        np.zeros((5, 16, 16), np.uint16),
        imagej=True,
        metadata={"axes": "ZYX"},
    )
    args = [
        "predict",
        "--checkpoint",
        str(run.checkpoint),
        str(tmp_path / "stack.tif"),
        "-o",
        str(tmp_path / "o"),
    ]
    assert main([*args, "--quiet"]) == 2
    one_line_error(capsys, "stack.tif")


def test_resume_of_a_volume_run_is_exact(tmp_path, monkeypatch):
    cfg = from_dict(ExperimentConfig, TINY3D)
    straight = train(cfg, tmp_path / "a", progress=False)
    crash_after_first_checkpoint(cfg, tmp_path / "b", monkeypatch)
    resumed = train(None, tmp_path / "b", resume=True, progress=False)
    a, b = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a["history"] == b["history"] and "center" in a["history"][0]


def _folder(root, shape=(4, 16, 16), mask_shape=None, empty=False):
    for split in ("train", "test"):
        for sub in ("images", "masks"):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        sample = ToyVolumes("train", 1, shape=shape, count=3)[0]
        image = (sample.image[0].numpy() * 3000).astype(np.uint16)
        mask = sample.instance.numpy().astype(np.uint16)
        if mask_shape is not None:
            mask = np.zeros(mask_shape, np.uint16)
            mask[0, 0, 0] = 1
        if empty:
            mask[:] = 0
        tifffile.imwrite(
            root / split / "images" / "a.tif",
            image,
            imagej=True,
            resolution=(1.0, 1.0),
            metadata={"axes": "ZYX", "spacing": 2.0},
        )
        tifffile.imwrite(
            root / split / "masks" / "a.tif", mask, imagej=True, metadata={"axes": "ZYX"}
        )
    return root


def _folder_config(root, tmp_path):
    cfg = dict(TINY3D)
    cfg["data"] = {
        "name": "volume_folder",
        "root": str(root),
        "options": {"augment": True, "crop": [4, 12, 12], "voxel_size": [2.0, 1.0, 1.0]},
        "batch_size": 2,
        "eval_split": "test",
    }
    path = tmp_path / "folder.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_tiff_folder_trains_with_seeded_crops_and_evaluates(tmp_path):
    root = _folder(tmp_path / "data")
    config = _folder_config(root, tmp_path)
    assert main(["train", "--config", str(config), "-o", str(tmp_path / "run"), "--quiet"]) == 0
    assert main(["eval", "--checkpoint", str(tmp_path / "run" / "checkpoint.pt"), "--quiet"]) == 0
    from pixelgroup.tasks.volume import VolumeTask

    cfg = load_config(ExperimentConfig, config)
    dataset = VolumeTask().build_dataset(cfg, "train")
    first = [dataset[i].image for i in range(3)]
    assert first[0].shape == (1, 4, 12, 12)
    dataset.set_epoch(1)
    assert not torch.equal(dataset[0].image, first[0])
    dataset.set_epoch(0)
    assert all(torch.equal(dataset[i].image, first[i]) for i in range(3))


def test_volume_augmentation_takes_gamma_and_refuses_a_zoom(tmp_path, capsys):
    """``data.options.gamma`` reaches the volumes' intensity change (0: no gamma, contrast,
    brightness or noise is still drawn); ``data.options.scale``, a 2-D zoom volumes do not
    have, is refused rather than ignored."""
    from pixelgroup.data.volume_folder import VolumeAugment
    from pixelgroup.tasks.volume import VolumeTask

    root = _folder(tmp_path / "data")
    config = _folder_config(root, tmp_path)
    cfg = load_config(ExperimentConfig, config)
    cfg.data.options["gamma"] = 0.05
    dataset = VolumeTask().build_dataset(cfg, "train")
    assert isinstance(dataset.augment, VolumeAugment) and dataset.augment.gamma == 0.05
    image = torch.full((1, 4, 12, 12), 0.5)
    sample = InstanceSample(image, torch.ones(4, 12, 12, dtype=torch.long), None)
    still = VolumeAugment((4, 12, 12), gamma=0.0)
    out = still(sample, torch.Generator().manual_seed(0))
    assert out.image.shape == (1, 4, 12, 12) and 0 <= out.image.min() <= out.image.max() <= 1
    assert not torch.equal(out.image, image)  # contrast, brightness and noise still drawn
    cfg_file = yaml.safe_load(config.read_text())
    cfg_file["data"]["options"]["scale"] = [0.5, 2.0]
    config.write_text(yaml.safe_dump(cfg_file))
    assert main(["train", "--config", str(config), "-o", str(tmp_path / "run"), "--quiet"]) == 2
    one_line_error(capsys, "data.options.scale", "volumes are not zoomed")


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [("shape", "label stack of shape (3, 16, 16)"), ("empty", "has no instance")],
)
def test_bad_label_stacks_are_one_line(tmp_path, capsys, kind, fragment):
    root = _folder(
        tmp_path / "data",
        mask_shape=(3, 16, 16) if kind == "shape" else None,
        empty=kind == "empty",
    )
    config = _folder_config(root, tmp_path)
    assert main(["train", "--config", str(config), "-o", str(tmp_path / "run"), "--quiet"]) == 2
    one_line_error(capsys, "a.tif", fragment)


def test_demo_on_a_volume_run_draws_orthogonal_slices(run3d, capsys):
    config, out = run3d / "tiny3d.yaml", run3d / "run"
    assert main(["demo", "--config", str(config), "-o", str(out), "--quiet"]) == 0
    assert "reusing the finished run" in capsys.readouterr().out
    for name in ("slices_0.png", "slices_1.png", "loss_curves.png"):
        assert (out / "figures" / name).stat().st_size > 0
