"""Synthetic datasets in the exact on-disk layouts of BSDS500, PASCAL VOC 2012 and SBD.

A dress rehearsal of a recipe (``pixelgroup rehearse``) needs data that every reader, loader,
evaluator and offline benchmark of the real dataset takes as it is, at the real image sizes,
without the download. These writers draw scenes of textured shapes (ellipses, rectangles,
triangles, later ones occluding earlier ones) on textured backgrounds, and store them as the
releases do:

* BSDS500 (:func:`write_bsds500`): ``BSR/BSDS500/data/images/{train,val,test}/<id>.jpg``
  (481 x 321 and 321 x 481) and ``BSR/BSDS500/data/groundTruth/{train,val,test}/<id>.mat``, a
  MATLAB cell ``groundTruth`` of one struct per annotator (5 by default) with
  ``Segmentation`` (uint16 regions 1..R) and ``Boundaries`` (logical); annotators differ in
  which shapes they merge with the background.
* VOC 2012 (:func:`write_voc2012`): ``VOCdevkit/VOC2012/{JPEGImages, SegmentationClass,
  SegmentationObject, ImageSets/Segmentation/{train,val,trainval}.txt}``, the label maps as
  palette PNGs with VOC's colour map and a void (255) band along every object outline.
* SBD (:func:`write_sbd`): ``benchmark_RELEASE/dataset/{img/<id>.jpg, cls/<id>.mat,
  inst/<id>.mat, train.txt, val.txt}`` with the structs ``GTcls`` (``Segmentation``,
  ``Boundaries``: a 20 x 1 cell of sparse maps, ``CategoriesPresent``) and ``GTinst``
  (``Segmentation``, ``Boundaries``, ``Categories``), no void label.

Every writer draws from its own ``numpy.random.Generator(seed)`` (the global RNG is never
touched), so the same arguments write the same files. :data:`LAYOUTS` holds the two sizes the
rehearsal uses.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io
import scipy.ndimage as ndi
import scipy.sparse
from PIL import Image

__all__ = [
    "LayoutSpec",
    "LAYOUTS",
    "Scene",
    "draw_scene",
    "voc_palette",
    "write_bsds500",
    "write_voc2012",
    "write_sbd",
    "write_layouts",
]

_NUM_VOC_CLASSES = 20
_VOID = 255


@dataclass(frozen=True)
class LayoutSpec:
    """How many images of which sizes each writer draws.

    Attributes:
        bsds_counts: images per BSDS500 split (``train``, ``val``, ``test``).
        bsds_sizes: ``(H, W)`` sizes, used in turn (BSDS500: 321 x 481 and 481 x 321).
        voc_counts: images per VOC 2012 / SBD split (``train``, ``val``).
        voc_sizes: ``(H, W)`` sizes, used in turn (VOC: 500 px on the long side).
        annotators: BSDS annotators per image.
        max_objects: at most this many shapes per scene (at least 1).
    """

    bsds_counts: Mapping[str, int] = field(
        default_factory=lambda: {"train": 6, "val": 4, "test": 4}
    )
    bsds_sizes: tuple[tuple[int, int], ...] = ((321, 481), (481, 321))
    voc_counts: Mapping[str, int] = field(default_factory=lambda: {"train": 8, "val": 4})
    voc_sizes: tuple[tuple[int, int], ...] = ((375, 500), (500, 375), (333, 500), (281, 500))
    annotators: int = 5
    max_objects: int = 5


LAYOUTS: dict[str, LayoutSpec] = {
    "full": LayoutSpec(),
    "tiny": LayoutSpec(
        bsds_counts={"train": 6, "val": 2, "test": 2},
        bsds_sizes=((32, 48), (48, 32)),
        voc_counts={"train": 8, "val": 2},
        voc_sizes=((48, 64), (64, 48)),
        max_objects=3,
    ),
}
"""``"full"``: the real image sizes (a handful of images per split, enough for one batch of
every recipe); ``"tiny"``: small images for the test suite."""


def voc_palette() -> list[int]:
    """VOC's 256-colour map (``VOCdevkit``'s ``labelcolormap``) as a flat PIL palette."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette += [r, g, b]
    return palette


@dataclass(frozen=True)
class Scene:
    """One drawn scene.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        instance: ``(H, W)`` int64, 0 background, 1..K the visible shapes.
        classes: ``(K,)`` int64 VOC class ids 1..20 of the shapes.
    """

    image: np.ndarray
    instance: np.ndarray
    classes: np.ndarray


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """``(H, W, 3)`` float in [0, 255]: a random colour modulated by gratings and blotches."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    pattern = np.zeros((h, w))
    for _ in range(2):
        period = rng.uniform(4.0, 24.0)
        angle = rng.uniform(0.0, np.pi)
        phase = rng.uniform(0.0, 2 * np.pi)
        pattern += np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period + phase)
    noise = ndi.gaussian_filter(rng.standard_normal((h, w)), sigma=max(1.0, min(h, w) / 24))
    pattern = pattern / 2 + 2 * noise / (noise.std() + 1e-9)
    colour = rng.uniform(40.0, 215.0, size=3)
    contrast = rng.uniform(10.0, 35.0)
    return np.clip(colour[None, None] + contrast * pattern[..., None], 0.0, 255.0)


def _shape_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random ellipse, rectangle or triangle covering a few percent of the canvas."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx = rng.uniform(0.15, 0.85) * h, rng.uniform(0.15, 0.85) * w
    ry, rx = rng.uniform(0.12, 0.3) * h, rng.uniform(0.12, 0.3) * w
    kind = rng.integers(3)
    if kind == 0:
        return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    if kind == 1:
        return (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
    # a triangle around the centre, vertices about 120 degrees apart (no slivers)
    start = rng.uniform(0.0, 2 * np.pi)
    angles = start + 2 * np.pi * np.arange(3) / 3 + rng.uniform(-0.4, 0.4, 3)
    ys, xs = cy + ry * np.sin(angles), cx + rx * np.cos(angles)
    inside = np.ones((h, w), dtype=bool)
    for k in range(3):  # counter-clockwise in (x, y): inside is left of every edge
        x0, y0, x1, y1 = xs[k], ys[k], xs[(k + 1) % 3], ys[(k + 1) % 3]
        inside &= (x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0) >= 0
    return inside


def draw_scene(rng: np.random.Generator, size: tuple[int, int], max_objects: int = 5) -> Scene:
    """A textured background with 1..``max_objects`` textured shapes (see :class:`Scene`).

    Shapes drawn later occlude earlier ones; a shape occluded completely is dropped, so
    instance ids are 1..K with every one present.

    Example:
        >>> s = draw_scene(np.random.default_rng(0), (48, 64), max_objects=3)
        >>> s.image.shape, s.image.dtype.name, int(s.instance.max()) == len(s.classes)
        ((48, 64, 3), 'uint8', True)
    """
    h, w = size
    image = _texture(rng, h, w)
    instance = np.zeros((h, w), dtype=np.int64)
    count = int(rng.integers(1, max(1, max_objects) + 1))
    classes = rng.integers(1, _NUM_VOC_CLASSES + 1, size=count)
    for k in range(1, count + 1):
        mask = _shape_mask(rng, h, w)
        image[mask] = _texture(rng, h, w)[mask]
        instance[mask] = k
    keep = [k for k in range(1, count + 1) if (instance == k).any()]
    relabelled = np.zeros_like(instance)
    for new, old in enumerate(keep, start=1):
        relabelled[instance == old] = new
    image = ndi.gaussian_filter(image, sigma=(0.6, 0.6, 0))  # soft edges, as photographs
    return Scene(
        np.round(image).astype(np.uint8),
        relabelled,
        np.asarray([classes[k - 1] for k in keep], dtype=np.int64),
    )


def _outline(labels: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: pixels whose right or lower neighbour has another label (BSDS's
    boundary convention, one pixel wide)."""
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return edge


def _write_jpeg(image: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format="JPEG", quality=90)


def _size(sizes: tuple[tuple[int, int], ...], index: int) -> tuple[int, int]:
    """The ``index``-th image's (H, W): the release's sizes in turn."""
    return sizes[index % len(sizes)]


def write_bsds500(root: str | Path, spec: LayoutSpec = LAYOUTS["full"], seed: int = 0) -> Path:
    """Write a BSDS500 release under ``root`` (see the module docstring); returns
    ``root/BSR``, a ``data.root`` the BSDS reader takes.

    Example:
        >>> import tempfile
        >>> from pixelgroup.data.bsds import BSDS500
        >>> with tempfile.TemporaryDirectory() as d:
        ...     bsr = write_bsds500(d, LAYOUTS["tiny"])
        ...     s = BSDS500(bsr, "test")[0]
        >>> tuple(s.image.shape), tuple(s.boundaries.shape)
        ((3, 32, 48), (5, 32, 48))
    """
    rng = np.random.default_rng(seed)
    data = Path(root) / "BSR" / "BSDS500" / "data"
    index = 0
    for split_no, split in enumerate(("train", "val", "test")):
        for folder in ("images", "groundTruth"):  # every split's folders, as the release
            (data / folder / split).mkdir(parents=True, exist_ok=True)
        for i in range(spec.bsds_counts.get(split, 0)):
            image_id = f"{100007 + 10_000 * split_no + 37 * i}"
            scene = draw_scene(rng, _size(spec.bsds_sizes, index), spec.max_objects)
            index += 1
            _write_jpeg(scene.image, data / "images" / split / f"{image_id}.jpg")
            annotators = np.empty((1, spec.annotators), dtype=object)
            for a in range(spec.annotators):
                regions = scene.instance.copy()
                merged = rng.random(len(scene.classes)) < (0.0 if a == 0 else 0.25)
                for k in np.flatnonzero(merged):
                    regions[regions == k + 1] = 0  # this annotator did not outline shape k
                segmentation = (regions + 1).astype(np.uint16)
                annotators[0, a] = {
                    "Segmentation": segmentation,
                    "Boundaries": _outline(segmentation),
                }
            truth = data / "groundTruth" / split / f"{image_id}.mat"
            truth.parent.mkdir(parents=True, exist_ok=True)
            scipy.io.savemat(truth, {"groundTruth": annotators}, do_compression=True)
    return Path(root) / "BSR"


def _void_band(instance: np.ndarray) -> np.ndarray:
    """VOC's void border: a band about 3 px wide along every object outline."""
    band = _outline(instance)
    band[:, 1:] |= band[:, :-1]
    band[1:, :] |= band[:-1, :]
    return ndi.binary_dilation(band, iterations=1)


def _write_palette_png(labels: np.ndarray, path: Path, palette: list[int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(labels.astype(np.uint8), mode="P")
    im.putpalette(palette)
    im.save(path, format="PNG")


def _voc_ids(spec: LayoutSpec, first: int) -> dict[str, list[str]]:
    ids, n = {}, first
    for split in ("train", "val"):
        ids[split] = [f"2008_{n + 13 * i:06d}" for i in range(spec.voc_counts.get(split, 0))]
        n += 13 * len(ids[split]) + 1
    return ids


def _voc_scenes(
    rng: np.random.Generator, spec: LayoutSpec, ids: dict[str, list[str]]
) -> Iterator[tuple[str, Scene]]:
    """``(image_id, scene)`` for the train then val ids, in VOC's sizes in turn."""
    image_ids = ids["train"] + ids["val"]
    for index, image_id in enumerate(image_ids):
        yield image_id, draw_scene(rng, _size(spec.voc_sizes, index), spec.max_objects)


def write_voc2012(root: str | Path, spec: LayoutSpec = LAYOUTS["full"], seed: int = 1) -> Path:
    """Write a VOC 2012 segmentation release under ``root`` (see the module docstring);
    returns ``root``, the folder holding ``VOCdevkit`` (a ``data.root`` the VOC reader takes).

    Example:
        >>> import tempfile
        >>> from pixelgroup.data.voc import VOCInstances
        >>> with tempfile.TemporaryDirectory() as d:
        ...     s = VOCInstances(write_voc2012(d, LAYOUTS["tiny"]), "val")[0]
        >>> tuple(s.image.shape), 255 in s.instance.unique().tolist()
        ((3, 48, 64), True)
    """
    rng = np.random.default_rng(seed)
    voc = Path(root) / "VOCdevkit" / "VOC2012"
    palette = voc_palette()
    lists = voc / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True, exist_ok=True)
    ids = _voc_ids(spec, 215)
    for image_id, scene in _voc_scenes(rng, spec, ids):
        classes = np.concatenate([[0], scene.classes])[scene.instance]
        void = _void_band(scene.instance)
        objects = np.where(void, _VOID, scene.instance)
        classes = np.where(void, _VOID, classes)
        _write_jpeg(scene.image, voc / "JPEGImages" / f"{image_id}.jpg")
        _write_palette_png(classes, voc / "SegmentationClass" / f"{image_id}.png", palette)
        _write_palette_png(objects, voc / "SegmentationObject" / f"{image_id}.png", palette)
    for name, members in (
        ("train", ids["train"]),
        ("val", ids["val"]),
        ("trainval", ids["train"] + ids["val"]),
    ):
        (lists / f"{name}.txt").write_text("".join(f"{i}\n" for i in members))
    return Path(root)


def _sparse_cell(maps: list[np.ndarray]) -> np.ndarray:
    cell = np.empty((len(maps), 1), dtype=object)
    for k, m in enumerate(maps):
        cell[k, 0] = scipy.sparse.csc_matrix(m.astype(bool))
    return cell


def write_sbd(root: str | Path, spec: LayoutSpec = LAYOUTS["full"], seed: int = 2) -> Path:
    """Write an SBD release under ``root`` (see the module docstring); returns
    ``root/benchmark_RELEASE/dataset`` (a ``data.root`` the SBD reader and torchvision's
    ``SBDataset`` take).

    Example:
        >>> import tempfile
        >>> from pixelgroup.data.voc import SBDInstances
        >>> with tempfile.TemporaryDirectory() as d:
        ...     s = SBDInstances(write_sbd(d, LAYOUTS["tiny"]), "train")[0]
        >>> tuple(s.image.shape), bool(((s.instance > 0) == (s.semantic > 0)).all())
        ((3, 48, 64), True)
    """
    rng = np.random.default_rng(seed)
    dataset = Path(root) / "benchmark_RELEASE" / "dataset"
    for sub in ("img", "cls", "inst"):
        (dataset / sub).mkdir(parents=True, exist_ok=True)
    ids = _voc_ids(spec, 1017)
    for image_id, scene in _voc_scenes(rng, spec, ids):
        semantic = np.concatenate([[0], scene.classes])[scene.instance].astype(np.uint8)
        _write_jpeg(scene.image, dataset / "img" / f"{image_id}.jpg")
        per_class = [_outline(semantic) & (semantic == c) for c in range(1, 21)]
        present = np.unique(semantic[semantic > 0]).astype(np.uint8)[:, None]
        gtcls = {
            "Segmentation": semantic,
            "Boundaries": _sparse_cell(per_class),
            "CategoriesPresent": present,
        }
        scipy.io.savemat(dataset / "cls" / f"{image_id}.mat", {"GTcls": gtcls})
        k = len(scene.classes)
        gtinst = {
            "Segmentation": scene.instance.astype(np.uint8),
            "Boundaries": _sparse_cell(
                [_outline(scene.instance) & (scene.instance == i) for i in range(1, k + 1)]
            ),
            "Categories": scene.classes.astype(np.uint8)[:, None],
        }
        scipy.io.savemat(dataset / "inst" / f"{image_id}.mat", {"GTinst": gtinst})
    for split in ("train", "val"):
        (dataset / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids[split]))
    return dataset


def write_layouts(root: str | Path, size: str = "tiny", seed: int = 0) -> dict[str, Path]:
    """All three releases under ``root`` at ``size`` (a key of :data:`LAYOUTS`).

    Returns ``{"bsds": root/BSR, "voc": root/VOC (holding VOCdevkit), "sbd":
    root/SBD/benchmark_RELEASE/dataset}``.
    """
    if size not in LAYOUTS:
        raise ValueError(f"size must be one of {', '.join(LAYOUTS)}, got {size!r}")
    spec, root = LAYOUTS[size], Path(root)
    return {
        "bsds": write_bsds500(root, spec, seed),
        "voc": write_voc2012(root / "VOC", spec, seed + 1),
        "sbd": write_sbd(root / "SBD", spec, seed + 2),
    }
