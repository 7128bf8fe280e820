"""Offline evaluation: saved results (a COCO results JSON) and a ground-truth folder in, an
evaluator's scores out, without a model.

:func:`score_results` is shared by the tasks whose predictions are COCO results; each task
declares beside it a :class:`ResultsScoring` with its evaluator and record builder (one
image's sample and decoded results -> its prediction and target records):
:data:`pixelgroup.tasks.proposals.PROPOSAL_SCORING`,
:data:`pixelgroup.tasks.voc_instance.INSTANCE_SCORING`. ``pixelgroup eval-proposals`` /
``eval-instances`` and the rehearsal call it. Every problem with the files is a one-line
:class:`~pixelgroup.errors.DataError`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm import tqdm

from pixelgroup.data.coco import ImageResults, read_results
from pixelgroup.data.sample import InstanceSample
from pixelgroup.data.voc import open_instance_dataset
from pixelgroup.errors import DataError, data_errors
from pixelgroup.metrics import Evaluator

__all__ = [
    "MakeRecords",
    "ResultsScoring",
    "score_results",
    "data_errors",
    "load_results",
    "open_ground_truth",
    "evaluate_results",
]

#: ``(sample, masks (K, H, W), scores (K,), category_ids (K,))`` -> (prediction, target) records
MakeRecords = Callable[[InstanceSample, np.ndarray, np.ndarray, np.ndarray], tuple[Any, Any]]


@dataclass(frozen=True)
class ResultsScoring:
    """How a task scores saved COCO results against an instance dataset.

    Attributes:
        command: the ``pixelgroup`` command that does it (the progress bar's label).
        noun: what the file holds, for messages: ``"proposal"``, ``"prediction"``.
        missing: an image without results is an ``"error"`` or counts with ``"empty"``
            results (its instances are missed).
        start: the dataset's ignore index -> a fresh evaluator and the record builder that
            feeds it.
        num_classes: the ``category_id`` of every result lies in 1..num_classes (None: no
            category).
    """

    command: str
    noun: str
    missing: Literal["error", "empty"]
    start: Callable[[int], tuple[Evaluator, MakeRecords]]
    num_classes: int | None = None


def score_results(
    results_json: str | Path,
    gt_dir: str | Path,
    scoring: ResultsScoring,
    split: str = "val",
    *,
    subset: bool = False,
    progress: bool = True,
) -> dict[str, float]:
    """The scores of the COCO results file ``results_json`` (``image_id``, RLE
    ``segmentation``, ``score``, and ``category_id`` where ``scoring`` has classes) against the
    instances of ``gt_dir`` (a VOC 2012 root, an SBD ``dataset`` folder or ``.mat`` samples).

    With ``subset``, only the images that have results are scored; otherwise
    ``scoring.missing`` decides. Files that cannot be used raise
    :class:`~pixelgroup.errors.DataError`.
    """
    results = load_results(results_json, f"{scoring.noun}s", num_classes=scoring.num_classes)
    dataset = open_ground_truth(gt_dir, split)
    evaluator, make_records = scoring.start(dataset.ignore_index)
    return evaluate_results(
        results,
        dataset,
        evaluator,
        make_records,
        gt_dir=gt_dir,
        noun=scoring.noun,
        subset=subset,
        missing=scoring.missing,
        desc=scoring.command,
        progress=progress,
    )


def load_results(
    path: str | Path, noun: str, num_classes: int | None = None
) -> dict[str, ImageResults]:
    """:func:`~pixelgroup.data.coco.read_results` of the ``noun`` ("proposals", "predictions")
    file, with a one-line error when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{noun} file not found: {path}")
    with data_errors():
        return read_results(path, num_classes=num_classes)


def open_ground_truth(gt_dir: str | Path, split: str) -> Any:
    """The instance dataset of ``gt_dir`` (VOC root, SBD folder or .mat samples); its image
    ids must be unique."""
    with data_errors():
        dataset = open_instance_dataset(gt_dir, split)
    repeated = [i for i, n in Counter(dataset.image_ids).items() if n > 1]
    if repeated:
        raise DataError(f"GT_DIR lists image ids more than once: {repeated[:5]}")
    return dataset


def evaluate_results(
    results: dict[str, ImageResults],
    dataset: Any,
    evaluator: Evaluator,
    make_records: MakeRecords,
    *,
    gt_dir: str | Path,
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
        raise DataError(f"{len(unknown)} {noun} image ids are not in {gt_dir} (e.g. {unknown[:3]})")
    with_results = [i for i, name in enumerate(dataset.image_ids) if name in results]
    if subset:
        indices = with_results
    else:
        lacking = len(dataset) - len(with_results)
        if lacking and missing == "error":
            example = next(n for n in dataset.image_ids if n not in results)
            raise DataError(
                f"{lacking} of {len(dataset)} GT images have no {noun}s (e.g. {example!r}); "
                f"give {noun}s for every image or pass --subset"
            )
        indices = list(range(len(dataset)))
    for index in tqdm(indices, desc=desc, unit="img", disable=not progress or len(indices) < 2):
        image_id = dataset.image_ids[index]
        with data_errors(f"image {image_id!r}: "):
            sample = dataset[index]
        size = (int(sample.image.shape[1]), int(sample.image.shape[2]))
        found = results.get(image_id)
        if found is None:
            masks = np.zeros((0, *size), dtype=bool)
            scores, category_ids = np.zeros(0), np.zeros(0, dtype=np.int64)
        else:
            if found.size != size:
                raise DataError(
                    f"image {image_id!r}: {noun} masks are {found.size[0]}x{found.size[1]} but "
                    f"the image is {size[0]}x{size[1]}"
                )
            with data_errors(f"image {image_id!r}: "):
                masks = found.masks()
            scores, category_ids = found.scores, found.category_ids
        prediction, target = make_records(sample, masks, scores, category_ids)
        with data_errors(f"image {image_id!r}: "):
            evaluator.process([prediction], [target])
    with data_errors():
        return evaluator.evaluate()
