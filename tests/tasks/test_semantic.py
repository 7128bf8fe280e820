"""The `semantic` engine task: cross-entropy + auxiliary grouping loss, mIoU / boundary F."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pixelgroup.cli import main
from pixelgroup.config import ExperimentConfig, from_dict, load_config
from pixelgroup.engine import evaluate, train
from pixelgroup.engine.checkpoint import build_model_seeded
from pixelgroup.tasks import get_task

ROOT = Path(__file__).resolve().parents[2]
METRICS = {"mIoU", "pixel_acc", "mean_acc", "boundary_P", "boundary_R", "boundary_F"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cfg(**loss) -> ExperimentConfig:
    return from_dict(
        ExperimentConfig,
        {
            "task": "semantic",
            "data": {
                "options": {
                    "length": 8,
                    "eval_length": 2,
                    "max_digits": 3,
                    "boundary_max_dist": 0.03,
                },
                "batch_size": 4,
            },
            "model": {"options": {"width": 8, "num_blocks": 1, "num_classes": 11}},
            "loss": {"num_iters": 1, "stride": 4, "sample_ratio": None, **loss},
            "train": {"epochs": 1, "iters_per_epoch": 2},
        },
    )


def _setup(cfg: ExperimentConfig):
    task = get_task("semantic")
    batch = task.collate([task.build_dataset(cfg, "train")[i] for i in range(4)])
    return task, batch, build_model_seeded(cfg), task.build_loss(cfg)


def _grads(model, loss) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_aux_gradient_reaches_the_shared_trunk():
    cfg1, cfg0 = _cfg(aux_weight=1.0), _cfg(aux_weight=0.0)
    task, batch, model, loss1 = _setup(cfg1)
    loss0 = task.build_loss(cfg0)
    model.eval()  # fixed BN statistics: two forwards give identical outputs
    with_aux = _grads(model, loss1(model(batch.image), batch, torch.Generator())["loss"])
    ce_only = _grads(model, loss0(model(batch.image), batch, torch.Generator())["loss"])
    assert "head.conv.weight" not in ce_only  # CE alone never touches the embedding head
    pair_grad = with_aux["stem.0.0.weight"] - ce_only["stem.0.0.weight"]
    assert pair_grad.abs().sum() > 1e-6  # the aux term's gradient in the trunk
    torch.testing.assert_close(with_aux["semantic.weight"], ce_only["semantic.weight"])


def test_ce_honours_ignore_index_and_aux_zero_is_plain_ce():
    cfg = _cfg(aux_weight=0.0)
    task, batch, model, loss = _setup(cfg)
    semantic = batch.semantic.clone()
    semantic[:, :, :32] = 255
    batch = type(batch)(batch.image, batch.instance, semantic)
    with torch.no_grad():
        out = model(batch.image)
        terms = loss(out, batch, torch.Generator())
        keep = semantic != 255
        logp = F.log_softmax(out.semantic, dim=1).permute(0, 2, 3, 1)[keep]
        expected = -logp.gather(1, semantic[keep][:, None]).mean()
    assert set(terms) == {"loss", "ce"}
    torch.testing.assert_close(terms["loss"], expected)


@pytest.mark.parametrize("labels", ["semantic", "instance"])
def test_short_run_with_aux_lowers_both_losses(labels):
    task, batch, model, loss = _setup(_cfg(aux_weight=1.0, aux_labels=labels))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    def values() -> tuple[float, float]:
        model.eval()
        with torch.no_grad():
            terms = loss(model(batch.image), batch, torch.Generator().manual_seed(0))
        return float(terms["ce"]), float(terms["pair"])

    ce_before, pair_before = values()
    model.train()
    for step in range(15):
        terms = loss(model(batch.image), batch, torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
    ce_after, pair_after = values()
    assert ce_after < 0.8 * ce_before
    assert pair_after < 0.7 * pair_before


def test_train_eval_and_cli_on_a_semantic_checkpoint(tmp_path, capsys):
    result = train(_cfg(), tmp_path, progress=False)
    assert {"loss", "ce", "pair", "loss_iter0", "loss_iter1"} <= set(result.history[0])
    model = build_model_seeded(_cfg())
    metrics = evaluate(model, _cfg(), progress=False)
    assert set(metrics) == METRICS
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    out = tmp_path / "m.json"
    ckpt = str(result.checkpoint)
    assert (
        main(["eval", "--task", "semantic", "--checkpoint", ckpt, "-o", str(out), "--quiet"]) == 0
    )
    assert set(json.loads(out.read_text())) == METRICS
    assert "boundary_F" in capsys.readouterr().out
    wrong = tmp_path / "wrong.json"
    assert main(["eval", "--task", "instance", "--checkpoint", ckpt, "-o", str(wrong)]) == 2
    assert "was trained for task 'semantic', not 'instance'" in capsys.readouterr().err
    assert not wrong.exists()


def test_configs_load_and_build():
    toy = load_config(ExperimentConfig, ROOT / "configs" / "toy_semantic.yaml")
    assert toy.task == "semantic"
    assert get_task("semantic").build_model(toy)(torch.rand(1, 3, 16, 16)).semantic.shape == (
        1,
        11,
        16,
        16,
    )
    voc = load_config(ExperimentConfig, ROOT / "configs" / "voc_semantic.yaml")
    dense = get_task("semantic").build_model(voc)
    assert dense.semantic.out_channels == 21


@pytest.mark.slow
def test_voc_samples_through_the_semantic_evaluator(shared_data):
    cfg = load_config(
        ExperimentConfig,
        ROOT / "configs" / "voc_semantic.yaml",
        [
            f"data.root={shared_data / 'voc'}",
            "data.options={size: [48, 64]}",
            "model.options={backbone: efficientnet_lite0, embedding_dim: 8, head_channels: 16, "
            "embedding_stride: 4, num_classes: 21}",
            "device=cpu",
            "data.num_workers=0",
        ],
    )
    model = build_model_seeded(cfg)
    metrics = evaluate(model, cfg, split="val", progress=False)
    assert set(metrics) == METRICS


@pytest.mark.parametrize(
    ("loss", "model", "data", "match"),
    [
        ({"aux_labels": "parts"}, {}, {}, "loss.aux_labels must be one of"),
        ({"aux_weight": -1.0}, {}, {}, "loss.aux_weight must be >= 0, got -1.0"),
        ({}, {"num_classes": None}, {}, "needs model.options.num_classes >= 2"),
        ({}, {}, {"boundary_max_dist": 0}, "boundary_max_dist must be > 0"),
    ],
)
def test_bad_config(loss, model, data, match):
    cfg = _cfg()
    values = {
        "task": "semantic",
        "data": {"options": {**cfg.data.options, **data}},
        "model": {"options": {**cfg.model.options, **model}},
        "loss": {**cfg.loss.task_options, **loss},
    }
    task = get_task("semantic")
    with pytest.raises(ValueError, match=match):  # ranges and choices: when the config is read
        cfg = from_dict(ExperimentConfig, values)
        task.build_loss(cfg)
        task.build_model(cfg)
        task.build_evaluator(cfg)


def test_model_without_semantic_head_is_reported():
    cfg = _cfg()
    task, batch, _, loss = _setup(cfg)
    plain = from_dict(ExperimentConfig, {"model": {"options": {"width": 4, "num_blocks": 1}}})
    model = get_task("instance").build_model(plain)
    with pytest.raises(ValueError, match="no semantic logits: build it with"):
        loss(model(batch.image), batch, torch.Generator())
