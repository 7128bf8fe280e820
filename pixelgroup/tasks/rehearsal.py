"""What ``pixelgroup rehearse`` needs of a task: which synthetic release its ``data.root`` can
point at, the image files of a split there, and its dataset-level evaluation of the
prediction files (the library function behind its ``pixelgroup eval-*`` command).

The synthetic releases are those of :func:`pixelgroup.data.synthetic.write_layouts`:
``"bsds"`` (a BSDS500 ``BSR`` folder), ``"voc"`` (a folder holding ``VOCdevkit/VOC2012``) and
``"sbd"`` (an SBD ``dataset`` folder). A task returns a :class:`RehearsalPlan` from
``Task.rehearsal(cfg, size)`` (``None``: its data has no synthetic release); the engine's
rehearsal (:mod:`pixelgroup.engine.rehearsal`) runs it without naming a task or a dataset.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pixelgroup._atomic import write_json
from pixelgroup.config import ExperimentConfig
from pixelgroup.data.bsds import BSDS500
from pixelgroup.tasks.offline import ResultsScoring, score_results

__all__ = ["RehearsalPlan", "DatasetEvaluation", "release_images", "results_evaluator"]


@dataclass(frozen=True)
class DatasetEvaluation:
    """A dataset-level evaluation of the prediction files.

    Attributes:
        command: the ``pixelgroup eval-*`` command line that computes the same, for the report.
        run: computes the scores.
    """

    command: str
    run: Callable[[], dict[str, Any]]


PlanEvaluation = Callable[[ExperimentConfig, Path, bool], DatasetEvaluation]
"""``(cfg, prediction folder, progress) -> DatasetEvaluation``."""


@dataclass(frozen=True)
class RehearsalPlan:
    """How a config of a task is rehearsed.

    Attributes:
        release: the synthetic release ``data.root`` is set to: ``"bsds"``, ``"voc"``, ``"sbd"``.
        overrides: ``--set`` strings for the rehearsal's size (data sizes only, e.g. a resize
            larger than the tiny images); applied after every stage's own overrides.
        evaluator: the dataset-level evaluation of the prediction files, or None.
    """

    release: str
    overrides: tuple[str, ...] = ()
    evaluator: PlanEvaluation | None = None


def release_images(release: str, root: str | Path, split: str) -> list[Path]:
    """The image files of ``split`` in a synthetic (or real) ``release`` at ``root``."""
    root = Path(root)
    if release == "bsds":
        return sorted((BSDS500(root, split).root / "images" / split).glob("*.jpg"))
    if release == "sbd":
        ids = (root / f"{split}.txt").read_text().split()
        return [root / "img" / f"{i}.jpg" for i in ids]
    if release == "voc":
        voc = root / "VOCdevkit" / "VOC2012"
        ids = (voc / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()
        return [voc / "JPEGImages" / f"{i}.jpg" for i in ids]
    raise ValueError(f"release must be bsds, voc or sbd, got {release!r}")


def results_evaluator(scoring: ResultsScoring) -> PlanEvaluation:
    """:func:`~pixelgroup.tasks.offline.score_results` with ``scoring`` on the per-image
    ``STEM.json`` of the prediction folder, joined into one ``results.json`` beside it,
    against ``data.root``'s eval split."""

    def plan(cfg: ExperimentConfig, pred: Path, progress: bool) -> DatasetEvaluation:
        results = pred.parent / "results.json"
        records = []
        for path in sorted(pred.glob("*.json")):
            records += json.loads(path.read_text())
        write_json(records, results)
        root, split = Path(str(cfg.data.root)), cfg.data.eval_split
        return DatasetEvaluation(
            f"pixelgroup {scoring.command} {results} {root} --split {split}",
            lambda: score_results(results, root, scoring, split, progress=progress),
        )

    return plan
