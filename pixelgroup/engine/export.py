"""Export an embedding model together with its GBMS loops as one ONNX or TorchScript graph.

The grouping layer is softmax attention (queries = keys = values = the embedding, scale
1/δ²), so the network *and* its T mean-shift loops fit one graph that needs neither Python nor
pixelgroup to run. :class:`GroupingGraph` wraps a model for tracing; :func:`export_onnx` and
:func:`export_torchscript` write it (atomically) with dynamic batch, height and width.

The graph maps ``images (B, C, H, W)`` float32 in [0, 1] (C = 3 except for a toy model built
with other ``in_channels``) to a tuple, in this order (ONNX output names in brackets):

* ``shifted`` (B, D, H_s, W_s): the unit embedding after T GBMS loops of bandwidth δ, run on
  the s x s average-pooled, re-normalised embedding (``stride`` s; H_s = ceil(H_e / s));
* ``embedding`` (B, D, H_e, W_e): the model's own unit embedding, before the loops (what
  ``pixelgroup predict`` groups);
* ``semantic`` (B, num_classes, H_e, W_e): class logits, only for a model with a semantic head.

H_e, W_e follow the model's stride rules (the toy model: H, W; the dense model: about
H / embedding_stride, rounded up). The loops hold a dense N x N kernel (N = H_s·W_s pixels):
O(T·N²·D) time and O(N²) memory per image, which is why ``stride`` (the checkpoint's
``grouping.stride``) pools first. ONNX graphs carry ``num_iters``, ``bandwidth``, ``stride``
and ``outputs`` in their metadata; TorchScript files in the extra file ``pixelgroup.json``.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pixelgroup._atomic import atomic_path
from pixelgroup._checks import check_non_negative_int, check_positive
from pixelgroup.engine.inference import InferenceRunner
from pixelgroup.errors import DataError, InputError
from pixelgroup.models.batchnorm import apply_test_bn, untraceable_batch_norms
from pixelgroup.models.heads import EmbeddingOutput
from pixelgroup.ops.sphere import pool_to_sphere

__all__ = [
    "GroupingGraph",
    "export_gbms_step",
    "export_onnx",
    "export_torchscript",
    "read_metadata",
    "FORMATS",
    "ONNX_OPSET",
]

FORMATS = ("onnx", "torchscript")
ONNX_OPSET = 18
_MIN_WIDTH = 16
_EXAMPLE_SIZE = 64  # height and width of the tracing input; any size works afterwards


def export_gbms_step(x: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """One GBMS step on ``(B, N, D)`` unit rows written with traceable ops only.

    The same update as :func:`pixelgroup.ops.gbms_step` with ``impl="dense"``: the kernel
    ``exp((x_i·x_j - 1)/δ²)`` row-normalised is ``softmax(x xᵀ / δ²)`` (the shift by 1 cancels,
    and softmax subtracts the row maximum, so nothing overflows), then the projection
    ``y / (||y|| + 1e-5)`` back onto the sphere. No input checks, no implementation dispatch:
    :func:`torch.jit.trace` and the ONNX exporter see plain MatMul / Softmax / Div nodes.

    Args:
        x: ``(B, N, D)`` points with unit-norm rows.
        bandwidth: δ > 0.

    Returns:
        ``(B, N, D)`` unit rows.

    Cost: O(B·N²·D) time and a ``(B, N, N)`` kernel in memory.

    Example:
        >>> from pixelgroup.ops import gbms_step, normalize_to_sphere
        >>> x = normalize_to_sphere(torch.randn(1, 50, 3), dim=-1)
        >>> y = gbms_step(x, 0.3, impl="dense")
        >>> bool(torch.allclose(export_gbms_step(x, 0.3), y, atol=1e-5))
        True
    """
    weights = torch.softmax(x @ x.transpose(1, 2) * (1.0 / bandwidth**2), dim=-1)
    dim = x.shape[-1]
    # zero columns up to 16: for D < 16, PyTorch's CPU product (N, N) @ (N, D) summed the N
    # terms with ~1e-4 relative error at N = 16384, at width 16 with ~1e-6 (measured; the
    # tiled op pads the same way); onnxruntime was unaffected either way
    values = F.pad(x, (0, _MIN_WIDTH - dim)) if dim < _MIN_WIDTH else x
    y = (weights @ values)[..., :dim]
    return y / (y.norm(dim=-1, keepdim=True) + 1e-5)


class GroupingGraph(nn.Module):
    """An embedding model followed by T GBMS loops, returning a tuple of tensors for tracing.

    Args:
        model: an embedding model (returns :class:`~pixelgroup.models.EmbeddingOutput`),
            e.g. from :func:`pixelgroup.engine.checkpoint.load_model`; it is put in eval mode
            (the export functions trace a CPU float32 copy and leave ``model`` as it is).
        num_iters: T >= 0 GBMS loops (0: ``shifted`` is the pooled embedding itself).
        bandwidth: δ > 0 of the loops.
        stride: s >= 1; the loops run on the s x s average-pooled, re-normalised embedding.

    Forward: ``images (B, C, H, W)`` -> ``(shifted, embedding)`` or
    ``(shifted, embedding, semantic)`` (see the module docstring for the shapes); which of the
    two is known after the first call as :attr:`output_names`.

    Example:
        >>> from pixelgroup.models import ToyEmbeddingNet
        >>> graph = GroupingGraph(ToyEmbeddingNet(width=4, num_blocks=1), num_iters=2,
        ...                       bandwidth=0.3, stride=2)
        >>> shifted, embedding = graph(torch.rand(1, 3, 16, 20))
        >>> tuple(shifted.shape), tuple(embedding.shape), graph.output_names
        ((1, 3, 8, 10), (1, 3, 16, 20), ('shifted', 'embedding'))
    """

    def __init__(self, model: nn.Module, num_iters: int, bandwidth: float, stride: int = 1) -> None:
        super().__init__()
        self.model = model.eval()
        self.num_iters = check_non_negative_int(num_iters, "num_iters")
        self.bandwidth = check_positive(bandwidth, "bandwidth")
        if check_non_negative_int(stride, "stride") < 1:
            raise InputError(f"stride must be >= 1, got {stride}")
        self.stride = stride
        self.output_names: tuple[str, ...] | None = None
        self.eval()  # exporters re-apply the wrapper's mode to the model (BatchNorm)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(images)
        if not isinstance(out, EmbeddingOutput):
            raise InputError(
                f"{type(self.model).__name__} returns {type(out).__name__}, not an "
                "EmbeddingOutput: only embedding models can be exported with their grouping "
                "loops"
            )
        embedding = out.embedding
        x = pool_to_sphere(embedding, self.stride)
        b, d, h, w = x.shape
        points = x.flatten(2).transpose(1, 2)  # (B, N, D)
        for _ in range(self.num_iters):
            points = export_gbms_step(points, self.bandwidth)
        shifted = points.transpose(1, 2).reshape(b, d, h, w)
        outputs: tuple[torch.Tensor, ...] = (shifted, embedding)
        names: tuple[str, ...] = ("shifted", "embedding")
        if out.semantic is not None:
            outputs, names = outputs + (out.semantic,), names + ("semantic",)
        self.output_names = names
        return outputs

    def metadata(self) -> dict[str, str]:
        """The settings a deployment needs, as strings: num_iters, bandwidth, stride, outputs."""
        return {
            "num_iters": str(self.num_iters),
            "bandwidth": repr(self.bandwidth),
            "stride": str(self.stride),
            "outputs": ",".join(self.output_names or ()),
        }

    def extra_repr(self) -> str:
        return f"num_iters={self.num_iters}, bandwidth={self.bandwidth}, stride={self.stride}"


@contextmanager
def _quiet_tracing() -> Iterator[None]:
    """Silence what tracing says about code that is fine here.

    TracerWarning: the models' input checks read sizes as Python ints (they hold for any
    size); DeprecationWarning / FutureWarning: TorchScript and the TorchScript-based ONNX
    exporter are deprecated in recent PyTorch, yet still the ones that trace these models
    with dynamic sizes.
    """
    with warnings.catch_warnings():
        for category in (torch.jit.TracerWarning, DeprecationWarning, FutureWarning):
            warnings.simplefilter("ignore", category)
        # test_bn="batch": per-image statistics are instance_norm with input statistics, meant
        warnings.filterwarnings("ignore", message=".*operator 'instance_norm' is set to train")
        yield


def _example_images(in_channels: int, example: torch.Tensor | None) -> torch.Tensor:
    if example is not None:
        if not isinstance(example, torch.Tensor) or example.dim() != 4:
            raise InputError(
                "example must be an images tensor (B, C, H, W), got "
                f"{tuple(example.shape) if isinstance(example, torch.Tensor) else example!r}"
            )
        return example.to("cpu", torch.float32)
    # batch 2, not 1: an exporter specialises a dimension of size 1 to a constant
    generator = torch.Generator().manual_seed(0)
    return torch.rand(2, in_channels, _EXAMPLE_SIZE, _EXAMPLE_SIZE, generator=generator)


def _graph(
    model: nn.Module,
    num_iters: int,
    bandwidth: float,
    stride: int,
    example: torch.Tensor,
    test_bn: str = "running",
) -> GroupingGraph:
    """A checked GroupingGraph of a CPU float32 copy of ``model`` (BatchNorm as ``test_bn``),
    run once on ``example``."""
    model = copy.deepcopy(model).to("cpu", torch.float32)  # leave the caller's model alone
    if test_bn == "batch" and (layers := untraceable_batch_norms(model)):
        kind = type(model.get_submodule(layers[0])).__name__
        raise InputError(
            f"test_bn='batch' exports per-image BatchNorm as instance normalisation, which "
            f"needs torch's BatchNorm classes; {layers[0]} is a {kind} (export with "
            f"test_bn='running')"
        )
    graph = GroupingGraph(apply_test_bn(model, test_bn), num_iters, bandwidth, stride).eval()
    InferenceRunner(graph)(example)  # fails early (one message) for a non-embedding model
    return graph


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    num_iters: int,
    bandwidth: float,
    stride: int = 1,
    example: torch.Tensor | None = None,
    opset_version: int = ONNX_OPSET,
    test_bn: str = "running",
    in_channels: int = 3,
) -> Path:
    """Write the :class:`GroupingGraph` of ``model`` as an ONNX file (all-or-nothing).

    Args:
        model: an embedding model (see :class:`GroupingGraph`).
        path: the ``.onnx`` file to write (weights inside the file, so models up to 2 GB).
        num_iters: T >= 0.
        bandwidth: δ > 0.
        stride: s >= 1, the pooling before the loops.
        example: images ``(B, C, H, W)`` to trace with (default: two random 64 x 64 images);
            the graph accepts any B, H, W afterwards (input ``images``, dynamic axes
            ``batch``, ``height``, ``width``).
        opset_version: ONNX opset (>= 17).
        test_bn: the checkpoint's ``model.test_bn``: ``"running"`` BatchNorm statistics, or
            ``"batch"`` (each image normalised by its own statistics, as ``pixelgroup eval``
            and ``predict`` do for it; the graph then holds instance normalisations).
        in_channels: C of the default example images (the task's ``in_channels(cfg)``).

    Returns:
        ``path``. The graph's outputs are named as in :attr:`GroupingGraph.output_names`;
        its metadata holds :meth:`GroupingGraph.metadata`.

    Needs the ``export`` extra (``onnx``; ``onnxruntime`` to run the file).
    """
    if opset_version < 17:
        raise InputError(f"opset_version must be >= 17, got {opset_version}")
    example = _example_images(in_channels, example)
    graph = _graph(model, num_iters, bandwidth, stride, example, test_bn)
    try:
        import onnx
    except ImportError as e:
        raise ImportError(
            "ONNX export needs the 'export' extra: pip install 'pixelgroup[export]'"
        ) from e
    names = graph.output_names or ()
    # outputs get their own height / width symbols: H_e and H_s differ from the input's H
    axes = {"images": {0: "batch", 2: "height", 3: "width"}}
    axes |= {n: {0: "batch", 2: f"{n}_height", 3: f"{n}_width"} for n in names}
    path = Path(path)
    with _quiet_tracing(), atomic_path(path) as tmp:
        # the TorchScript-based exporter (dynamo=False) is deprecated, but torch.export's
        # specialises H and W to the example's at the toy model's coordinate channels
        # (torch.linspace of a symbolic size) and takes ~30x longer; this one keeps them dynamic
        torch.onnx.export(
            graph,
            (example,),
            str(tmp),
            input_names=["images"],
            output_names=list(names),
            dynamic_axes=axes,
            opset_version=opset_version,
            dynamo=False,
        )
        proto = onnx.load(str(tmp))
        for key, value in graph.metadata().items():
            proto.metadata_props.add(key=key, value=value)
        onnx.save(proto, str(tmp))
    return path


def export_torchscript(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    num_iters: int,
    bandwidth: float,
    stride: int = 1,
    example: torch.Tensor | None = None,
    test_bn: str = "running",
    in_channels: int = 3,
) -> Path:
    """Write the :class:`GroupingGraph` of ``model`` as a traced TorchScript file.

    Args:
        model: an embedding model (see :class:`GroupingGraph`).
        path: the file to write (conventionally ``.pt``); load it with
            ``torch.jit.load(path)``; it returns the tuple of :class:`GroupingGraph`.
        num_iters: T >= 0.
        bandwidth: δ > 0.
        stride: s >= 1, the pooling before the loops.
        example: images ``(B, C, H, W)`` to trace with (default: two random 64 x 64 images);
            the traced module accepts any B, H, W afterwards.
        test_bn, in_channels: as :func:`export_onnx`.

    Returns:
        ``path``. :meth:`GroupingGraph.metadata` is stored as the extra file
        ``pixelgroup.json`` (read it with ``torch.jit.load(path, _extra_files=...)``).
    """
    example = _example_images(in_channels, example)
    graph = _graph(model, num_iters, bandwidth, stride, example, test_bn)
    extra = {"pixelgroup.json": json.dumps(graph.metadata())}
    path = Path(path)
    with _quiet_tracing(), torch.no_grad(), atomic_path(path) as tmp:
        traced = torch.jit.trace(graph, (example,), check_trace=False)
        torch.jit.save(traced, str(tmp), _extra_files=extra)
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The settings stored with an exported file (ONNX or TorchScript), typed.

    Returns ``{"num_iters": int, "bandwidth": float, "stride": int, "outputs": [names]}``.
    """
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        raw = {
            p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props
        }
    else:
        files = {"pixelgroup.json": ""}
        with _quiet_tracing():
            torch.jit.load(str(path), map_location="cpu", _extra_files=files)
        raw = json.loads(files["pixelgroup.json"])
    return _typed(raw)


def _typed(raw: dict[str, str]) -> dict[str, Any]:
    missing = [k for k in ("num_iters", "bandwidth", "stride", "outputs") if k not in raw]
    if missing:
        raise DataError(f"not a pixelgroup export (metadata lacks {', '.join(missing)})")
    outputs: Sequence[str] = raw["outputs"].split(",") if raw["outputs"] else []
    return {
        "num_iters": int(raw["num_iters"]),
        "bandwidth": float(raw["bandwidth"]),
        "stride": int(raw["stride"]),
        "outputs": list(outputs),
    }
