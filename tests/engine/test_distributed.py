"""Scale-out: 2-process gloo DDP == one process at the same global batch, crash + resume, AMP."""

from __future__ import annotations

import importlib
import os
import socket
from dataclasses import dataclass

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pixelgroup.config import ConfigError, ExperimentConfig, from_dict, to_dict
from pixelgroup.engine.checkpoint import load_checkpoint
from pixelgroup.engine.distributed import (
    DistInfo,
    autocast,
    float32_outputs,
    gather_objects,
    init_distributed,
    mean_across_ranks,
    micro_batch_size,
)
from pixelgroup.engine.train import NonFiniteLossError, train
from tests._tiny import tiny_config

# the module (pixelgroup.engine.train is also the name of the function it exports)
train_module = importlib.import_module("pixelgroup.engine.train")

# Every pixel in the loss (no random sampling), so ranks and a single process see the same pairs.
_SETTINGS = {
    "loss": {"num_iters": 1, "stride": 4, "sample_ratio": None},
    "optim": {"name": "sgd", "lr": 0.05},
    "train": {"epochs": 1, "iters_per_epoch": 3},
}


def _cfg(**sections) -> ExperimentConfig:
    values = {k: dict(v) for k, v in _SETTINGS.items()}
    for key, value in sections.items():
        values.setdefault(key, {}).update(value)
    return tiny_config(**values)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, cfg: dict, run_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)  # as the single process (one_torch_thread): oneDNN rounds by threads
    try:
        train(from_dict(ExperimentConfig, cfg), run_dir, progress=False)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _params(path) -> dict[str, torch.Tensor]:
    state = load_checkpoint(path)
    return {k: v for k, v in state["model"].items() if v.is_floating_point()}


@pytest.mark.slow
def test_two_process_gloo_equals_one_process(tmp_path, one_torch_thread):
    """DDP over 2 CPU processes (1 image each) vs one process accumulating 2 micro-batches of 1:
    same images per step, same BatchNorm batches, gradients averaged the same way."""
    cfg = _cfg(data={"batch_size": 2})
    mp.spawn(_worker, args=(2, _free_port(), to_dict(cfg), str(tmp_path / "ddp")), nprocs=2)
    single = train(
        _cfg(data={"batch_size": 2}, train={"grad_accum": 2}), tmp_path / "one", progress=False
    )
    ddp_state = load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")
    one_state = load_checkpoint(single.checkpoint)
    init = {k: v for k, v in train_module.build_model_seeded(cfg).state_dict().items()}
    moved = 0.0
    for name, param in one_state["model"].items():
        if name.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue  # DDP broadcasts rank 0's BN buffers; parameters are what must agree
        torch.testing.assert_close(ddp_state["model"][name], param, rtol=1e-5, atol=1e-6)
        moved = max(moved, float((param - init[name]).abs().max()))
    assert moved > 1e-4  # the steps did change the weights
    assert len(ddp_state["history"]) == 3 == len(one_state["history"])
    for a, b in zip(ddp_state["history"], one_state["history"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)  # loss averaged over ranks
    assert len(ddp_state["rank_generators"]) == 2
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["checkpoint.pt", "config.json"]


class _Crash(RuntimeError):
    pass


def _crash_after(monkeypatch, calls: int) -> None:
    """Make the loss raise on its ``calls + 1``-th call (a crash mid-epoch)."""
    real_get_task = train_module.get_task
    count = {"n": 0}

    class Crashing:
        def __init__(self, task):
            self.task = task

        def __getattr__(self, name):
            return getattr(self.task, name)

        def build_loss(self, cfg):
            loss = self.task.build_loss(cfg)

            def crashing(*args):
                count["n"] += 1
                if count["n"] > calls:
                    raise _Crash("simulated crash")
                return loss(*args)

            return crashing

    monkeypatch.setattr(train_module, "get_task", lambda name: Crashing(real_get_task(name)))


@pytest.mark.parametrize(
    ("how", "every", "saved"),
    [("resume", None, (1, 0)), ("torchrun_restart", None, (1, 0)), ("resume", 1, (1, 1))],
)
def test_crash_mid_epoch_then_resume_matches_uninterrupted(
    tmp_path, monkeypatch, how, every, saved
):
    train_cfg = {"epochs": 2, "iters_per_epoch": 3, "grad_accum": 2, "checkpoint_every": every}
    cfg = _cfg(data={"batch_size": 4, "options": {"length": 8}}, train=train_cfg)
    full = train(cfg, tmp_path / "full", progress=False)
    with monkeypatch.context() as m:
        # epoch 1 = 6 micro-steps (3 steps; with 8 images a pass is 2 steps, so it wraps);
        # crash in the 2nd step of epoch 2
        _crash_after(m, calls=9)
        with pytest.raises(_Crash):
            train(cfg, tmp_path / "crashed", progress=False)
    state = load_checkpoint(tmp_path / "crashed" / "checkpoint.pt")
    assert (state["epoch"], state["step"]) == saved
    if how == "resume":
        resumed = train(None, tmp_path / "crashed", resume=True, progress=False)
    else:  # torchrun --max-restarts reruns the same command with a restart count
        monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
        resumed = train(cfg, tmp_path / "crashed", progress=False)
    a, b = _params(full.checkpoint), _params(resumed.checkpoint)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert len(load_checkpoint(resumed.checkpoint)["history"]) == 6


def test_grad_accum_changes_memory_not_steps(tmp_path):
    one = train(_cfg(data={"batch_size": 4}), tmp_path / "a", progress=False)
    four = train(
        _cfg(data={"batch_size": 4}, train={"grad_accum": 4}), tmp_path / "b", progress=False
    )
    assert len(one.history) == len(four.history) == 3
    # BatchNorm sees 1 image instead of 4, so the losses differ but stay finite
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in four.history)


def test_bf16_autocast_on_cpu_trains(tmp_path):
    result = train(_cfg(train={"amp": "bf16", "iters_per_epoch": 1}), tmp_path, progress=False)
    assert torch.isfinite(torch.tensor(result.history[0]["loss"]))


def test_nan_gradients_under_bf16_stop_before_the_weights_take_them(tmp_path, monkeypatch):
    """bf16 has no GradScaler: a finite loss with NaN gradients stops the step that made
    them, and says so, instead of NaN weights and a NaN loss one step later."""
    build = train_module._build

    def nan_gradients(*args, **kwargs):
        run = build(*args, **kwargs)
        next(run.model.parameters()).register_hook(lambda g: g * float("nan"))
        return run

    monkeypatch.setattr(train_module, "_build", nan_gradients)
    expected = "gradients are NaN or inf at epoch 1, iteration 1 "
    with pytest.raises(NonFiniteLossError, match=expected):
        train(_cfg(train={"amp": "bf16", "iters_per_epoch": 2}), tmp_path, progress=False)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_bf16_on_the_cpu_refuses_dilated_channels_last_convolutions(tmp_path):
    """torch 2.14's CPU bf16 backward of a dilation >= 3 convolution in channels_last gave NaN
    weight gradients and crashed the toy recipe at times: refused before any step."""
    with pytest.raises(ConfigError, match=r"convolution blocks\.2\.body\.2\.0 \(dilation 4"):
        train(
            _cfg(train={"amp": "bf16"}, model={"options": {"width": 4, "num_blocks": 3}}),
            tmp_path,
            progress=False,
        )
    assert not (tmp_path / "checkpoint.pt").exists()


def test_the_loss_sees_float32_outputs_under_autocast(tmp_path, monkeypatch):
    """The criterion runs outside the autocast region on float32 copies of what the model
    returned (in float16 a cross-entropy over a 500 x 375 image was NaN on the first step)."""
    seen = []
    build = train_module._build

    def spy_run(*args, **kwargs):
        run = build(*args, **kwargs)
        criterion = run.criterion

        def spy(output, batch, generator):
            seen.append((output.embedding.dtype, torch.is_autocast_enabled("cpu")))
            return criterion(output, batch, generator)

        run.criterion = spy
        return run

    monkeypatch.setattr(train_module, "_build", spy_run)
    train(_cfg(train={"amp": "bf16", "iters_per_epoch": 1}), tmp_path, progress=False)
    assert seen == [(torch.float32, False)]


def test_float32_outputs_converts_half_tensors_only():
    @dataclass
    class Output:
        embedding: torch.Tensor
        sides: list
        semantic: torch.Tensor | None
        labels: torch.Tensor

    half = torch.ones(2, dtype=torch.float16)
    out = float32_outputs(
        Output(half, [half.bfloat16(), half.double()], None, torch.ones(2).long())
    )
    assert out.embedding.dtype == torch.float32 and torch.equal(out.embedding, half.float())
    assert [t.dtype for t in out.sides] == [torch.float32, torch.float64]
    assert out.semantic is None and out.labels.dtype == torch.int64
    assert float32_outputs(half).dtype == torch.float32 and float32_outputs(3) == 3


def test_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="train.amp 'fp16' needs a CUDA device"):
        train(_cfg(train={"amp": "fp16"}), tmp_path, progress=False)
    with pytest.raises(ValueError, match="train.amp must be 'none', 'bf16' or 'fp16'"):
        autocast("fp8", torch.device("cpu"))
    with pytest.raises(ValueError, match=r"data.batch_size 4 .the global batch. must be divisible"):
        train(_cfg(train={"grad_accum": 3}), tmp_path, progress=False)
    with pytest.raises(ValueError, match="train.checkpoint_every must be >= 1 or null, got 0"):
        train(_cfg(train={"checkpoint_every": 0}), tmp_path, progress=False)
    with pytest.raises(ValueError, match="train.grad_accum must be >= 1, got 0"):
        micro_batch_size(4, 1, 0)
    assert micro_batch_size(8, 2, 2) == 2
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(ValueError, match="WORLD_SIZE=2 but RANK is missing"):
        init_distributed("cpu")


def test_single_process_helpers_are_no_ops(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info, device = init_distributed("cpu")
    assert info == DistInfo() and info.is_main and not info.distributed and device.type == "cpu"
    assert mean_across_ranks({"loss": 2.0}, info) == {"loss": 2.0}
    assert gather_objects(3, info) == [3]
