"""Exported graphs (ONNX via onnxruntime, TorchScript) against the model + GBMS in PyTorch."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from torch import nn

from pixelgroup.cli import main
from pixelgroup.data.io import read_image
from pixelgroup.engine.checkpoint import load_model
from pixelgroup.engine.export import (
    GroupingGraph,
    export_gbms_step,
    export_onnx,
    export_torchscript,
    read_metadata,
)
from pixelgroup.models import ToyEmbeddingNet
from pixelgroup.ops import gbms_step, normalize_to_sphere, recurrent_mean_shift
from pixelgroup.postprocess import group_pixels
from tests._tiny import TINY

ort = pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")

NUM_ITERS, BANDWIDTH = 3, 0.2
# well-separated groups, so float32 rounding rarely moves a pixel across a threshold
GROUPING = {"bandwidth": 0.2, "num_iters": 5, "min_area": 8, "stride": 1}
SHAPES = [(1, 24, 40), (3, 24, 40), (1, 48, 30), (3, 48, 30)]  # (B, H, W)


def tiny_checkpoint(root):
    """The toy config trained for 2 iterations: ``root/run/checkpoint.pt``."""
    values = {k: dict(v) for k, v in TINY.items()}
    values["train"] = {"epochs": 1, "iters_per_epoch": 2}
    values["grouping"] = dict(GROUPING)
    (root / "tiny.yaml").write_text(yaml.safe_dump(values))
    args = ["train", "--config", str(root / "tiny.yaml"), "-o", str(root / "run"), "--quiet"]
    assert main(args) == 0
    return root / "run" / "checkpoint.pt"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    model, cfg, _ = load_model(tiny_checkpoint(root))
    settings = {"num_iters": NUM_ITERS, "bandwidth": BANDWIDTH}
    onnx_path = export_onnx(model, root / "tiny.onnx", **settings)
    ts_path = export_torchscript(model, root / "tiny.pt", **settings)
    return model, cfg, onnx_path, ts_path, root


def _reference(model, images, num_iters=NUM_ITERS, bandwidth=BANDWIDTH, stride=1):
    """The model, then recurrent_mean_shift in float32: (shifted, embedding)."""
    with torch.no_grad():
        embedding = model(images).embedding
        x = embedding
        if stride > 1:
            x = normalize_to_sphere(F.avg_pool2d(embedding, stride, ceil_mode=True), dim=1)
        b, d, h, w = x.shape
        points = x.flatten(2).transpose(1, 2)
        last = recurrent_mean_shift(points, bandwidth, num_iters)[-1]
    return last.transpose(1, 2).reshape(b, d, h, w), embedding


def _run_onnx(path, images):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": images.numpy()})


def test_gbms_step_matches_the_op():
    x = normalize_to_sphere(torch.randn(2, 60, 4, generator=torch.Generator().manual_seed(0)), -1)
    for impl in ("dense", "tiled"):
        torch.testing.assert_close(export_gbms_step(x, 0.15), gbms_step(x, 0.15, impl=impl))


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_onnx_and_torchscript_reproduce_pytorch(exported, shape):
    model, _, onnx_path, ts_path, _ = exported
    b, h, w = shape
    images = torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(h + b))
    shifted, embedding = _reference(model, images)
    assert shifted.shape == embedding.shape == (b, 3, h, w)
    on_shifted, on_embedding = _run_onnx(onnx_path, images)
    ts_shifted, ts_embedding = torch.jit.load(str(ts_path))(images)
    for got in (torch.from_numpy(on_shifted), ts_shifted):
        assert (got - shifted).abs().max() <= 1e-4
    for got in (torch.from_numpy(on_embedding), ts_embedding):
        assert (got - embedding).abs().max() <= 1e-4
    assert (torch.from_numpy(on_shifted).norm(dim=1) - 1).abs().max() < 1e-4


def test_metadata_travels_with_the_files(exported):
    _, _, onnx_path, ts_path, _ = exported
    expected = {
        "num_iters": NUM_ITERS,
        "bandwidth": BANDWIDTH,
        "stride": 1,
        "outputs": ["shifted", "embedding"],
    }
    assert read_metadata(onnx_path) == read_metadata(ts_path) == expected
    names = [o.name for o in ort.InferenceSession(str(onnx_path)).get_outputs()]
    assert names == ["shifted", "embedding"]


def test_group_pixels_on_the_export_gives_predicts_instances(exported, tmp_path):
    model, cfg, onnx_path, ts_path, root = exported
    rgb = np.zeros((40, 48, 3), np.uint8)
    rgb[5:20, 5:15], rgb[22:35, 30:44] = (250, 40, 40), (40, 250, 40)
    Image.fromarray(rgb).save(tmp_path / "digits.png")
    ckpt = str(root / "run" / "checkpoint.pt")
    args = ["predict", "--checkpoint", ckpt, str(tmp_path / "digits.png"), "-o", str(tmp_path)]
    assert main([*args, "--quiet"]) == 0
    predicted = torch.from_numpy(
        np.asarray(Image.open(tmp_path / "digits_labels.png")).astype(np.int64)
    )
    images = read_image(tmp_path / "digits.png")[None]
    g = cfg.grouping
    kwargs = {
        "bandwidth": g.bandwidth,
        "num_iters": g.num_iters,
        "threshold": g.threshold,
        "min_area": g.min_area,
        "max_points": g.max_points,
    }
    # group_pixels takes tensors, so onnxruntime's numpy output goes through from_numpy
    on_embedding = torch.from_numpy(_run_onnx(onnx_path, images)[1][0])
    ts_embedding = torch.jit.load(str(ts_path))(images)[1][0]
    # TorchScript runs the same kernels as predict: the very same instances
    assert torch.equal(group_pixels(ts_embedding, **kwargs).labels, predicted)
    # onnxruntime's float32 rounding (~1e-6) may move a border pixel, no more
    on_labels = group_pixels(on_embedding, **kwargs).labels
    assert (on_labels == predicted).float().mean() >= 0.99
    assert len(predicted.unique()) > 1
    # the shifted output groups directly (its loops already ran in the graph)
    shifted = torch.from_numpy(_run_onnx(onnx_path, images)[0][0])
    grouped = group_pixels(shifted, bandwidth=BANDWIDTH, num_iters=0, min_area=g.min_area)
    assert grouped.labels.shape == predicted.shape


def test_pooling_stride_and_semantic_output(tmp_path):
    torch.manual_seed(0)
    model = ToyEmbeddingNet(width=4, num_blocks=1, num_classes=5).eval()
    path = export_onnx(model, tmp_path / "sem.onnx", num_iters=2, bandwidth=0.3, stride=2)
    images = torch.rand(2, 3, 21, 30)
    shifted, embedding = _reference(model, images, num_iters=2, bandwidth=0.3, stride=2)
    with torch.no_grad():
        semantic = model(images).semantic
    got = _run_onnx(path, images)
    assert [g.shape for g in got] == [(2, 3, 11, 15), (2, 3, 21, 30), (2, 5, 21, 30)]
    for ours, ref in zip(got, (shifted, embedding, semantic), strict=True):
        assert np.abs(ours - ref.numpy()).max() <= 1e-4
    assert read_metadata(path)["outputs"] == ["shifted", "embedding", "semantic"]


class _NotEmbedding(nn.Module):
    def forward(self, images):
        return images.mean(dim=1, keepdim=True)


def test_errors(tmp_path):
    model = ToyEmbeddingNet(width=4, num_blocks=1)
    with pytest.raises(ValueError, match="only embedding models"):
        export_onnx(_NotEmbedding(), tmp_path / "x.onnx", num_iters=1, bandwidth=0.1)
    with pytest.raises(ValueError, match="num_iters must be >= 0, got -1"):
        GroupingGraph(model, num_iters=-1, bandwidth=0.1)
    with pytest.raises(ValueError, match="bandwidth must be a finite number > 0, got 0"):
        export_torchscript(model, tmp_path / "x.pt", num_iters=1, bandwidth=0)
    with pytest.raises(ValueError, match="stride must be >= 1, got 0"):
        GroupingGraph(model, num_iters=1, bandwidth=0.1, stride=0)
    with pytest.raises(ValueError, match="opset_version must be >= 17"):
        export_onnx(model, tmp_path / "x.onnx", num_iters=1, bandwidth=0.1, opset_version=13)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temp file


@pytest.mark.parametrize("embedding", ["free", "spatial"])
def test_unet_exports_keep_height_and_width_dynamic(tmp_path, embedding):
    """Images larger than the 64 x 64 tracing example, and of odd sizes, come out at their
    own size (the U-Net's padding and cropping, the spatial head's positions are traced from
    the input's shape, not baked in as numbers)."""
    from pixelgroup.models import UNetEmbeddingNet

    torch.manual_seed(0)
    model = UNetEmbeddingNet(embedding_dim=8, width=4, depth=3, embedding=embedding).eval()
    onnx_path = export_onnx(model, tmp_path / "u.onnx", num_iters=0, bandwidth=0.2)
    ts_path = export_torchscript(model, tmp_path / "u.pt", num_iters=0, bandwidth=0.2)
    for h, w in ((96, 80), (65, 37)):
        images = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(h))
        with torch.no_grad():
            expected = model(images).embedding
        got_onnx = torch.from_numpy(_run_onnx(onnx_path, images)[1])
        got_ts = torch.jit.load(str(ts_path))(images)[1]
        for got in (got_onnx, got_ts):
            assert got.shape == (1, 8, h, w)
            assert (got - expected).abs().max() <= 1e-4
