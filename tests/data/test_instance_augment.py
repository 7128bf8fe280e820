"""Own data's augmentation: joint geometry, determinism by (seed, epoch, item), exact resume,
the folder dataset with TIFF masks and synthetic microscopy."""

import numpy as np
import pytest
import tifffile
import torch

from pixelgroup.config import ExperimentConfig, from_dict
from pixelgroup.data import AugmentedDataset, ImageMaskFolder, InstanceAugment, augmented
from pixelgroup.data.io import read_label_map
from pixelgroup.data.sample import InstanceSample
from pixelgroup.data.synthetic_cells import draw_cells, write_cells_folder
from pixelgroup.data.transforms import AugmentOptions
from pixelgroup.engine import load_checkpoint, train
from pixelgroup.errors import ConfigError
from pixelgroup.models import build_model
from pixelgroup.tasks import get_task
from tests._tiny import crash_after_first_checkpoint


def _sample(h=40, w=56):
    """Image whose channel 0 encodes the instance id, so geometry can be checked."""
    instance = torch.zeros(h, w, dtype=torch.int64)
    instance[5:15, 5:20], instance[20:35, 30:50] = 1, 2
    image = torch.stack([instance / 2.0, torch.rand(h, w), torch.rand(h, w)]).float()
    return InstanceSample(image, instance, (instance > 0).long())


def test_geometry_is_joint_and_intensity_stays_in_range():
    aug = InstanceAugment((32, 32), scale=(1.0, 1.0), gamma=0, contrast=0, brightness=0, noise=0)
    for seed in range(10):
        out = aug(_sample(), torch.Generator().manual_seed(seed))
        assert out.image.shape == (3, 32, 32) and out.instance.shape == (32, 32)
        # channel 0 still equals instance / 2 after the crop, flips and rotations
        assert torch.equal(out.image[0] * 2, out.instance.float())
        assert torch.equal(out.semantic, (out.instance > 0).long())
    noisy = InstanceAugment((24, 24))(_sample(), torch.Generator().manual_seed(1))
    assert 0.0 <= float(noisy.image.min()) and float(noisy.image.max()) <= 1.0


def test_small_images_are_padded_with_background_not_squashed():
    out = InstanceAugment((64, 64), scale=(1.0, 1.0))(_sample(20, 30), torch.Generator())
    assert out.image.shape == (3, 64, 64)
    assert int((out.instance > 0).sum()) == int((_sample(20, 30).instance > 0).sum())


def test_draws_depend_on_seed_epoch_and_item_only():
    base = [_sample(), _sample(50, 40)]
    data = AugmentedDataset(base, InstanceAugment((24, 24)), seed=3, length=6)
    assert len(data) == 6
    first = [data[i].image for i in range(6)]
    again = [data[i].image for i in reversed(range(6))][::-1]  # any order: same draws
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], first[2])  # a repeat of image 0 is its own draw
    data.set_epoch(1)
    assert not torch.equal(data[0].image, first[0])
    with pytest.raises(IndexError):
        data[6]


def test_augmented_needs_a_crop():
    with pytest.raises(ConfigError, match=r"data.options.crop: \[H, W\]"):
        augmented([_sample()], AugmentOptions(augment=True), seed=0, length=4)
    with pytest.raises(ConfigError, match="data.options.scale"):
        augmented([_sample()], AugmentOptions(True, (8, 8), (2.0, 1.0)), seed=0, length=4)


def test_synthetic_cells_are_touching_nuclei_in_a_low_16_bit_range(tmp_path):
    cells = draw_cells(np.random.default_rng(0), (128, 128), count=20, max_value=235)
    assert cells.image.dtype == np.uint16 and int(cells.image.max()) == 235
    ids = np.unique(cells.instance)
    assert ids[0] == 0 and np.array_equal(ids[1:], np.arange(1, len(ids)))  # 1..K, no gaps
    assert len(ids) - 1 >= 10
    # touching: some pixel of one nucleus has a 4-neighbour of another
    a, b = cells.instance[:, :-1], cells.instance[:, 1:]
    assert np.any((a > 0) & (b > 0) & (a != b))
    root = write_cells_folder(tmp_path, splits={"train": 2}, size=(64, 64), max_value=4095)
    data = ImageMaskFolder(root, "train")
    assert len(data) == 2 and data[0].image.shape == (3, 64, 64)
    assert float(data[0].image.max()) == 1.0  # 12-bit values percentile-normalised
    stored = tifffile.imread(root / "train" / "masks" / "cells_000.tif")
    assert torch.equal(data[0].instance, torch.from_numpy(stored.astype(np.int64)))


def _cells_config(root, **train):
    cfg = {
        "task": "instance",
        "data": {
            "name": "folder",
            "root": str(root),
            "options": {"augment": True, "crop": [32, 32]},
            "batch_size": 2,
        },
        "model": {
            "name": "unet",
            "options": {"width": 4, "depth": 2, "embedding_dim": 4, "num_classes": 2},
        },
        "loss": {"num_iters": 1, "max_samples": 100, "loop_stride": 2},
        "train": {"epochs": 2, "iters_per_epoch": 2, **train},
        "grouping": {"background": "semantic", "min_area": 4},
    }
    return from_dict(ExperimentConfig, cfg)


def test_training_on_two_images_resumes_exactly(tmp_path, monkeypatch):
    root = write_cells_folder(
        tmp_path / "cells", splits={"train": 2, "test": 1}, size=(48, 40), count=6
    )
    cfg = _cells_config(root)
    dataset = get_task("instance").build_dataset(cfg, "train")
    assert isinstance(dataset, AugmentedDataset) and len(dataset) == 4  # batch 2 x 2 steps
    straight = train(cfg, tmp_path / "a", progress=False)
    crash_after_first_checkpoint(cfg, tmp_path / "b", monkeypatch)
    resumed = train(None, tmp_path / "b", resume=True, progress=False)
    a, b = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a["history"] == b["history"] and len(a["history"]) == 4
    held_out = get_task("instance").build_dataset(cfg, "test")  # never augmented
    assert isinstance(held_out, ImageMaskFolder) and held_out[0].image.shape == (3, 48, 40)


def test_auto_values_are_chosen_from_the_training_objects_and_stored(tmp_path, monkeypatch):
    """``spatial_scale: auto`` and ``min_area: auto`` become 3/8 of the objects' median
    diameter and a quarter of the 10th-percentile object's area, ``data.options.scale: auto``
    the zoom that shows the median object at 3/8 of the crop, in the checkpoint's config; the
    same ``auto`` config resumes the run; eval cannot take ``auto``."""
    import dataclasses

    from pixelgroup.data.object_sizes import FITTED_KERNEL_FRACTION as K
    from pixelgroup.data.object_sizes import fitted_scale, object_sizes

    root = write_cells_folder(tmp_path / "cells", splits={"train": 2}, size=(48, 40), count=6)
    cfg = _cells_config(root)
    options = {**cfg.model.options, "embedding": "spatial", "spatial_scale": "auto"}
    cfg = dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, options=options),
        grouping=dataclasses.replace(cfg.grouping, min_area="auto"),
    )
    task = get_task("instance")
    raw = ImageMaskFolder(root, "train")
    sizes = object_sizes(raw[i].instance for i in range(len(raw)))
    fitted = task.fit_config(cfg)
    assert fitted.model.options["spatial_scale"] == max(1.0, round(sizes.median * K, 1))
    assert fitted.grouping.min_area == max(1, round(np.pi * sizes.low**2 / 16))
    assert task.fit_config(fitted) == fitted  # numbers stay as given
    half = dataclasses.replace(  # trained at about half scale: the kernel for half-size objects
        cfg, data=dataclasses.replace(cfg.data, options={**cfg.data.options, "scale": [0.4, 0.6]})
    )
    fitted_half = task.fit_config(half)
    seen = sizes.median * np.sqrt(0.4 * 0.6)
    assert fitted_half.model.options["spatial_scale"] == max(1.0, round(seen * K, 1))
    assert fitted_half.grouping.min_area == fitted.grouping.min_area  # image pixels: the same
    zoomed = dataclasses.replace(  # scale: auto shows objects over 3/8 of the crop at that size
        cfg, data=dataclasses.replace(cfg.data, options={**cfg.data.options, "scale": "auto"})
    )
    fitted_zoom = task.fit_config(zoomed)
    lo, hi = fitted_scale(sizes, (32, 32))
    assert sizes.median > 12 and fitted_zoom.data.options["scale"] == [lo, hi] and hi < 1.25
    seen = sizes.median * np.sqrt(lo * hi)
    assert fitted_zoom.model.options["spatial_scale"] == max(1.0, round(seen * K, 1))
    assert task.fit_config(fitted_zoom) == fitted_zoom
    crash_after_first_checkpoint(zoomed, tmp_path / "run", monkeypatch)
    resumed = train(zoomed, tmp_path / "run", resume=True, progress=False)  # auto again: same
    stored = load_checkpoint(resumed.checkpoint)["config"]
    assert stored["model"]["options"]["spatial_scale"] == fitted_zoom.model.options["spatial_scale"]
    assert stored["grouping"]["min_area"] == fitted.grouping.min_area
    assert stored["data"]["options"]["scale"] == [lo, hi]
    with pytest.raises(ConfigError, match="min_area 'auto' is chosen when training"):
        cfg.grouping.min_area_pixels()


def test_auto_needs_annotated_objects_and_the_instance_task(tmp_path):
    import dataclasses

    from pixelgroup.errors import DataError

    root = write_cells_folder(tmp_path / "cells", splits={"train": 17}, size=(24, 24), count=2)
    for mask in sorted((root / "train" / "masks").iterdir())[:16]:  # only the 17th annotated
        tifffile.imwrite(mask, np.zeros((24, 24), np.uint16))
    cfg = _cells_config(root)
    auto = dataclasses.replace(cfg, grouping=dataclasses.replace(cfg.grouping, min_area="auto"))
    with pytest.raises(DataError, match="first 16 images of split 'train' hold no annotated"):
        get_task("instance").fit_config(auto)
    with pytest.raises(ConfigError, match="by the instance task only; task 'semantic'"):
        get_task("semantic").fit_config(dataclasses.replace(auto, task="semantic"))
    with pytest.raises(ConfigError, match="must be one of 'auto' or a number, got 'big'"):
        from_dict(ExperimentConfig, {"grouping": {"min_area": "big"}})
    with pytest.raises(ConfigError, match="grouping.min_area must be >= 0 or 'auto', got -1"):
        from_dict(ExperimentConfig, {"grouping": {"min_area": -1}})
    no_crop = dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, options={"augment": False, "scale": "auto"})
    )
    with pytest.raises(ConfigError, match="needs data.options.augment: true and data.options.crop"):
        get_task("instance").fit_config(no_crop)
    unfitted = dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, options={**cfg.data.options, "scale": "auto"})
    )
    with pytest.raises(ConfigError, match="data.options.scale 'auto' is chosen when training"):
        get_task("instance").inference_scale(unfitted)  # eval / predict of a stored model
    with pytest.raises(ConfigError, match="scale must be one of 'auto' or a number, got 'big'"):
        from_dict(AugmentOptions, {"scale": "big"})


def test_spatial_model_adds_the_centre_vote_loss_and_warns_on_a_misfit_scale(tmp_path, caplog):
    """``embedding: spatial``: the loss has a ``center`` term (weighted by
    ``loss.center_weight``), the pair loss leaves the background out, and training reads the
    masks' object sizes (``fit_config``), warning when ``spatial_scale`` does not suit them."""
    import dataclasses
    import logging

    root = write_cells_folder(tmp_path / "cells", splits={"train": 2}, size=(48, 40), count=6)
    cfg = _cells_config(root)
    options = {**cfg.model.options, "embedding": "spatial", "spatial_scale": 40.0}
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, options=options))
    task = get_task("instance")
    with caplog.at_level(logging.INFO, logger="pixelgroup.tasks.instance"):
        assert task.fit_config(cfg) == cfg  # nothing to choose: the scale is given
    assert "training objects" in caplog.text and "spatial_scale=" in caplog.text
    assert "chose" not in caplog.text
    dataset = task.build_dataset(cfg, "train")
    batch = task.collate([dataset[0], dataset[1]])
    model = build_model("unet", **options)
    terms = task.build_loss(cfg)(model(batch.image), batch, torch.Generator().manual_seed(0))
    assert float(terms["center"].detach()) > 0
    expected = terms["loss_iter0"] + terms["loss_iter1"] + terms["center"] + terms["semantic"]
    torch.testing.assert_close(terms["loss"], expected)
    heavier = dataclasses.replace(
        cfg, loss=dataclasses.replace(cfg.loss, task_options={"center_weight": 3.0})
    )
    again = task.build_loss(heavier)(model(batch.image), batch, torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        again["loss"] - terms["loss"], 2 * terms["center"], atol=1e-4, rtol=0
    )


def test_predict_keeps_the_native_scale_of_a_crop_trained_model(
    tmp_path, capsys, caplog, monkeypatch
):
    """A model trained on crops at native scale predicts whole images at that scale by default
    (no --max-size downscaling); an explicit --max-size that downscales is warned about. The
    rule is the library's (predict_files), so library callers get it too."""
    from pixelgroup.cli import main
    from pixelgroup.engine import load_model, predict_files

    root = write_cells_folder(tmp_path / "cells", splits={"train": 2, "test": 1}, size=(48, 40))
    done = train(_cells_config(root), tmp_path / "run", progress=False)
    image = str(root / "test" / "images" / "cells_000.tif")
    args = ["predict", "--checkpoint", str(done.checkpoint), image, "--quiet"]
    monkeypatch.setattr("pixelgroup.engine.predict.DEFAULT_MAX_SIZE", 24)  # below 48 x 40
    assert main([*args, "-o", str(tmp_path / "default")]) == 0
    out = capsys.readouterr()
    assert "resized" not in out.out and "warning" not in caplog.text
    assert main([*args, "-o", str(tmp_path / "small"), "--max-size", "24"]) == 0
    out = capsys.readouterr()
    assert "resized" in out.out and "native scale" in caplog.text
    assert "--max-size 0" in caplog.text
    caplog.clear()
    model, cfg, _ = load_model(done.checkpoint)
    library = predict_files(model, cfg, [image], tmp_path / "library", progress=False)
    assert library.resized == [] and "warning" not in caplog.text
    library = predict_files(model, cfg, [image], tmp_path / "lib24", progress=False, max_size=24)
    assert library.resized[0][2] == (24, 20) and "native scale" in caplog.text


def test_a_model_trained_at_half_scale_is_evaluated_and_predicts_at_half_scale(tmp_path, caplog):
    """``data.options.scale: [0.4, 0.6]``: training shows the images at about half their size
    (the kernel fitted to half-size objects), so eval, tune and predict show them at
    sqrt(0.4 * 0.6) = 0.49 of their size, the labels at the image's size; no warning."""
    import dataclasses

    from pixelgroup.engine import evaluate, load_model, predict_files
    from pixelgroup.engine.evaluate import eval_input_size
    from pixelgroup.engine.inference import InferenceRunner

    root = write_cells_folder(tmp_path / "cells", splits={"train": 2, "test": 1}, size=(48, 40))
    cfg = _cells_config(root)
    options = {**cfg.data.options, "scale": [0.4, 0.6]}
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, options=options))
    done = train(cfg, tmp_path / "run", progress=False)
    model, stored, _ = load_model(done.checkpoint)
    task = get_task("instance")
    assert task.inference_scale(stored) == pytest.approx(np.sqrt(0.24))
    assert eval_input_size(torch.zeros(1, 3, 48, 40), task.inference_scale(stored)) == (24, 20)
    seen = []
    call = InferenceRunner.__call__

    def spy(self, images, input_size=None, **kwargs):
        seen.append(input_size)
        return call(self, images, input_size, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(InferenceRunner, "__call__", spy)
        metrics = evaluate(model, stored, "test", progress=False)
    assert seen == [(24, 20)] and 0 <= metrics["acc50"] <= 1
    image = root / "test" / "images" / "cells_000.tif"
    out = predict_files(model, stored, [image], tmp_path / "pred", progress=False)
    assert out.resized == [(image, (48, 40), (24, 20))] and "warning" not in caplog.text
    assert read_label_map(tmp_path / "pred" / "cells_000_labels.png").shape == (48, 40)
    assert get_task("instance").inference_scale(_cells_config(root)) == 1.0  # [0.8, 1.25]


def test_the_gamma_option_reaches_the_augmentation():
    """``data.options.gamma`` (default 0.3; ``--config cells``: 0.15) is the log-range of the
    gamma augmentation; a negative one is a ConfigError naming the key."""
    sample = InstanceSample(
        torch.rand(3, 8, 8), torch.ones(8, 8, dtype=torch.long), torch.ones(8, 8, dtype=torch.long)
    )
    options = from_dict(AugmentOptions, {"augment": True, "crop": [8, 8], "gamma": 0.15})
    assert augmented([sample], options, seed=0, length=1).augment.gamma == 0.15
    assert AugmentOptions().gamma == 0.3
    with pytest.raises(ConfigError, match="gamma must be >= 0"):
        from_dict(AugmentOptions, {"gamma": -1.0})


def test_synthetic_cells_irregular_and_dim():
    """``irregular`` bends the outlines (less convex than ellipses: their convex hulls hold
    more background), ``brightness`` sets the nuclei's range; the default draw is unchanged
    by the options' existence (the same generator calls)."""
    from skimage.measure import regionprops

    def solidity(cells):
        return np.mean([r.solidity for r in regionprops(cells.instance.astype(int)) if r.area > 50])

    def draw(**options):
        return draw_cells(np.random.default_rng(4), (128, 128), count=20, **options)

    plain, bent = draw(), draw(irregular=0.6)
    assert solidity(bent) < solidity(plain) - 0.02
    assert np.array_equal(plain.image, draw(brightness=(0.35, 1.0)).image)
    dim, bright = draw(brightness=(0.1, 0.2)), draw(brightness=(0.9, 1.0))
    for cells in (dim, bright):  # both normalised to their brightest pixel: compare the floor
        assert cells.image.max() == 235
    floor = [
        np.median(c.image[c.instance == 0]) / np.median(c.image[c.instance > 0])
        for c in (dim, bright)
    ]
    assert floor[0] > 2 * floor[1]  # dim nuclei: the background is a larger share of them


def test_synthetic_cells_with_half_the_nuclei_unannotated(tmp_path):
    """``annotated_fraction=0.5``: the same images, half of each training mask's nuclei marked
    unannotated (read as IGNORE_LABEL), the held-out masks complete."""
    from pixelgroup.data import IGNORE_LABEL

    full = write_cells_folder(tmp_path / "full", splits={"train": 1, "test": 1}, size=(64, 64))
    half = write_cells_folder(
        tmp_path / "half", splits={"train": 1, "test": 1}, size=(64, 64), annotated_fraction=0.5
    )
    a = ImageMaskFolder(full, "train")[0]
    b = ImageMaskFolder(half, "train")[0]
    assert torch.equal(a.image, b.image)
    ids = torch.unique(a.instance[a.instance > 0])
    kept = torch.unique(b.instance[b.instance > 0])
    assert len(kept) == round(0.5 * len(ids)) and bool(torch.isin(kept, ids).all())
    hidden = b.instance == IGNORE_LABEL
    assert bool((a.instance[hidden] > 0).all()) and bool((b.semantic[hidden] == IGNORE_LABEL).all())
    assert torch.equal(
        ImageMaskFolder(full, "test")[0].instance, ImageMaskFolder(half, "test")[0].instance
    )
