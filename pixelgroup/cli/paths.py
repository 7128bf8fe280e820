"""Output paths checked before any computing: a folder that can be created and written, a
file that can be written and is not silently replaced."""

from __future__ import annotations

import os
from pathlib import Path

from pixelgroup.cli import UserError

__all__ = ["check_writable_dir", "check_writable_file", "fresh_path"]


def _writable_ancestor(path: Path) -> Path:
    """The nearest existing folder at or above ``path``."""
    for parent in (path, *path.parents):
        if parent.exists():
            return parent
    return Path.cwd()


def check_writable_dir(path: str | Path, flag: str) -> None:
    """``path`` is, or can become, a folder this process may write into (else UserError)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file, not a folder")
    base = _writable_ancestor(path)
    if not base.is_dir():
        raise UserError(f"{flag} {path}: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: cannot write in {base}")


def check_writable_file(path: str | Path, flag: str, *, overwrite: bool = False) -> None:
    """``path`` can be written as a file: not a folder, its folder writable, and not an
    existing file unless ``overwrite`` (else UserError)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise UserError(f"{flag} {path} exists; pass --overwrite to replace it")
    check_writable_dir(path.parent, flag)


def fresh_path(path: str | Path) -> Path:
    """``path`` if it does not exist, else the first free ``stem-2.ext``, ``stem-3.ext``, ...
    beside it (files and folders alike), so earlier results are kept."""
    path = Path(path)
    n = 2
    candidate = path
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        n += 1
    return candidate
