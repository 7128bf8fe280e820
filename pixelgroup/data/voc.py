"""PASCAL VOC 2012 instance data: the VOC devkit, SBD, and the original release's ``.mat`` samples.

Every reader yields the package's :class:`~pixelgroup.data.sample.InstanceSample`: an RGB
image ``(3, H, W)`` float in [0, 1] with an instance map (0 background, 1..K instances) and a
semantic map (VOC class 0..20), where VOC's void label 255 becomes ``ignore_index`` (the pair
loss's ignore label, 255 by default). ``dataset.image_ids[i]`` is the file stem of item ``i``.
Layouts read from disk, never downloaded:

* VOC 2012: ``ROOT/VOCdevkit/VOC2012/{JPEGImages, SegmentationObject, SegmentationClass,
  ImageSets/Segmentation/<split>.txt}``; file lists and class masks come from torchvision's
  ``VOCSegmentation(download=False)``, instance masks from ``SegmentationObject`` (indexed PNG).
* SBD: ``ROOT/{img, inst, cls}/*`` with ``ROOT/<split>.txt`` (ROOT is the release's ``dataset``
  folder; its parent also works); file lists from torchvision's ``SBDataset``, instances from
  ``inst/<stem>.mat`` (``GTinst.Segmentation``), classes from ``cls/<stem>.mat``.
* Samples (``../shared/data/voc``): ``<stem>.jpg`` + ``<stem>.mat`` holding ``gtMat.segMap`` and
  ``gtMat.instMap``.

:func:`open_instance_dataset` recognises the layout of a folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
import torch
from torch.utils.data import Dataset
from torchvision.datasets import SBDataset, VOCSegmentation

from pixelgroup._config_io import option
from pixelgroup.data.io import read_image, read_label_map
from pixelgroup.data.sample import InstanceSample

__all__ = [
    "VOCOptions",
    "IGNORE_INDEX",
    "VOC_VOID",
    "instance_masks",
    "VOCInstances",
    "SBDInstances",
    "MatInstances",
    "open_instance_dataset",
]

VOC_VOID = 255  # VOC's label for object borders and "difficult" regions
IGNORE_INDEX = 255  # default ignore_index of pixelgroup.losses.pairwise_embedding_loss


@dataclass(frozen=True)
class VOCOptions:
    """``data.name: voc`` (:func:`open_instance_dataset`): ``size: [H, W]`` resizes every
    sample (needed for batches > 1); ``ignore_index`` marks VOC's void pixels."""

    size: tuple[int, ...] | None = option(None, min=1)
    ignore_index: int = IGNORE_INDEX


def instance_masks(instance: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """``(K, H, W)`` bool masks of the instances 1..K present in ``instance (H, W)``.

    Background (0) and ``ignore_index`` are not instances; masks follow ascending id.
    """
    labels = instance[(instance > 0) & (instance != ignore_index)]
    ids = torch.bincount(labels).nonzero().flatten() if labels.numel() else labels[:0]
    return instance[None] == ids[:, None, None].to(instance.dtype)


def _load_mat_field(path: Path, struct: str, field: str) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"annotation not found: {path}")
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except (scipy.io.matlab.MatReadError, ValueError, OSError, TypeError) as e:
        raise ValueError(f"cannot read MATLAB file {path}: {e}") from None
    if struct not in mat or not hasattr(mat[struct], field):
        raise ValueError(f"{path}: expected a struct {struct!r} with field {field!r}")
    value = np.asarray(getattr(mat[struct], field))
    if value.ndim != 2:
        raise ValueError(f"{path}: {struct}.{field} must be an H x W map, got {value.shape}")
    return value


def _make_sample(
    image: torch.Tensor,
    instances: np.ndarray | torch.Tensor,
    semantic: np.ndarray | torch.Tensor,
    ignore_index: int,
    source: Path,
) -> InstanceSample:
    size = tuple(image.shape[1:])
    for name, labels in (("instance", instances), ("class", semantic)):
        if tuple(labels.shape) != size:
            raise ValueError(
                f"{source}: {name} map is {labels.shape[0]}x{labels.shape[1]} but the image "
                f"is {size[0]}x{size[1]}"
            )

    def to_labels(a: np.ndarray | torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(a, dtype=np.int64))
        return torch.where(t == VOC_VOID, torch.full_like(t, ignore_index), t)

    return InstanceSample(image, to_labels(instances), to_labels(semantic))


class _InstanceDataset(Dataset):
    """Shared indexing: subclasses fill ``image_ids`` and implement ``_load``."""

    image_ids: list[str]

    def __init__(
        self,
        ignore_index: int,
        transform: Callable[[InstanceSample], InstanceSample] | None,
    ) -> None:
        self.ignore_index = ignore_index
        self.transform = transform

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> InstanceSample:
        sample = self._load(index)
        return sample if self.transform is None else self.transform(sample)

    def _load(self, index: int) -> InstanceSample:
        raise NotImplementedError


def _check_split(split: str, valid: tuple[str, ...], root: Path) -> None:
    if split not in valid:
        raise ValueError(f"split must be one of {valid} for {root}, got {split!r}")


class VOCInstances(_InstanceDataset):
    """PASCAL VOC 2012 instance segmentation (``SegmentationObject``).

    Args:
        root: the folder holding ``VOCdevkit`` (``VOCdevkit`` or ``VOCdevkit/VOC2012`` also work).
        split: ``"train"``, ``"val"`` or ``"trainval"`` (``ImageSets/Segmentation``).
        ignore_index: label written for VOC's void pixels (255).
        transform: optional ``InstanceSample -> InstanceSample``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "val",
        *,
        ignore_index: int = IGNORE_INDEX,
        transform: Callable[[InstanceSample], InstanceSample] | None = None,
    ) -> None:
        super().__init__(ignore_index, transform)
        root = Path(root)
        if root.name == "VOC2012" and root.parent.name == "VOCdevkit":
            root = root.parent.parent
        elif root.name == "VOCdevkit":
            root = root.parent
        _check_split(split, ("train", "val", "trainval"), root)
        voc = root / "VOCdevkit" / "VOC2012"
        for needed in ("JPEGImages", "SegmentationObject", "SegmentationClass"):
            if not (voc / needed).is_dir():
                raise FileNotFoundError(f"VOC 2012 folder not found: {voc / needed}")
        split_file = voc / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not split_file.is_file():
            raise FileNotFoundError(f"VOC 2012 split file not found: {split_file}")
        self._voc = VOCSegmentation(str(root), year="2012", image_set=split, download=False)
        self.image_ids = [Path(p).stem for p in self._voc.images]
        self._objects = voc / "SegmentationObject"

    def _load(self, index: int) -> InstanceSample:
        image_id = self.image_ids[index]
        image = read_image(self._voc.images[index])
        semantic = read_label_map(self._voc.masks[index])
        obj_path = self._objects / f"{image_id}.png"
        instances = read_label_map(obj_path)
        return _make_sample(image, instances, semantic, self.ignore_index, obj_path)


class SBDInstances(_InstanceDataset):
    """Semantic Boundaries Dataset instances (``inst/*.mat``, ``cls/*.mat``, ``img/*.jpg``).

    Args:
        root: the SBD ``dataset`` folder (holding ``img``, ``inst``, ``cls``, ``train.txt``,
            ``val.txt``), or its parent (``benchmark_RELEASE``).
        split: ``"train"`` or ``"val"``.
        ignore_index, transform: see :class:`VOCInstances`.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "val",
        *,
        ignore_index: int = IGNORE_INDEX,
        transform: Callable[[InstanceSample], InstanceSample] | None = None,
    ) -> None:
        super().__init__(ignore_index, transform)
        root = Path(root)
        if not (root / "inst").is_dir() and (root / "dataset" / "inst").is_dir():
            root = root / "dataset"
        _check_split(split, ("train", "val"), root)
        for needed in ("img", "inst", "cls"):
            if not (root / needed).is_dir():
                raise FileNotFoundError(f"SBD folder not found: {root / needed}")
        if not (root / f"{split}.txt").is_file():
            raise FileNotFoundError(f"SBD split file not found: {root / f'{split}.txt'}")
        self._sbd = SBDataset(str(root), image_set=split, mode="segmentation", download=False)
        self.image_ids = [Path(p).stem for p in self._sbd.images]
        self._inst = root / "inst"

    def _load(self, index: int) -> InstanceSample:
        image_id = self.image_ids[index]
        image = read_image(self._sbd.images[index])
        semantic = _load_mat_field(Path(self._sbd.masks[index]), "GTcls", "Segmentation")
        inst_path = self._inst / f"{image_id}.mat"
        instances = _load_mat_field(inst_path, "GTinst", "Segmentation")
        return _make_sample(image, instances, semantic, self.ignore_index, inst_path)


class MatInstances(_InstanceDataset):
    """A folder of ``<stem>.mat`` (``gtMat.segMap``, ``gtMat.instMap``) + ``<stem>.jpg``.

    This is the format of the original release's VOC files (``../shared/data/voc``).

    Args:
        root: the folder.
        ignore_index, transform: see :class:`VOCInstances`.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        ignore_index: int = IGNORE_INDEX,
        transform: Callable[[InstanceSample], InstanceSample] | None = None,
    ) -> None:
        super().__init__(ignore_index, transform)
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"folder of .mat annotations not found: {self.root}")
        self.image_ids = sorted(p.stem for p in self.root.glob("*.mat"))
        if not self.image_ids:
            raise FileNotFoundError(f"no .mat annotation files in {self.root}")

    def _load(self, index: int) -> InstanceSample:
        image_id = self.image_ids[index]
        mat_path = self.root / f"{image_id}.mat"
        instances = _load_mat_field(mat_path, "gtMat", "instMap")
        semantic = _load_mat_field(mat_path, "gtMat", "segMap")
        image = read_image(self.root / f"{image_id}.jpg")
        return _make_sample(image, instances, semantic, self.ignore_index, mat_path)


def open_instance_dataset(
    root: str | os.PathLike,
    split: str = "val",
    *,
    ignore_index: int = IGNORE_INDEX,
    transform: Callable[[InstanceSample], InstanceSample] | None = None,
) -> _InstanceDataset:
    """Open ``root`` as VOC 2012, SBD or a folder of sample ``.mat`` files, by its layout.

    ``split`` applies to VOC and SBD. Raises ``FileNotFoundError`` naming ``root`` when no
    layout matches.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    if (
        (root / "VOCdevkit").is_dir()
        or root.name == "VOCdevkit"
        or (root.name == "VOC2012" and root.parent.name == "VOCdevkit")
    ):
        return VOCInstances(root, split, ignore_index=ignore_index, transform=transform)
    if (root / "inst").is_dir() or (root / "dataset" / "inst").is_dir():
        return SBDInstances(root, split, ignore_index=ignore_index, transform=transform)
    if any(root.glob("*.mat")):
        return MatInstances(root, ignore_index=ignore_index, transform=transform)
    raise FileNotFoundError(
        f"{root} is not a VOC 2012 root (VOCdevkit/VOC2012), an SBD dataset folder "
        "(img/, inst/, cls/) or a folder of <stem>.mat + <stem>.jpg samples"
    )
