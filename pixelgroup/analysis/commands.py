"""pixelgroup's commands run as a user runs them, for the real-data benchmarks of ``benchmarks/``.

:func:`train_then_predict` trains a shipped config into a run folder and predicts images with
the checkpoint, each command a process of its own (``python -m pixelgroup``), so a benchmark
measures what the README's commands give, start-up and all.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["train_then_predict"]


def _sets(overrides: Sequence[str]) -> list[str]:
    return [word for override in overrides for word in ("--set", override)]


def train_then_predict(
    config: str,
    run: Path,
    overrides: Sequence[str],
    images: Sequence[Path],
    *,
    threads: int,
    trained: bool = False,
    predict_options: Sequence[str] = (),
) -> float:
    """``pixelgroup train --config CONFIG -o RUN --set OVERRIDE ...`` (skipped when
    ``trained``: ``RUN`` holds the checkpoint already), then ``pixelgroup predict`` of
    ``images`` into ``RUN/predict`` with ``predict_options`` (e.g. ``--max-size 0``, ``--set
    grouping.KEY=VALUE``); both ``--quiet`` and replacing earlier outputs. Returns the training
    command's seconds (0 when ``trained``). A failing command raises
    :class:`subprocess.CalledProcessError`."""
    command = [sys.executable, "-m", "pixelgroup"]
    start = time.perf_counter()
    if not trained:
        train = [*command, "train", "--config", config, "-o", str(run), "--overwrite", "--quiet"]
        subprocess.run([*train, "--threads", str(threads), *_sets(overrides)], check=True)
    seconds = 0.0 if trained else time.perf_counter() - start
    predict = [*command, "predict", "--checkpoint", str(run / "checkpoint.pt")]
    predict += ["-o", str(run / "predict"), "--quiet", "--overwrite", *predict_options]
    subprocess.run([*predict, *(str(image) for image in images)], check=True)
    return seconds
