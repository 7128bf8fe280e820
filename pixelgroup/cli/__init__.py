"""``pixelgroup <subcommand>``: each subcommand is a module here with ``add_parser`` and ``run``.

A subcommand module defines ``add_parser(subparsers)`` (registering its parser, with examples in
its epilog, and ``set_defaults(run=run)``) and ``run(args) -> int``. Modules only parse
arguments and call into the library. A :class:`~pixelgroup.errors.PixelgroupError` (bad
config, data, checkpoint or argument) or a missing file becomes one line on stderr and exit
status 2; any other exception is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from pixelgroup.errors import PixelgroupError

__all__ = [
    "main",
    "build_parser",
    "SUBCOMMAND_MODULES",
    "add_overrides_argument",
    "add_threads_argument",
    "set_threads",
    "device_from_overrides",
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


def add_threads_argument(
    parser: argparse.ArgumentParser, default: int | None = None, why: str = ""
) -> None:
    """``--threads N`` into ``args.threads`` (None: torch's choice); apply with set_threads."""
    shown = "torch's choice, one per core" if default is None else str(default)
    text = f"CPU threads for torch (default: {shown}{why})"
    parser.add_argument("--threads", type=int, default=default, help=text)


def set_threads(threads: int | None) -> None:
    """``torch.set_num_threads`` with a one-line error for values below 1; None keeps torch's."""
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (PixelgroupError, FileNotFoundError, NotADirectoryError, IsADirectoryError) as e:
        # the project's own errors and missing/wrong paths are the user's to fix; anything
        # else is a bug and keeps its traceback
        print(f"pixelgroup {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pixelgroup {args.command}: interrupted", file=sys.stderr)
        return 130
