"""What the offline evaluation subcommands share (``eval-proposals``, ``eval-instances``,
``eval-boundaries``): output-path checks before any work and ``--reference`` parsing. The
evaluation itself is the library's (:mod:`pixelgroup.tasks.offline`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from pixelgroup.cli import UserError
from pixelgroup.cli.paths import check_writable_file

__all__ = ["check_output_path", "parse_f_references", "parse_curve_references"]


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
