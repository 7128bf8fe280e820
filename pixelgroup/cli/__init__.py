"""``pixelgroup <subcommand>``: each subcommand is a module here with ``add_parser`` and ``run``.

A subcommand module defines ``add_parser(subparsers)`` (registering its parser, with examples in
its epilog, and ``set_defaults(run=run)``) and ``run(args) -> int``. Modules only parse
arguments and call into the library. A :class:`~pixelgroup.errors.PixelgroupError` (bad
config, data, checkpoint or argument) or a missing file becomes one line on stderr and exit
status 2; any other exception is a bug and shows its traceback. A subcommand's ``--quiet``
turns off its progress bars, the library's notes (what training chose from the data) and
the notes that images of a mode are converted on load
(:func:`~pixelgroup.data.io.conversion_notes`); warnings and errors stay.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

from pixelgroup.errors import PixelgroupError

__all__ = [
    "main",
    "build_parser",
    "SUBCOMMAND_MODULES",
    "add_overrides_argument",
    "add_threads_argument",
    "default_threads",
    "set_threads",
    "device_from_overrides",
    "override_checkpoint_config",
    "FIXED_BY_CHECKPOINT",
    "one_line",
]

# Module names under pixelgroup.cli, in the order `pixelgroup --help` lists them.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "demo",
    "train",
    "eval",
    "tune",
    "predict",
    "bench",
    "analyze",
    "eval_boundaries",
    "eval_proposals",
    "eval_instances",
    "export",
    "rehearse",
)


class UserError(PixelgroupError):
    """A problem with the command line's arguments: a one-line message, not a traceback."""


def add_overrides_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE`` (repeatable) into ``args.overrides``."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help
    )


def add_tile_arguments(parser: argparse.ArgumentParser, tile_help: str, halo_help: str) -> None:
    """``--tile N`` and ``--halo N`` (None: the library's defaults) into ``args.tile`` /
    ``args.halo``; check them with :func:`check_tile_arguments` before any work."""
    parser.add_argument("--tile", type=int, default=None, metavar="N", help=tile_help)
    parser.add_argument("--halo", type=int, default=None, metavar="N", help=halo_help)


def check_tile_arguments(tile: int | None, halo: int | None) -> None:
    """A one-line :class:`UserError` for ``--tile`` / ``--halo`` values the tiled inference
    refuses, before a model is loaded."""
    from pixelgroup.engine.inference import DEFAULT_HALO, DEFAULT_TILE
    from pixelgroup.postprocess.tiles import check_tile_sizes

    try:
        check_tile_sizes(tile or DEFAULT_TILE, DEFAULT_HALO if halo is None else halo, min_halo=16)
    except ValueError as e:
        raise UserError(f"--tile / --halo: {e}") from None


def default_threads() -> int | None:
    """The torch threads of every command without ``--threads``: None (torch's own choice)
    where ``OMP_NUM_THREADS`` is set (torchrun sets it per process), else one less than the
    cores this process may run on, at least one.

    The thread policy, in this one place: one core stays free for the rest of the machine (the
    DataLoader worker, other jobs). On 2 cores shared with other work, 2 threads made the toy
    training step 2.7-3.7x slower than one and group_pixels 12x (every parallel region waits
    for a descheduled thread), where on a quiet machine they were 1.3x faster
    (docs/benchmarks.md §6.2, docs/toy.md "Threads"). Fixed per machine, never chosen from
    the current load, so results stay deterministic for a machine and a thread count."""
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) - 1)


def add_threads_argument(
    parser: argparse.ArgumentParser, default: int | None = None, why: str = ""
) -> None:
    """``--threads N`` into ``args.threads`` (None: :func:`default_threads`); apply with
    set_threads."""
    cores = "one less than the cores, at least 1; OMP_NUM_THREADS where set"
    shown = cores if default is None else str(default)
    text = f"CPU threads for torch (default: {shown}{why})"
    parser.add_argument("--threads", type=int, default=default, help=text)


def set_threads(threads: int | None) -> None:
    """``torch.set_num_threads`` with a one-line error for values below 1; None applies
    :func:`default_threads`."""
    if threads is None:
        threads = default_threads()
        if threads is None:
            return
    if threads < 1:
        raise UserError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def device_from_overrides(device: str, overrides: list[str]) -> Any:
    """The ``torch.device`` that ``eval`` / ``predict`` run a checkpoint on: the CPU unless
    ``--set device=...`` asks for ``device`` (the device it was trained on may be absent
    here); an absent CUDA is a one-line error."""
    from pixelgroup.engine.distributed import init_distributed

    asked = any(o.split("=", 1)[0].strip() == "device" for o in overrides)
    return init_distributed(device if asked else "cpu")[1]


#: config keys (and sections) whose value a checkpoint's weights were built and trained with
FIXED_BY_CHECKPOINT = ("task", "model.name", "model.options")


def override_checkpoint_config(cfg: Any, overrides: list[str], checkpoint: Any) -> Any:
    """A checkpoint's config with ``--set`` overrides for ``eval`` / ``predict``; overriding a
    key of :data:`FIXED_BY_CHECKPOINT` (the model is already built) is a UserError naming it,
    not a change that silently does nothing; the task checks its ``loss`` keys, and a
    ``grouping.min_area`` of ``auto`` (training's to choose) is a ConfigError."""
    from pixelgroup.config import override_config
    from pixelgroup.tasks import get_task
    from pixelgroup.tasks.base import task_loss_options

    for item in overrides:
        key = item.split("=", 1)[0].strip()
        fixed = [f for f in FIXED_BY_CHECKPOINT if key == f or key.startswith(f"{f}.")]
        if fixed:
            raise UserError(
                f"--set {key}: {fixed[0]} is fixed by {checkpoint} (its model was built and "
                f"trained with it); train another checkpoint to change it"
            )
    cfg = override_config(cfg, overrides)
    task_loss_options(get_task(cfg.task), cfg)
    cfg.grouping.min_area_pixels()  # "auto" is training's to choose: named before any work
    return cfg


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pixelgroup",
        description="Group pixels into instances, boundaries and proposals with a hypersphere "
        "embedding and recurrent mean shift.",
        epilog="Run `pixelgroup <subcommand> --help` for examples.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="<subcommand>", required=True)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(f"pixelgroup.cli.{name}").add_parser(subparsers)
    return parser


def one_line(error: BaseException) -> str:
    """The message of ``error``; for one re-raised from a DataLoader worker (torch puts the
    worker's whole traceback into the message), the original message alone."""
    text = str(error)
    if "Original Traceback" in text:
        last = text.strip().splitlines()[-1]  # "pixelgroup.errors.DataError: <message>"
        text = last.split(": ", 1)[-1]
    return text


@contextlib.contextmanager
def _library_log(quiet: bool) -> Iterator[None]:
    """While a command runs, print the ``pixelgroup`` loggers' records on stderr, one line
    each: notes (INFO) and warnings, or warnings only when ``quiet`` and in every process of a
    ``torchrun`` but the first (``RANK`` > 0: one copy of each note)."""
    log = logging.getLogger("pixelgroup")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = log.level
    notes = not quiet and os.environ.get("RANK", "0") == "0"
    log.setLevel(logging.INFO if notes else logging.WARNING)
    log.addHandler(handler)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet = bool(getattr(args, "quiet", False))
    try:
        with _library_log(quiet):
            if quiet:  # --quiet: no progress bars, no conversion notes
                from pixelgroup.data.io import conversion_notes

                with conversion_notes(False):
                    return int(args.run(args) or 0)
            return int(args.run(args) or 0)
    except (PixelgroupError, FileNotFoundError, NotADirectoryError, IsADirectoryError) as e:
        # the project's own errors and missing/wrong paths are the user's to fix; anything
        # else is a bug and keeps its traceback
        print(f"pixelgroup {args.command}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pixelgroup {args.command}: interrupted", file=sys.stderr)
        return 130
