"""What ``pixelgroup rehearse`` needs of a task: which synthetic release its ``data.root`` can
point at, the image files of a split there, and its dataset-level evaluator command.

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

from pixelgroup._atomic import write_json
from pixelgroup.config import ExperimentConfig
from pixelgroup.data.bsds import BSDS500

__all__ = ["RehearsalPlan", "release_images", "boundary_evaluator", "results_evaluator"]

EvaluatorArgv = Callable[[ExperimentConfig, Path, Path], list[str]]
"""``(cfg, prediction folder, output JSON) -> argv`` of a ``pixelgroup`` subcommand."""


@dataclass(frozen=True)
class RehearsalPlan:
    """How a config of a task is rehearsed.

    Attributes:
        release: the synthetic release ``data.root`` is set to: ``"bsds"``, ``"voc"``, ``"sbd"``.
        overrides: ``--set`` strings for the rehearsal's size (data sizes only, e.g. a resize
            larger than the tiny images); applied after every stage's own overrides.
        evaluator: the dataset-level evaluator command on the prediction files, or None.
    """

    release: str
    overrides: tuple[str, ...] = ()
    evaluator: EvaluatorArgv | None = None


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


def boundary_evaluator(cfg: ExperimentConfig, pred: Path, out: Path) -> list[str]:
    """``pixelgroup eval-boundaries`` on the thinned maps ``pred/nms`` against the split's
    BSDS500 ground truth, with ``data.options.eval_thresholds``."""
    split = cfg.data.eval_split
    assert cfg.data.root is not None  # the rehearsal sets it
    gt = BSDS500(cfg.data.root, split).root / "groundTruth" / split
    thresholds = cfg.data.options.get("eval_thresholds", 99)
    return ["eval-boundaries", str(pred / "nms"), str(gt), "--thresholds", str(thresholds),
            "--output", str(out)]  # fmt: skip


def results_evaluator(command: str) -> EvaluatorArgv:
    """``pixelgroup <command> RESULTS ROOT --split S``, RESULTS the per-image ``STEM.json``
    of the prediction folder joined into one ``results.json`` beside it."""

    def argv(cfg: ExperimentConfig, pred: Path, out: Path) -> list[str]:
        results = pred.parent / "results.json"
        records = []
        for path in sorted(pred.glob("*.json")):
            records += json.loads(path.read_text())
        write_json(records, results)
        split = cfg.data.eval_split
        return [command, str(results), str(cfg.data.root), "--split", split, "--output", str(out)]

    return argv
