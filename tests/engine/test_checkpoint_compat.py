"""Checkpoints written before the tasks/ layout (pixelgroup 0.1.0 as of the layout change) still
load, evaluate and resume; the on-disk format (version 3) and version 2's still load; a corrupt
payload or an unknown version is a one-line error."""

from __future__ import annotations

import hashlib
import io
import re
import shutil
from pathlib import Path

import pytest
import torch

from pixelgroup.engine import evaluate, load_checkpoint, load_model, train
from pixelgroup.engine.checkpoint import previous_checkpoint, save_checkpoint
from pixelgroup.errors import CheckpointError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoint_v0_toy.pt"


def test_old_checkpoint_loads_evaluates_and_resumes(tmp_path):
    """``checkpoint_v0_toy.pt``: tests/_tiny.py's TINY config with epochs 1, trained by the
    code before the layout change (``pixelgroup.engine.tasks``, ``pixelgroup.experiment``)."""
    model, cfg, state = load_model(FIXTURE)
    assert cfg.task == "instance" and cfg.model.name == "toy" and state["epoch"] == 1
    metrics = evaluate(model, cfg, progress=False)
    assert {"AP50", "AP70", "ARI"} <= set(metrics)
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(FIXTURE, run / "checkpoint.pt")
    old = load_checkpoint(run / "checkpoint.pt")
    stored = old["config"]
    stored["train"]["epochs"] = 2
    torch.save(old, run / "checkpoint.pt")
    result = train(None, run, resume=True, progress=False)
    assert len(result.history) == 2 * len(old["history"])
    assert result.history[: len(old["history"])] == old["history"]


def _wrapped_v2(state, *, corrupt=False):
    """A checkpoint as ``save_checkpoint`` wrote it in format version 2: the payload a Python
    ``bytes`` object (``corrupt``: one byte flipped after the checksum was taken)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    digest = hashlib.sha256(payload).hexdigest()
    if corrupt:
        payload = payload[:100] + bytes([payload[100] ^ 1]) + payload[101:]
    return {"format": "pixelgroup-checkpoint", "version": 2, "sha256": digest, "payload": payload}


def _same_state(a, b):
    assert a.keys() == b.keys() and a["config"] == b["config"] and a["history"] == b["history"]
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(v, b["model"][k]) for k, v in a["model"].items())


def test_checkpoint_is_format_version_3_with_a_uint8_tensor_payload(tmp_path):
    """Version 3 stores the payload as a uint8 tensor (torch.save pickled version 2's ``bytes``
    payload ~5x slower); the SHA-256 is still that of the payload bytes."""
    state = load_checkpoint(FIXTURE)
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(state, path)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "pixelgroup-checkpoint" and raw["version"] == 3
    payload = raw["payload"]
    assert isinstance(payload, torch.Tensor) and payload.dtype == torch.uint8 and payload.dim() == 1
    assert hashlib.sha256(payload.numpy().tobytes()).hexdigest() == raw["sha256"]
    _same_state(load_checkpoint(path), state)


def test_version_2_checkpoint_still_loads(tmp_path):
    state = load_checkpoint(FIXTURE)
    path = tmp_path / "checkpoint.pt"
    torch.save(_wrapped_v2(state), path)
    _same_state(load_checkpoint(path), state)
    model, cfg, _ = load_model(path)
    assert cfg.model.name == "toy" and not model.training


@pytest.mark.parametrize("version", [2, 3])
def test_corrupt_payload_is_named_corrupt(tmp_path, version):
    """A flipped payload byte gives the same one-line error in both versions; in version 3
    also when the byte is flipped in the file itself (inside the payload's zip record)."""
    state = load_checkpoint(FIXTURE)
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(state, path)
    save_checkpoint(state, path)  # keeps checkpoint.prev.pt, named by the error
    if version == 2:
        torch.save(_wrapped_v2(state, corrupt=True), path)
    else:
        data = bytearray(path.read_bytes())
        payload = torch.load(path, weights_only=True)["payload"].numpy().tobytes()
        at = data.find(payload[1000:1064]) + 32
        assert at > 32 and data.find(payload[1000:1064], at) == -1  # stored once, unpacked
        data[at] ^= 1
        path.write_bytes(bytes(data))
    message = (
        f"checkpoint {path} is corrupt: its SHA-256 does not match the one stored when it was "
        f"written; the previous checkpoint is {previous_checkpoint(path)}"
    )
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert str(error.value) == message
    if version == 3:  # the same for a payload corrupted before it was written
        raw = torch.load(path.with_name("checkpoint.prev.pt"), weights_only=True)
        raw["payload"][100] ^= 1
        torch.save(raw, path)
        with pytest.raises(CheckpointError) as error:
            load_checkpoint(path)
        assert str(error.value) == message


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"version": 4}, "has format version 4; this pixelgroup reads versions 1 to 3"),
        ({"payload": b"abc"}, "is corrupt: its payload is a bytes, not the 1-D uint8 tensor"),
        (
            {"payload": torch.zeros(2, 2, dtype=torch.uint8)},
            "is corrupt: its payload is a Tensor, not the 1-D uint8 tensor of format version 3",
        ),
        ({"version": 2}, "is corrupt: its payload is a Tensor, not the bytes of format version 2"),
    ],
)
def test_unknown_version_or_payload_is_a_one_line_error(tmp_path, change, fragment):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(load_checkpoint(FIXTURE), path)
    torch.save(torch.load(path, weights_only=True) | change, path)
    with pytest.raises(CheckpointError, match=re.escape(f"checkpoint {path} {fragment}")) as error:
        load_checkpoint(path)
    assert "\n" not in str(error.value)
