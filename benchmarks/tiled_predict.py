"""Tiled prediction: how far tiles are from the whole image, and what they cost.

Two tables (docs/large_images.md):

* ``halo``: per model, the largest |tiled - whole| of the embedding (and of the semantic
  logits) over every pixel, per halo, tiles of 128 px on a 384 x 384 random image; models
  built from a shipped config (weights at initialisation, every conv weight drawn again with
  std 1 / sqrt(fan-in) so that each output depends on its whole receptive field) or read from
  a checkpoint (``--checkpoint``).
* ``radius``: per model (a shipped config, weights drawn again as for ``halo``), how far the
  outputs that change with one input pixel at the centre of a random image reach: the halo
  from which tiles see everything their cores depend on.
* ``agreement``: tiled labels against the whole image's as partitions
  (``partition_agreement``), per tile / halo, on toy canvases (``--images toy``: 12 of the
  val split) or a synthetic cells image (``--images cells``, ``--side`` px a side).
* ``speed``: per image size, one fresh process each (peak RSS by ``getrusage`` is per
  process), one thread: the time of the model and the grouping (no files written) of a
  synthetic cells image (``draw_cells``, a 512 px one repeated), whole and tiled, the
  megapixels per second, the peak RSS, and how far the tiled labels are from the whole
  image's (``partition_agreement``) where both ran.

    python benchmarks/tiled_predict.py halo --config toy --config cells --config coco_instances
    python benchmarks/tiled_predict.py halo --checkpoint tests/fixtures/toy_demo.pt
    python benchmarks/tiled_predict.py radius --config toy --config cells --config coco_instances
    python benchmarks/tiled_predict.py agreement --checkpoint tests/fixtures/toy_demo.pt \
        --images toy --tiles 16:32 32:32 48:32 32:64
    python benchmarks/tiled_predict.py agreement --checkpoint CKPT --images cells --side 512
    python benchmarks/tiled_predict.py speed --checkpoint CKPT --sizes 512 1024 2048 \\
        --tile 512 --halo 64
    python benchmarks/tiled_predict.py large --checkpoint tests/fixtures/cells_small.pt \\
        --sizes 2048 8192 1024x20480 --tile 512 --halo 64

* ``large``: per image size, ``pixelgroup predict --lazy`` as a library call
  (``predict_files(lazy=True)``) in a fresh process, one thread: a tiled BigTIFF of synthetic
  nuclei (a 512 px ``draw_cells`` block repeated, written block by block) read window by
  window, its labels written tile by tile to a tiled BigTIFF; wall time, megapixels per
  second and peak RSS (``getrusage``) of the whole call, reading and writing included; up to
  ``--eager-max`` pixels also read whole (``lazy=False``: label PNG, overlay, COCO JSON);
  each on every number of ``--threads``; ``--max-size N``: the model sees each image shrunk to
  N px a side (read and resized window by window, ``data/resized_windows.py``), with
  ``--zoom Z`` nuclei drawn Z times larger and the model seeing the image at 1 / Z (their
  training scale; ``--max-size`` 0).
* ``join``: the same without the model (what grows with the image besides the windows):
  each tile's regions labelled with the true nuclei, joined and written
  (``write_tiled_labels``: spill, BigTIFF, GeoJSON); time and peak RSS per size.

    python benchmarks/tiled_predict.py join --sizes 2048 8192 20480
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HALOS = (0, 16, 32, 48, 64, 96, 128)


def _model(config: str | None, checkpoint: str | None, overrides: tuple[str, ...] = ()):
    """-> (model, cfg): a checkpoint's, or a config's (with ``overrides``) weights drawn again."""
    import torch

    from pixelgroup.config import ExperimentConfig, load_config, override_config, resolve_config
    from pixelgroup.engine import load_model
    from pixelgroup.models import redraw_conv_weights
    from pixelgroup.tasks import get_task

    if checkpoint is not None:
        model, cfg, _ = load_model(checkpoint)
        return model, cfg
    cfg = override_config(load_config(ExperimentConfig, resolve_config(str(config))), overrides)
    if cfg.model.options.get("pretrained"):  # its weights are drawn again below anyway
        cfg = override_config(cfg, ["model.options.pretrained=false"])
    torch.manual_seed(0)
    return redraw_conv_weights(get_task(cfg.task).build_model(cfg)), cfg


def radius_table(configs: list[str], overrides: list[str], side: int) -> None:
    """Per config (weights drawn again, ``overrides`` applied), how far one input pixel
    reaches in each output (``pixelgroup.models.receptive_radius`` on a ``side`` px random
    image): a tile whose halo is at least this sees every input its core depends on."""
    import torch

    from pixelgroup.models import receptive_radius

    torch.set_num_threads(1)
    print("| model | output | radius (px) |")
    print("|---|---|---|")
    for config in configs:
        model, cfg = _model(config, None, tuple(overrides))
        options = ", ".join(f"{k} {v}" for k, v in sorted(cfg.model.options.items()))
        for name, radius in receptive_radius(model, side).items():
            print(f"| {config} ({options}) | {name} | {radius} |", flush=True)


def halo_table(
    configs: list[str], checkpoints: list[str], tile: int, side: int, halos: list[int]
) -> None:
    import torch

    from pixelgroup.engine.inference import InferenceRunner

    torch.set_num_threads(1)
    images = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    print(f"| model | {' | '.join(f'halo {h}' for h in halos)} |")
    print(f"|---|{'---|' * len(halos)}")
    sources = [(c, None) for c in configs] + [(None, p) for p in checkpoints]
    for config, checkpoint in sources:
        model, cfg = _model(config, checkpoint)
        run = InferenceRunner.from_config(model, cfg)
        whole = run(images)
        cells = []
        for halo in halos:
            tiled = run(images, tile=tile, halo=halo)
            diff = (tiled.embedding - whole.embedding).abs().max().item()
            if whole.semantic is not None:
                semantic = (tiled.semantic - whole.semantic).abs().max().item()
                cells.append(f"{diff:.1e} / {semantic:.1e}")
            else:
                cells.append(f"{diff:.1e}")
        name = config or checkpoint
        print(f"| {name} ({cfg.model.name}) | {' | '.join(cells)} |", flush=True)


def _cells_image(side: int, diameter: tuple[float, float] = (12.0, 36.0)):
    """``(1, 3, side, side)`` synthetic nuclei in [0, 1] ``diameter`` px across, crowded as the
    256 x 256 default (60 nuclei of 12-36 px: one nucleus per 1,100 px at a mean diameter of
    24 px, scaled with its square); past 512 px a 512 px image repeated (placing nuclei costs
    O(count²))."""
    import torch

    image = torch.from_numpy(_cells(side, diameter)[0].astype(np.float32) / 235.0).clamp(0, 1)
    return image.expand(3, side, side)[None]


def _cells(side: int, diameter: tuple[float, float]):  # -> (side, side) uint16 image, ids
    from pixelgroup.data.synthetic_cells import draw_cells

    block = min(side, 512)
    per_nucleus = 1100 * (sum(diameter) / 2 / 24) ** 2
    count = round(block * block / per_nucleus)
    cells = draw_cells(np.random.default_rng(0), (block, block), count=count, diameter=diameter)
    reps = -(-side // block)
    image = np.tile(cells.image, (reps, reps))[:side, :side]
    copy = np.kron(np.arange(reps * reps).reshape(reps, reps), np.ones((block, block), int))
    ids = np.tile(cells.instance.astype(np.int64), (reps, reps))
    truth = np.where(ids > 0, ids + copy * (int(ids.max()) + 1), 0)[:side, :side]
    return image, np.unique(truth, return_inverse=True)[1].reshape(side, side)


def agreement_table(
    checkpoint: str,
    images: str,
    side: int,
    tiles: list[str],
    max_points: str | None,
    diameter: tuple[float, float] = (12.0, 36.0),
) -> None:
    """``max_points``: ``grouping.max_points`` for both (``none``: every point shifted, exact
    mean shift); None: the checkpoint's. ``diameter``: of the cells image's nuclei. Beside
    the agreement, AP50 and AP70 of the tiled labels against the images' ground truth, and
    the largest difference from the whole image's."""
    import dataclasses

    import torch

    from pixelgroup.data.toy import ToyDigits
    from pixelgroup.engine import load_model, predict_image
    from pixelgroup.engine.inference import InferenceRunner
    from pixelgroup.metrics.instance import InstanceEvaluator, InstancePrediction, InstanceTarget
    from pixelgroup.metrics.partition import partition_agreement
    from pixelgroup.tasks import get_task

    def ap(predictions, truths) -> tuple[float, float]:
        evaluator = InstanceEvaluator()
        targets = [InstanceTarget(t) for t in truths]
        evaluator.process([InstancePrediction(*p) for p in predictions], targets)
        metrics = evaluator.evaluate()
        return metrics["AP50"], metrics["AP70"]

    torch.set_num_threads(1)
    model, cfg, _ = load_model(checkpoint)
    if max_points is not None:
        points = None if max_points == "none" else int(max_points)
        cfg = dataclasses.replace(
            cfg, grouping=dataclasses.replace(cfg.grouping, max_points=points)
        )
    task, run = get_task(cfg.task), InferenceRunner.from_config(model, cfg)
    if images == "toy":
        canvases = ToyDigits("val", 12)
        batch = [canvases[i].image[None] for i in range(12)]
        truths = [canvases[i].instance.numpy() for i in range(12)]
    else:
        import tempfile

        import tifffile

        image, truth = _cells(side, diameter)
        with tempfile.TemporaryDirectory() as tmp:  # read as predict reads a 16-bit TIFF
            tifffile.imwrite(f"{tmp}/cells.tif", image)
            batch, truths = [task.read_image(cfg, Path(f"{tmp}/cells.tif"))[None]], [truth]
    wholes = [predict_image(task, cfg, run, image[0], tile=0) for image in batch]
    whole_ap = ap(wholes, truths)
    print(f"whole image: AP50 {whole_ap[0]:.4f}, AP70 {whole_ap[1]:.4f}")
    print("| tile / halo | agreement: min | mean | largest score difference | AP50 | AP70 |")
    print("|---|---|---|---|---|---|")
    for spec in tiles:
        tile, halo = (int(v) for v in spec.split(":"))
        got, score_diff, tiled = [], 0.0, []
        for image, (whole, whole_scores) in zip(batch, wholes, strict=True):
            labels, scores = predict_image(task, cfg, run, image[0], tile=tile, halo=halo)
            tiled.append((labels, scores))
            got.append(partition_agreement(labels, whole))
            score_diff = max(score_diff, _score_difference(labels, scores, whole, whole_scores))
        ap50, ap70 = ap(tiled, truths)
        print(
            f"| {tile} / {halo} | {min(got):.5f} | {sum(got) / len(got):.5f} | {score_diff:.1e} "
            f"| {ap50:.4f} ({ap50 - whole_ap[0]:+.4f}) | {ap70:.4f} ({ap70 - whole_ap[1]:+.4f}) |",
            flush=True,
        )


def _score_difference(labels, scores, whole, whole_scores) -> float:
    """Largest |score| difference between each instance of ``whole`` and the instance of
    ``labels`` that overlaps it most."""
    import torch

    pairs, counts = torch.unique(
        torch.stack([whole.flatten(), labels.flatten()]), dim=1, return_counts=True
    )
    keep = (pairs[0] > 0) & (pairs[1] > 0)
    pairs, counts = pairs[:, keep], counts[keep]
    diff = 0.0
    for k in pairs[0].unique().tolist():
        mine = pairs[0] == k
        j = int(pairs[1][mine][counts[mine].argmax()])
        diff = max(diff, abs(float(whole_scores[k - 1]) - float(scores[j - 1])))
    return diff


def _one(checkpoint: str, side: int, tile: int, halo: int, compare: bool) -> None:
    """One size in this process: print a JSON line of time, peak RSS, agreement."""
    import torch

    from pixelgroup.engine import load_model, predict_image
    from pixelgroup.engine.inference import InferenceRunner
    from pixelgroup.metrics.partition import partition_agreement
    from pixelgroup.tasks import get_task

    torch.set_num_threads(1)
    model, cfg, _ = load_model(checkpoint)
    task, run = get_task(cfg.task), InferenceRunner.from_config(model, cfg)
    image = _cells_image(side)
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    labels, _ = predict_image(task, cfg, run, image[0], tile=tile, halo=halo)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    agreement = None
    if compare:
        whole, _ = predict_image(task, cfg, run, image[0], tile=0)
        agreement = partition_agreement(labels, whole)
    print(
        json.dumps(
            {
                "side": side,
                "tile": tile,
                "seconds": seconds,
                "mpix_per_s": side * side / 1e6 / seconds,
                "peak_mib": peak,
                "loaded_mib": loaded,
                "instances": int(labels.max()),
                "agreement": agreement,
            }
        )
    )


def speed_table(checkpoint: str, sizes: list[int], tile: int, halo: int, whole_max: int) -> None:
    print(
        "| side | whole s | whole MP/s | whole peak MiB | tiled s | tiled MP/s | "
        "tiled peak MiB | agreement |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for side in sizes:
        rows = {}
        for t in (0, tile):
            if t == 0 and side > whole_max:
                continue
            compare = t != 0 and side <= whole_max
            cmd = [sys.executable, __file__, "one", checkpoint, str(side), str(t), str(halo)]
            out = subprocess.run(
                [*cmd, "--compare"] if compare else cmd,
                capture_output=True,
                text=True,
                check=True,
            )
            rows[t] = json.loads(out.stdout.strip().splitlines()[-1])
        w, tl = rows.get(0), rows[tile]
        whole = (
            f"{w['seconds']:.1f} | {w['mpix_per_s']:.3f} | {w['peak_mib']:.0f}"
            if w
            else "- | - | -"
        )
        agree = "-" if tl["agreement"] is None else f"{tl['agreement']:.5f}"
        print(
            f"| {side} | {whole} | {tl['seconds']:.1f} | {tl['mpix_per_s']:.3f} | "
            f"{tl['peak_mib']:.0f} | {agree} |",
            flush=True,
        )


def _write_slide(path: str, size: tuple[int, int], zoom: int = 1) -> None:
    """A ``size = (H, W)`` uint16 tiled BigTIFF of synthetic nuclei (``zoom`` x larger than
    ``draw_cells`` draws them: each pixel repeated), written block by block."""
    import tifffile

    from pixelgroup.data.synthetic_cells import draw_cells

    side = 512 // zoom
    count = max(1, side * side // 1100)  # one at least: a blank slide would be no test
    block = draw_cells(np.random.default_rng(0), (side, side), count=count).image
    block = np.kron(block.astype(np.uint16) * 200, np.ones((zoom, zoom), dtype=np.uint16))

    def blocks():
        for top in range(0, size[0], 512):
            for left in range(0, size[1], 512):
                yield block[: min(512, size[0] - top), : min(512, size[1] - left)]

    tifffile.imwrite(path, blocks(), shape=size, dtype=np.uint16, tile=(512, 512), bigtiff=True)


def _one_large(
    checkpoint: str, image: str, tile: int, halo: int, lazy: bool, threads: int, max_size: int
) -> None:
    """``predict_files(lazy=lazy, max_size=max_size)`` of one image in this process on
    ``threads`` threads: a JSON line (the load average over the call's last minute
    included)."""
    import os
    import tempfile

    import torch

    from pixelgroup.data.io import image_size
    from pixelgroup.engine import load_model, predict_files

    torch.set_num_threads(threads)
    model, cfg, _ = load_model(checkpoint)
    size = image_size(image)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(image)) as out:  # beside the image
        start = time.perf_counter()
        predict_files(
            model,
            cfg,
            [image],
            out,
            progress=False,
            max_size=max_size,
            tile=tile,
            halo=halo,
            lazy=lazy,
        )
        seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load = os.getloadavg()[0]
    print(json.dumps({"size": size, "seconds": seconds, "peak_mib": peak, "load": load}))


def large_table(
    checkpoint: str,
    sizes: list[str],
    tile: int,
    halo: int,
    folder: str,
    eager_max: int,
    threads: list[int],
    max_size: int = 0,
    zoom: int = 1,
) -> None:
    """``sizes``: ``N`` (N x N) or ``HxW``; images of at most ``eager_max`` pixels also run
    read whole (``lazy=False``: label PNG, overlay, COCO JSON); each on every number of
    ``threads``; ``max_size`` > 0: the model sees each image shrunk to that long side (read
    and resized window by window); ``zoom``: nuclei drawn that many times larger, and seen at
    1 / ``zoom`` (their training scale) unless ``max_size`` says otherwise."""
    import os

    print(
        "| H x W | megapixels | path | threads | s | MP/s | peak RSS MiB | peak / first row's "
        "| load (1 min) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    first = None
    os.makedirs(folder, exist_ok=True)
    for spec in sizes:
        h, w = (int(v) for v in (spec.split("x") if "x" in spec else (spec, spec)))
        image = os.path.join(
            folder, f"slide_{h}x{w}" + (f"_zoom{zoom}" if zoom > 1 else "") + ".tif"
        )
        if not os.path.exists(image):
            _write_slide(image, (h, w), zoom)
        for lazy in (True, False) if h * w <= eager_max else (True,):
            for n in threads:
                cmd = [sys.executable, __file__, "one-large", checkpoint, image, str(tile)]
                limit = max_size or (max(h, w) // zoom if zoom > 1 else 0)
                cmd += [str(halo), "--threads", str(n), "--max-size", str(limit)]
                cmd += [] if lazy else ["--whole"]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True)
                row = json.loads(out.stdout.strip().splitlines()[-1])
                first = first or row["peak_mib"]
                mp = h * w / 1e6
                print(
                    f"| {h} x {w} | {mp:.1f} | {'by window' if lazy else 'read whole'} | {n} | "
                    f"{row['seconds']:.0f} | {mp / row['seconds']:.3f} | {row['peak_mib']:.0f} "
                    f"| {row['peak_mib'] / first:.2f} | {row['load']:.1f} |",
                    flush=True,
                )


def _one_join(h: int, w: int, tile: int, halo: int) -> None:
    """The join and the writing alone (no model) of an ``h`` x ``w`` image in this process:
    each tile's region labelled with the true nuclei of a repeated 512 px ``draw_cells``
    block (each copy its own objects), each object's groups one point on the sphere, joined
    and written by ``write_tiled_labels`` (BigTIFF and GeoJSON); a JSON line."""
    import tempfile

    import torch

    from pixelgroup.data.synthetic_cells import draw_cells
    from pixelgroup.postprocess.tiled_grouping import TileGroups
    from pixelgroup.postprocess.tiles import plan_tiles
    from pixelgroup.tasks.predictions import write_tiled_labels

    torch.set_num_threads(1)
    gt = draw_cells(np.random.default_rng(0), (512, 512), count=512 * 512 // 1100).instance
    gt = torch.from_numpy(gt.astype(np.int64))
    table = torch.nn.functional.normalize(torch.randn(4099, 8), dim=1)
    blocks_per_row = -(-w // 512)

    def groups():
        for t in plan_tiles((h, w), tile, halo):
            r = torch.arange(t.region.top, t.region.bottom)
            c = torch.arange(t.region.left, t.region.right)
            local = gt[r % 512][:, c % 512]
            copy = (r // 512)[:, None] * blocks_per_row + (c // 512)[None, :]
            ids = torch.where(local > 0, local + copy * 10_000, 0)
            values, labels = torch.unique(ids, return_inverse=True)
            if values[0] != 0:
                values, labels = torch.cat([values.new_zeros(1), values]), labels + 1
            centers = table[values % 4099]
            yield TileGroups(t.core, t.region, labels, centers, torch.ones(len(values)))

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        _, scores = write_tiled_labels(
            groups(), (h, w), out, "join", bandwidth=0.2, background_is_group=False, coco=False
        )
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"size": [h, w], "seconds": seconds, "peak_mib": peak, "K": len(scores)}))


def join_table(sizes: list[str], tile: int, halo: int) -> None:
    print("| H x W | megapixels | instances | s | peak RSS MiB | peak / first row's |")
    print("|---|---|---|---|---|---|")
    first = None
    for spec in sizes:
        h, w = (int(v) for v in (spec.split("x") if "x" in spec else (spec, spec)))
        cmd = [sys.executable, __file__, "one-join", str(h), str(w), str(tile), str(halo)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        first = first or row["peak_mib"]
        print(
            f"| {h} x {w} | {h * w / 1e6:.1f} | {row['K']:,} | {row['seconds']:.0f} | "
            f"{row['peak_mib']:.0f} | {row['peak_mib'] / first:.2f} |",
            flush=True,
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    h = sub.add_parser("halo", help="max |tiled - whole| per halo")
    h.add_argument("--config", action="append", default=[])
    h.add_argument("--checkpoint", action="append", default=[])
    h.add_argument("--tile", type=int, default=128)
    h.add_argument("--side", type=int, default=384)
    h.add_argument("--halos", type=int, nargs="+", default=list(HALOS))
    r = sub.add_parser("radius", help="how far one input pixel reaches (random weights)")
    r.add_argument("--config", action="append", default=[])
    r.add_argument("--set", action="append", default=[], help="config override, every config")
    r.add_argument("--side", type=int, default=1536)
    a = sub.add_parser("agreement", help="tiled vs whole labels per tile / halo")
    a.add_argument("--checkpoint", required=True)
    a.add_argument("--images", choices=("toy", "cells"), default="cells")
    a.add_argument("--side", type=int, default=512)
    a.add_argument("--tiles", nargs="+", default=["64:32", "128:32", "128:64", "256:64"])
    a.add_argument("--max-points", help="grouping.max_points for both (none: exact)")
    a.add_argument(
        "--diameter", type=float, nargs=2, default=[12.0, 36.0], help="of the nuclei, px"
    )
    s = sub.add_parser("speed", help="time and peak RSS per image size, whole and tiled")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    s.add_argument("--tile", type=int, default=512)
    s.add_argument("--halo", type=int, default=64)
    s.add_argument("--whole-max", type=int, default=2048, help="largest side run whole")
    g = sub.add_parser("large", help="predict --lazy: time and peak RSS per image size")
    g.add_argument("--checkpoint", required=True)
    g.add_argument("--sizes", nargs="+", default=["2048", "8192"], help="N or HxW each")
    g.add_argument("--tile", type=int, default=512)
    g.add_argument("--halo", type=int, default=64)
    g.add_argument("--folder", default=".", help="where the synthetic TIFFs are (written)")
    g.add_argument("--eager-max", type=int, default=2048 * 2048, help="px also run read whole")
    g.add_argument("--threads", type=int, nargs="+", default=[1], help="torch threads, each")
    g.add_argument("--max-size", type=int, default=0, help="long side the model sees (0: own)")
    g.add_argument("--zoom", type=int, default=1, help="nuclei drawn this many times larger")
    j = sub.add_parser("join", help="the join and the writing alone: time and peak RSS")
    j.add_argument("--sizes", nargs="+", default=["2048", "8192", "20480"], help="N or HxW")
    j.add_argument("--tile", type=int, default=512)
    j.add_argument("--halo", type=int, default=64)
    oj = sub.add_parser("one-join")
    for name in ("h", "w", "tile", "halo"):
        oj.add_argument(name, type=int)
    ol = sub.add_parser("one-large")
    ol.add_argument("checkpoint")
    ol.add_argument("image")
    ol.add_argument("tile", type=int)
    ol.add_argument("halo", type=int)
    ol.add_argument("--whole", action="store_true", help="lazy=False")
    ol.add_argument("--threads", type=int, default=1)
    ol.add_argument("--max-size", type=int, default=0)
    o = sub.add_parser("one")
    o.add_argument("checkpoint")
    o.add_argument("side", type=int)
    o.add_argument("tile", type=int)
    o.add_argument("halo", type=int)
    o.add_argument("--compare", action="store_true")
    args = p.parse_args()
    if args.what == "radius":
        radius_table(args.config, args.set, args.side)
    elif args.what == "halo":
        halo_table(args.config, args.checkpoint, args.tile, args.side, args.halos)
    elif args.what == "agreement":
        agreement_table(
            args.checkpoint,
            args.images,
            args.side,
            args.tiles,
            args.max_points,
            tuple(args.diameter),
        )
    elif args.what == "large":
        large_table(
            args.checkpoint,
            args.sizes,
            args.tile,
            args.halo,
            args.folder,
            args.eager_max,
            args.threads,
            args.max_size,
            args.zoom,
        )
    elif args.what == "join":
        join_table(args.sizes, args.tile, args.halo)
    elif args.what == "one-join":
        _one_join(args.h, args.w, args.tile, args.halo)
    elif args.what == "one-large":
        _one_large(
            args.checkpoint,
            args.image,
            args.tile,
            args.halo,
            not args.whole,
            args.threads,
            args.max_size,
        )
    elif args.what == "speed":
        speed_table(args.checkpoint, args.sizes, args.tile, args.halo, args.whole_max)
    else:
        _one(args.checkpoint, args.side, args.tile, args.halo, args.compare)


if __name__ == "__main__":
    main()
