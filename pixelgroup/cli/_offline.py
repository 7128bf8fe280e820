"""What the offline evaluation subcommands share (``eval-proposals``, ``eval-instances``,
``eval-boundaries``): the loop from a COCO results JSON and a ground-truth folder to an
evaluator's scores, output-path checks before any work, and ``--reference`` parsing."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm import tqdm

from pixelgroup.cli import UserError
from pixelgroup.cli.paths import check_writable_file
from pixelgroup.data.coco import ImageResults, read_results
from pixelgroup.data.sample import InstanceSample
from pixelgroup.data.voc import open_instance_dataset
from pixelgroup.errors import PixelgroupError
from pixelgroup.metrics import Evaluator

__all__ = [
    "user_errors",
    "check_output_path",
    "parse_f_references",
    "parse_curve_references",
    "load_results",
    "open_ground_truth",
    "evaluate_results",
]


#: ``(sample, masks (K, H, W), scores (K,), category_ids (K,))`` -> (prediction, target) records
MakeRecords = Callable[[InstanceSample, np.ndarray, np.ndarray, np.ndarray], tuple[Any, Any]]


@contextmanager
def user_errors(prefix: str = "") -> Iterator[None]:
    """Report a ``ValueError`` raised inside (bad data handed to the library) as a one-line
    :class:`UserError` with ``prefix`` (e.g. the image) in front; without a prefix the
    project's own errors pass through unchanged."""
    try:
        yield
    except (PixelgroupError, ValueError) as e:
        if isinstance(e, PixelgroupError) and not prefix:
            raise
        raise UserError(f"{prefix}{e}") from None


def check_output_path(
    path: Path,
    option: str,
    *,
    overwrite: bool,
    inputs: Sequence[Path],
    suffix: str | None = None,
) -> None:
    """Fail before any work when ``path`` cannot be written (a folder, under a file, no write
    permission), is one of ``inputs`` or a file in an input folder (even with ``overwrite``),
    exists without ``overwrite``, or, with ``suffix``, has another extension."""
    if suffix is not None and path.suffix.lower() != suffix:
        raise UserError(f"{option} must end in {suffix}, got {path}")
    check_writable_file(path, option, overwrite=overwrite, inputs=inputs)


def _split_reference(text: str, option: str, form: str) -> tuple[str, str]:
    label, sep, value = text.rpartition("=")
    if not sep or not label.strip() or not value.strip():
        raise UserError(f"{option} must be {form}, got {text!r}")
    return label.strip(), value.strip()


def parse_f_references(texts: Sequence[str], option: str = "--reference") -> dict[str, float]:
    """``["HED=0.780", ...]`` -> ``{"HED": 0.78}``: F values in (0, 1]."""
    out = {}
    for text in texts:
        label, value = _split_reference(text, option, "LABEL=F with F in (0, 1], e.g. HED=0.780")
        try:
            f = float(value)
        except ValueError:
            f = math.nan
        if not 0.0 < f <= 1.0:
            raise UserError(f"{option} {text!r}: F must be a number in (0, 1], got {value!r}")
        out[label] = f
    return out


def parse_curve_references(
    texts: Sequence[str], option: str = "--reference"
) -> dict[str, list[tuple[float, float]]]:
    """``["paper=11:0.56,60:0.61"]`` -> ``{"paper": [(11, 0.56), (60, 0.61)]}``: points
    ``K:VALUE`` with K > 0 and VALUE in [0, 1]."""
    form = "LABEL=K:VALUE[,K:VALUE...], e.g. 'paper AR=11:0.56,60:0.61'"
    out = {}
    for text in texts:
        label, value = _split_reference(text, option, form)
        points = []
        for item in value.split(","):
            k, sep, v = item.partition(":")
            try:
                point = (float(k), float(v)) if sep else (math.nan, math.nan)
            except ValueError:
                point = (math.nan, math.nan)
            if not (point[0] > 0 and 0.0 <= point[1] <= 1.0):
                raise UserError(
                    f"{option} {text!r}: {item!r} is not a point K:VALUE with K > 0 and VALUE "
                    "in [0, 1]"
                )
            points.append(point)
        out[label] = points
    return out


def load_results(path: Path, noun: str, num_classes: int | None = None) -> dict[str, ImageResults]:
    """:func:`~pixelgroup.data.coco.read_results` of the ``noun`` ("proposals", "predictions")
    file, with a one-line error when it is missing or malformed."""
    if not path.is_file():
        raise UserError(f"{noun} file not found: {path}")
    with user_errors():
        return read_results(path, num_classes=num_classes)


def open_ground_truth(gt_dir: Path, split: str) -> Any:
    """The instance dataset of ``gt_dir`` (VOC root, SBD folder or .mat samples); its image
    ids must be unique."""
    with user_errors():
        dataset = open_instance_dataset(gt_dir, split)
    repeated = [i for i, n in Counter(dataset.image_ids).items() if n > 1]
    if repeated:
        raise UserError(f"GT_DIR lists image ids more than once: {repeated[:5]}")
    return dataset


def evaluate_results(
    results: dict[str, ImageResults],
    dataset: Any,
    evaluator: Evaluator,
    make_records: MakeRecords,
    *,
    gt_dir: Path,
    noun: str,
    subset: bool,
    missing: Literal["error", "empty"],
    desc: str,
    progress: bool = True,
) -> dict[str, float]:
    """Feed every ground-truth image and its results to ``evaluator``; return its scores.

    Args:
        results: :func:`load_results` of the file.
        dataset: :func:`open_ground_truth` of ``gt_dir``.
        evaluator: any evaluator (``process(predictions, targets)``, ``evaluate()``).
        make_records: one image's sample and decoded results -> its (prediction, target).
        gt_dir: named in errors.
        noun: ``"proposal"`` or ``"prediction"``, for messages.
        subset: evaluate only the images that have results.
        missing: without ``subset``, an image without results is an ``"error"`` or counts
            with ``"empty"`` results (its instances are missed).
        desc: the progress bar's label.
        progress: show the progress bar (for two images or more).
    """
    unknown = sorted(set(results) - set(dataset.image_ids))
    if unknown:
        raise UserError(f"{len(unknown)} {noun} image ids are not in {gt_dir} (e.g. {unknown[:3]})")
    with_results = [i for i, name in enumerate(dataset.image_ids) if name in results]
    if subset:
        indices = with_results
    else:
        lacking = len(dataset) - len(with_results)
        if lacking and missing == "error":
            example = next(n for n in dataset.image_ids if n not in results)
            raise UserError(
                f"{lacking} of {len(dataset)} GT images have no {noun}s (e.g. {example!r}); "
                f"give {noun}s for every image or pass --subset"
            )
        indices = list(range(len(dataset)))
    for index in tqdm(indices, desc=desc, unit="img", disable=not progress or len(indices) < 2):
        image_id = dataset.image_ids[index]
        with user_errors(f"image {image_id!r}: "):
            sample = dataset[index]
        size = (int(sample.image.shape[1]), int(sample.image.shape[2]))
        found = results.get(image_id)
        if found is None:
            masks = np.zeros((0, *size), dtype=bool)
            scores, category_ids = np.zeros(0), np.zeros(0, dtype=np.int64)
        else:
            if found.size != size:
                raise UserError(
                    f"image {image_id!r}: {noun} masks are {found.size[0]}x{found.size[1]} but "
                    f"the image is {size[0]}x{size[1]}"
                )
            with user_errors(f"image {image_id!r}: "):
                masks = found.masks()
            scores, category_ids = found.scores, found.category_ids
        prediction, target = make_records(sample, masks, scores, category_ids)
        with user_errors(f"image {image_id!r}: "):
            evaluator.process([prediction], [target])
    with user_errors():
        return evaluator.evaluate()
