"""``pixelgroup export``: both formats from a tiny checkpoint, defaults, and one-line errors."""

import pytest
import torch

from pixelgroup.cli import main
from pixelgroup.engine.checkpoint import load_checkpoint, load_model, save_checkpoint
from pixelgroup.engine.export import read_metadata
from pixelgroup.models import BoundaryNet, apply_test_bn
from pixelgroup.ops import recurrent_mean_shift
from tests._cli import one_line_error
from tests.engine.test_export import GROUPING, tiny_checkpoint

ort = pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("export_cli"))


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "pixelgroup export --checkpoint" in out


def test_onnx_with_the_checkpoints_grouping_settings(checkpoint, tmp_path, capsys):
    out = tmp_path / "sub" / "tiny.onnx"
    args = ["export", "--checkpoint", str(checkpoint), "--format", "onnx", "-o", str(out)]
    assert main(args) == 0
    assert f"onnx: {out}" in capsys.readouterr().out
    meta = read_metadata(out)
    # the toy model's embedding is at the image's size: stride 8 keeps 512 x 512 at 64 x 64
    assert (meta["num_iters"], meta["bandwidth"], meta["stride"]) == (
        GROUPING["num_iters"],
        GROUPING["bandwidth"],
        8,
    )
    assert main(args) == 2  # the file exists now
    one_line_error(capsys, "exists; pass --overwrite")
    before = out.stat().st_mtime_ns
    assert main([*args, "--overwrite", "--num-iters", "1"]) == 0
    assert out.stat().st_mtime_ns >= before and read_metadata(out)["num_iters"] == 1
    assert [p.name for p in out.parent.iterdir()] == ["tiny.onnx"]  # no temp files left


def test_torchscript_with_explicit_settings(checkpoint, tmp_path):
    out = tmp_path / "tiny.pt"
    args = ["export", "--checkpoint", str(checkpoint), "--format", "torchscript", "-o", str(out)]
    assert main([*args, "--num-iters", "2", "--bandwidth", "0.3", "--stride", "1"]) == 0
    images = torch.rand(2, 3, 20, 28, generator=torch.Generator().manual_seed(0))
    shifted, embedding = torch.jit.load(str(out))(images)
    model, _, _ = load_model(checkpoint)
    with torch.no_grad():
        expected = model(images).embedding
    points = expected.flatten(2).transpose(1, 2)
    last = recurrent_mean_shift(points, 0.3, 2)[-1].transpose(1, 2).reshape(expected.shape)
    assert (embedding - expected).abs().max() <= 1e-4 and (shifted - last).abs().max() <= 1e-4
    assert read_metadata(out)["bandwidth"] == 0.3


@pytest.fixture(scope="module")
def batch_bn_checkpoint(checkpoint, tmp_path_factory):
    """The tiny checkpoint with ``model.test_bn: batch`` and running means far from any
    image's, so per-image and running statistics give clearly different embeddings."""
    state = load_checkpoint(checkpoint)
    state["config"]["model"]["test_bn"] = "batch"
    for key, value in state["model"].items():
        if key.endswith("running_mean"):
            value.fill_(0.5)
    path = tmp_path_factory.mktemp("batch_bn") / "checkpoint.pt"
    save_checkpoint(state, path)
    return path


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_normalises_as_the_checkpoints_test_bn(batch_bn_checkpoint, tmp_path, fmt, capsys):
    """The exported graph gives what ``pixelgroup eval`` gives for ``model.test_bn: batch``
    (each image normalised by its own BatchNorm statistics), not the running statistics'."""
    out = tmp_path / ("m.onnx" if fmt == "onnx" else "m.pt")
    args = ["export", "--checkpoint", str(batch_bn_checkpoint), "--format", fmt, "-o", str(out)]
    assert main([*args, "--num-iters", "0"]) == 0
    assert "test_bn=batch" in capsys.readouterr().out
    images = torch.rand(3, 3, 20, 28, generator=torch.Generator().manual_seed(0))
    if fmt == "onnx":
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(["embedding"], {"images": images.numpy()})[0])
    else:
        got = torch.jit.load(str(out))(images)[1]
    model, cfg, _ = load_model(batch_bn_checkpoint)
    assert cfg.model.test_bn == "batch"
    with torch.no_grad():
        expected = apply_test_bn(model, "batch")(images).embedding
        running = model(images).embedding
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert (running - expected).abs().max() > 1e-2


@pytest.fixture(scope="module")
def boundary_checkpoint(checkpoint, tmp_path_factory):
    """A checkpoint of the boundary task, whose BoundaryNet is not an embedding model."""
    state = load_checkpoint(checkpoint)
    state["config"]["task"] = "boundary"
    state["config"]["model"] = {"name": "boundary", "options": {"backbone": "efficientnet_lite0"}}
    state["model"] = BoundaryNet("efficientnet_lite0").state_dict()
    path = tmp_path_factory.mktemp("boundary") / "checkpoint.pt"
    save_checkpoint(state, path)
    return path


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--format", "tflite"], "--format must be one of onnx, torchscript, got 'tflite'"),
        (["--num-iters", "-1"], "--num-iters must be >= 0, got -1"),
        (["--bandwidth", "0"], "--bandwidth must be a finite number > 0, got 0.0"),
        (["--bandwidth", "-0.5"], "--bandwidth must be a finite number > 0, got -0.5"),
        (["--stride", "0"], "--stride must be >= 1, got 0"),
    ],
)
def test_bad_arguments(checkpoint, tmp_path, capsys, extra, fragment):
    out = tmp_path / "x.onnx"
    args = ["export", "--checkpoint", str(checkpoint), "--format", "onnx", "-o", str(out)]
    assert main(args + extra) == 2
    one_line_error(capsys, fragment)
    assert not out.exists()


def test_bad_paths(checkpoint, boundary_checkpoint, tmp_path, capsys):
    def export(ckpt, out):
        return main(["export", "--checkpoint", str(ckpt), "--format", "onnx", "-o", str(out)])

    assert export(tmp_path / "missing.pt", tmp_path / "x.onnx") == 2
    one_line_error(capsys, f"checkpoint not found: {tmp_path / 'missing.pt'}")
    (tmp_path / "file.txt").write_text("")
    assert export(checkpoint, tmp_path / "file.txt" / "x.onnx") == 2
    one_line_error(capsys, "is a file, not a folder")
    assert export(checkpoint, tmp_path) == 2
    one_line_error(capsys, "is a folder; give a file name")
    assert export(boundary_checkpoint, tmp_path / "b.onnx") == 2
    err = one_line_error(capsys, "(task 'boundary'): BoundaryNet returns BoundaryOutput")
    assert "only embedding models" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]
