"""BSDS500 boundary data: the standard release and the original repository's single-map samples.

Layouts read from disk, never downloaded:

* BSDS500 release: ``ROOT/images/<split>/<id>.jpg`` and ``ROOT/groundTruth/<split>/<id>.mat``,
  where ROOT is ``BSR/BSDS500/data`` (``BSR``, ``BSR/BSDS500`` and ``BSDS500`` are found too) and
  each ``.mat`` holds ``groundTruth``, a cell of structs (one per annotator, usually 5-7) with
  ``Segmentation`` and ``Boundaries``.
* Samples (``../shared/data/bsds``): ``<id>.mat`` holding ``im`` (uint8 H x W x 3) and ``GT``
  (H x W in {0, 1}, the union of the annotators' boundaries), read as a single annotator.

Every reader yields :class:`BoundarySample` with one boundary map per annotator.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
import torch
from torch.utils.data import Dataset

from pixelgroup.data.io import read_image

__all__ = [
    "BSDSOptions",
    "BSDS_SPLITS",
    "BoundarySample",
    "BSDS500",
    "BSDSMatFolder",
    "load_boundary_ground_truth",
    "open_boundary_dataset",
]

BSDS_SPLITS = ("train", "val", "test")
_ROOT_SUFFIXES = ("", "data", "BSDS500/data", "BSR/BSDS500/data")


@dataclass(frozen=True)
class BSDSOptions:
    """``data.name: bsds`` (:func:`open_boundary_dataset`) takes no options of its own: the
    layout of ``data.root`` tells the release from a folder of ``.mat`` samples."""


@dataclass(frozen=True)
class BoundarySample:
    """One image with its human boundary annotations.

    Attributes:
        image_id: the file stem, e.g. ``"104010"``.
        image: ``(3, H, W)`` float32 RGB in [0, 1].
        boundaries: ``(A, H, W)`` bool, one map per annotator (A = 1 for the samples).
    """

    image_id: str
    image: torch.Tensor
    boundaries: torch.Tensor

    @property
    def consensus(self) -> torch.Tensor:
        """``(H, W)`` float32: fraction of annotators marking each pixel (HED's soft label)."""
        return self.boundaries.float().mean(0)


def load_boundary_ground_truth(path: str | Path) -> np.ndarray:
    """Read a ground-truth ``.mat`` (release ``groundTruth`` cell or sample ``GT`` map).

    Returns:
        ``(A, H, W)`` bool annotator boundary maps.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ground-truth file not found: {path}")
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except (
        ValueError,
        OSError,
        IndexError,
        NotImplementedError,
    ) as e:  # scipy's corrupt-file errors
        raise ValueError(f"cannot read {path} as a MATLAB .mat file ({e})") from None
    if "groundTruth" in mat:
        annotators = np.atleast_1d(mat["groundTruth"])
        maps = []
        for k, a in enumerate(annotators):
            if not hasattr(a, "Boundaries"):
                raise ValueError(f"{path}: groundTruth entry {k} has no 'Boundaries' field")
            maps.append(np.asarray(a.Boundaries) != 0)
        return np.stack(maps)
    if "GT" in mat:
        return (np.asarray(mat["GT"]) != 0)[None]
    keys = sorted(k for k in mat if not k.startswith("__"))
    raise ValueError(
        f"{path}: expected a 'groundTruth' cell (BSDS500 release) or a 'GT' map (samples), "
        f"found variables {keys}"
    )


class BSDS500(Dataset):
    """The BSDS500 release: ``images/<split>/*.jpg`` with ``groundTruth/<split>/*.mat``.

    Args:
        root: the ``BSDS500/data`` folder or one of its parents (``BSR``, ``BSR/BSDS500``).
        split: ``"train"`` (200), ``"val"`` (100) or ``"test"`` (200); ``"trainval"`` joins two.
    """

    def __init__(self, root: str | Path, split: str = "train") -> None:
        splits = ("train", "val") if split == "trainval" else (split,)
        if any(s not in BSDS_SPLITS for s in splits):
            raise ValueError(f"split must be one of {BSDS_SPLITS} or 'trainval', got {split!r}")
        self.root = _find_release_root(Path(root))
        self.split = split
        self.items: list[tuple[Path, Path]] = []
        for s in splits:
            images, truths = self.root / "images" / s, self.root / "groundTruth" / s
            for folder in (images, truths):
                if not folder.is_dir():
                    raise FileNotFoundError(f"BSDS500 folder missing: {folder}")
            for jpg in sorted(images.glob("*.jpg")):
                mat = truths / f"{jpg.stem}.mat"
                if not mat.is_file():
                    raise FileNotFoundError(f"ground truth missing for {jpg.name}: {mat}")
                self.items.append((jpg, mat))
        if not self.items:
            raise FileNotFoundError(f"no .jpg images in {self.root / 'images'} for split {split}")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> BoundarySample:
        jpg, mat = self.items[index]
        image = read_image(jpg)
        return BoundarySample(jpg.stem, image, _checked_gt(mat, image))


class BSDSMatFolder(Dataset):
    """A folder of sample-format ``<id>.mat`` files (``im`` + ``GT``), e.g. ``shared/data/bsds``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"BSDS sample folder not found: {self.root}")
        self.items = sorted(self.root.glob("*.mat"))
        if not self.items:
            raise FileNotFoundError(f"no <id>.mat files in {self.root}")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> BoundarySample:
        path = self.items[index]
        mat = scipy.io.loadmat(path, squeeze_me=True)
        if "im" not in mat:
            raise ValueError(f"{path}: sample file has no 'im' image (expected 'im' and 'GT')")
        im = np.asarray(mat["im"])
        if im.ndim != 3 or im.shape[2] != 3:
            raise ValueError(f"{path}: 'im' must be H x W x 3, got shape {im.shape}")
        image = torch.from_numpy(im.transpose(2, 0, 1).astype(np.float32) / 255.0)
        return BoundarySample(path.stem, image, _checked_gt(path, image))


def _checked_gt(path: Path, image: torch.Tensor) -> torch.Tensor:
    gt = load_boundary_ground_truth(path)
    if gt.shape[1:] != tuple(image.shape[1:]):
        raise ValueError(
            f"{path}: ground truth is {gt.shape[1:]} but the image is {tuple(image.shape[1:])}"
        )
    return torch.from_numpy(gt)


def _find_release_root(root: Path) -> Path:
    if not root.is_dir():
        raise FileNotFoundError(f"BSDS500 root folder not found: {root}")
    for suffix in _ROOT_SUFFIXES:
        candidate = root / suffix
        if (candidate / "images").is_dir() or (candidate / "groundTruth").is_dir():
            return candidate
    raise FileNotFoundError(
        f"no BSDS500 layout under {root}: expected {root}/images/<split> and "
        f"{root}/groundTruth/<split> (or the same under BSR/BSDS500/data)"
    )


def open_boundary_dataset(root: str | Path, split: str = "train") -> Dataset:
    """A :class:`BSDSMatFolder` if ``root`` holds ``*.mat`` samples, else :class:`BSDS500`."""
    root = Path(root)
    if root.is_dir() and any(root.glob("*.mat")):
        return BSDSMatFolder(root)
    return BSDS500(root, split)
