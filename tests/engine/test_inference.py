"""The inference runner: the one place a model meets images (engine/inference.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from torch import nn

import pixelgroup
from pixelgroup.engine.inference import InferenceRunner, inference_context, model_input_size
from pixelgroup.models import EmbeddingOutput, ToyEmbeddingNet, apply_test_bn
from pixelgroup.tasks import TASKS
from pixelgroup.tasks.base import Task, TaskBase


def _net() -> nn.Module:
    torch.manual_seed(0)
    return ToyEmbeddingNet(width=4, num_blocks=1)


@pytest.mark.parametrize("training", [True, False])
def test_restores_the_mode_and_runs_without_autograd(training):
    net = _net().train(training)
    out = InferenceRunner(net)(torch.rand(2, 3, 16, 16))
    assert net.training is training
    assert not out.embedding.requires_grad
    assert isinstance(out, EmbeddingOutput)


def test_mode_restored_after_an_error():
    net = _net().train()
    with pytest.raises(ValueError, match="channels"):
        InferenceRunner(net)(torch.rand(1, 2, 16, 16))  # the toy model takes 3 channels
    assert net.training


def test_eval_mode_inside_the_context():
    net = _net().train()
    with inference_context(net):
        assert not net.training and not torch.is_grad_enabled()
    assert net.training and torch.is_grad_enabled()


def test_downscales_to_the_input_size_only_when_asked():
    net, images = _net(), torch.rand(1, 3, 40, 30)
    run = InferenceRunner(net)
    assert run(images).embedding.shape[-2:] == (40, 30)
    small = run(images, input_size=(20, 15))
    assert small.embedding.shape[-2:] == (20, 15)
    assert torch.equal(run(images, input_size=(40, 30)).embedding, run(images).embedding)


def test_test_bn_batch_is_the_wrapped_model():
    net, images = _net(), torch.rand(2, 3, 16, 16)
    got = InferenceRunner(net, test_bn="batch")(images).embedding
    with torch.no_grad():
        want = apply_test_bn(net, "batch").eval()(images).embedding
    assert torch.equal(got, want)
    assert not torch.allclose(got, InferenceRunner(net)(images).embedding, atol=1e-4)


def test_autocast_outputs_float32():
    out = InferenceRunner(_net(), amp="bf16")(torch.rand(1, 3, 16, 16))
    assert out.embedding.dtype == torch.float32


def test_bad_settings_are_errors():
    with pytest.raises(ValueError, match="train.amp"):
        InferenceRunner(_net(), amp="fp8")
    with pytest.raises(pixelgroup.errors.ConfigError, match="test_bn"):
        InferenceRunner(_net(), test_bn="frozen")


def test_model_input_size():
    assert model_input_size((3000, 2000), 1024) == (1024, 683)
    assert model_input_size((30, 20), 1024) == (30, 20)
    assert model_input_size((3000, 1), 100) == (100, 1)
    assert model_input_size((3000, 2000), None) == (3000, 2000)


def test_every_task_has_the_whole_protocol():
    members = [n for n in vars(Task) if not n.startswith("_")] + list(Task.__annotations__)
    for name, task in TASKS.items():
        assert isinstance(task, TaskBase), name
        for member in members:
            assert hasattr(task, member), f"{name} lacks {member}"


def _calls_a_model(tree: ast.AST) -> list[int]:
    """Lines that call ``model(...)``, ``self.model(...)`` or ``apply_test_bn``: a forward
    pass, or the test-time BatchNorm that goes with one."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = getattr(f, "id", None) or getattr(f, "attr", "")
            if name in ("model", "apply_test_bn"):
                lines.append(node.lineno)
    return lines


def test_the_forward_pass_exists_once():
    root = Path(pixelgroup.__file__).parent
    found = {}
    for folder in ("tasks", "engine"):
        for path in sorted((root / folder).glob("*.py")):
            lines = _calls_a_model(ast.parse(path.read_text()))
            if lines:
                found[f"{folder}/{path.name}"] = lines
    # train runs the model for the loss; export traces a graph and calls its model; the
    # runner is the one place inference happens
    assert set(found) <= {"engine/inference.py", "engine/train.py", "engine/export.py"}, found
