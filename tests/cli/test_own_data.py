"""Your own data end to end through the command line: a tiny folder dataset and a tiny COCO
export (mixed sizes; grey, RGBA and palette images; polygons, RLEs and a crowd region), each
with the toy model and the dense (pretrained-style) model: train, eval, predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from pycocotools.coco import COCO

from pixelgroup.cli import main
from pixelgroup.config import ExperimentConfig, from_dict
from pixelgroup.data import InstanceSample
from pixelgroup.errors import ConfigError, DataError
from pixelgroup.models import EmbeddingOutput
from pixelgroup.tasks import get_task
from pixelgroup.tasks.instance import semantic_target
from tests._cli import one_line_error
from tests._tiny import TINY_DENSE_OPTIONS
from tests.data.test_coco_dataset import SHAPES, coco_options, write_tiny_coco, write_tiny_folder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


MODELS = {
    "toy": {"name": "toy", "options": {"width": 4, "num_blocks": 1}},
    "dense": {"name": "dense", "options": {**TINY_DENSE_OPTIONS, "num_classes": 2}},
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("own_data")
    write_tiny_folder(root / "folder")
    write_tiny_coco(root / "coco")
    return root


def _config(root: Path, data: str, model: str) -> dict:
    options = {"size": [48, 48], **(coco_options() if data == "coco" else {})}
    return {
        "task": "instance",
        "data": {
            "name": data,
            "root": str(root / data),
            "options": options,
            "batch_size": 2,
            "eval_split": "val",
        },
        "model": MODELS[model],
        "loss": {"num_iters": 1, "stride": 2},
        "train": {"epochs": 1, "iters_per_epoch": 2},
        "grouping": {"num_iters": 2, "min_area": 4},
    }


def _val_images(root: Path, data: str) -> list[Path]:
    folder = root / "folder" / "val" / "images" if data == "folder" else root / "coco/images/val"
    return sorted(folder.iterdir())


@pytest.fixture(scope="module")
def runs(data_root) -> dict[tuple[str, str], Path]:
    """One 2-iteration run per (dataset, model)."""
    out = {}
    for data in ("folder", "coco"):
        for model in MODELS:
            config = data_root / f"{data}_{model}.yaml"
            config.write_text(yaml.safe_dump(_config(data_root, data, model)))
            run = data_root / f"run_{data}_{model}"
            assert main(["train", "--config", str(config), "-o", str(run), "--quiet"]) == 0
            out[data, model] = run / "checkpoint.pt"
    return out


@pytest.mark.parametrize("model", ["toy", "dense"])
@pytest.mark.parametrize("data", ["folder", "coco"])
def test_train_eval_predict(runs, data_root, data, model, tmp_path, capsys):
    ckpt = runs[data, model]
    background = ["--set", "grouping.background=semantic"] if model == "dense" else []
    metrics_path = tmp_path / "metrics.json"
    evaluate = ["eval", "--checkpoint", str(ckpt), "-o", str(metrics_path), "--quiet"]
    assert main(evaluate + background) == 0
    metrics = json.loads(metrics_path.read_text())
    assert metrics["images"] == 2 and metrics["instances"] == 6
    for key in ("AP50", "MBO", "coco_AP", "coco_AP50", "coco_AP75", "coco_AR100"):
        assert 0.0 <= metrics[key] <= 1.0
    assert -1.0 <= metrics["ARI"] <= 1.0

    images = _val_images(data_root, data)
    out = tmp_path / "pred"
    predict = ["predict", "--checkpoint", str(ckpt), *map(str, images), "-o", str(out), "--quiet"]
    assert main(predict + background) == 0
    assert capsys.readouterr().out.strip().endswith("(2 image(s))")  # nothing downscaled
    records = []
    for image, (h, w, _) in zip(images, SHAPES, strict=False):
        with Image.open(image) as im:
            assert im.size == (w, h)  # mixed sizes: each output at its image's size
        labels = np.asarray(Image.open(out / f"{image.stem}_labels.png"))
        assert labels.shape == (h, w) and labels.dtype == np.uint16
        assert np.asarray(Image.open(out / f"{image.stem}_overlay.png")).shape == (h, w, 3)
        per_image = json.loads((out / f"{image.stem}.json").read_text())
        assert len(per_image) == len(np.unique(labels[labels > 0]))
        assert all(r["segmentation"]["size"] == [h, w] for r in per_image)
        records += per_image
    assert json.loads((out / "results.json").read_text()) == records
    if records:  # pycocotools reads the combined file (image_id = file stem)
        gt = COCO()
        gt.dataset = {
            "images": [
                {"id": p.stem, "height": h, "width": w}
                for p, (h, w, _) in zip(images, SHAPES, strict=False)
            ],
            "annotations": [],
            "categories": [{"id": 1, "name": "object"}],
        }
        gt.createIndex()
        assert len(gt.loadRes(str(out / "results.json")).anns) == len(records)


def test_predict_downscales_large_images(runs, tmp_path, capsys):
    big = tmp_path / "big.png"
    rgb = np.zeros((150, 200, 3), np.uint8)
    rgb[20:80, 30:120] = (200, 50, 50)
    Image.fromarray(rgb).save(big)
    out = tmp_path / "pred"
    ckpt = str(runs["folder", "dense"])
    assert (
        main(["predict", "--checkpoint", ckpt, str(big), "-o", str(out), "--max-size", "64"]) == 0
    )
    printed = capsys.readouterr().out
    assert "resized for the model: big.png 200x150 -> 64x48" in printed
    assert np.asarray(Image.open(out / "big_labels.png")).shape == (150, 200)
    assert json.loads((out / "big.json").read_text()) == json.loads(
        (out / "results.json").read_text()
    )


def test_user_errors_are_one_line(runs, data_root, tmp_path, capsys):
    toy, dense = str(runs["folder", "toy"]), str(runs["coco", "dense"])
    image = str(_val_images(data_root, "folder")[0])
    out = str(tmp_path / "pred")
    assert main(["eval", "--checkpoint", toy, "--set", "grouping.background=semantic"]) == 2
    one_line_error(capsys, "grouping.background: semantic needs a model with a semantic head")
    assert main(["eval", "--checkpoint", dense, "--set", "grouping.background=fg"]) == 2
    one_line_error(capsys, "grouping.background must be one of 'largest', 'semantic', got 'fg'")
    assert main(["eval", "--checkpoint", dense, "--split", "test"]) == 2
    one_line_error(capsys, "data.options.test is not set: split 'test' of the coco dataset")
    assert main(["predict", "--checkpoint", dense, image, "-o", out, "--max-size", "-1"]) == 2
    one_line_error(capsys, "--max-size must be >= 0 (0: no limit), got -1")
    if not torch.cuda.is_available():
        assert (
            main(["predict", "--checkpoint", dense, image, "-o", out, "--set", "device=cuda"]) == 2
        )
        one_line_error(capsys, "device=cuda but no CUDA device is available here")
        assert main(["eval", "--checkpoint", dense, "--set", "device=cuda"]) == 2
        one_line_error(capsys, "device=cuda but no CUDA device is available here")
    for data, fragment in (
        ("coco", "split 'train' of data.name 'coco' has images of 4 sizes (e.g. 40x52, 48x64"),
        ("folder", "cannot batch images of different sizes ("),
    ):
        config = tmp_path / f"{data}.yaml"
        values = _config(data_root, data, "toy")
        del values["data"]["options"]["size"]
        config.write_text(yaml.safe_dump(values))
        assert main(["train", "--config", str(config), "-o", str(tmp_path / data), "--quiet"]) == 2
        err = one_line_error(capsys, fragment)
        assert "set data.options.size: [H, W] to resize them, or data.batch_size: 1" in err
    results = tmp_path / "results.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(results)
    assert main(["predict", "--checkpoint", dense, image, str(results), "-o", out]) == 2
    one_line_error(capsys, "results.png: the instance task writes a combined results.json")
    assert not Path(out).exists()


def test_semantic_head_target_and_config_checks():
    semantic = torch.tensor([[[0, 1, 2, -1]]])
    assert semantic_target(semantic, 2).tolist() == [[[0, 1, 1, -1]]]
    assert semantic_target(semantic, 3).tolist() == semantic.tolist()
    with pytest.raises(
        DataError, match=r"class id 3 but the semantic head has model.options.num_classes = 3"
    ):
        semantic_target(semantic + (semantic > 0), 3)
    with pytest.raises(ConfigError, match="num_classes must be 2 .* got 1"):
        semantic_target(semantic, 1)
    cfg = from_dict(ExperimentConfig, {"grouping": {"background": "semantic"}})
    with pytest.raises(ConfigError, match="grouping.background: semantic needs a model with"):
        get_task("instance").build_loss(cfg)


def test_loss_adds_the_foreground_term_for_a_semantic_head():
    cfg = from_dict(ExperimentConfig, {"loss": {"num_iters": 1}})
    loss = get_task("instance").build_loss(cfg)
    instance = torch.tensor([[0, 1, 1, -1], [0, 2, 2, -1]])[None].repeat(2, 2, 2)  # (2, 4, 8)
    embedding = torch.nn.functional.normalize(torch.randn(2, 4, 2, 4), dim=1)
    batch = InstanceSample(torch.rand(2, 3, 4, 8), instance, instance.clamp(max=1))
    plain = loss(EmbeddingOutput(embedding, embedding), batch, torch.Generator().manual_seed(0))
    assert "semantic" not in plain
    terms = loss(
        EmbeddingOutput(embedding, embedding, semantic=torch.zeros(2, 2, 2, 4)), batch, None
    )
    assert terms["semantic"].item() == pytest.approx(np.log(2))  # uniform logits
    assert terms["loss"].item() == pytest.approx(
        terms["loss_iter0"] + terms["loss_iter1"] + np.log(2)
    )
