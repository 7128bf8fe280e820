"""Output paths checked before any computing: a folder that can be created and written, a
file that can be written, is not silently replaced and is never one of the command's inputs."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from pixelgroup.cli import UserError

__all__ = ["check_writable_dir", "check_writable_file", "check_not_input", "fresh_path"]


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
    if not _can_write(base):
        raise UserError(f"{flag} {path}: cannot write in {base}")


def _can_write(folder: Path) -> bool:
    """Whether a file can be created in ``folder``: tried, as ``os.access`` says yes to root
    even where writes fail (``/proc``, a read-only mount)."""
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".pixelgroup-write-test.")
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


def check_writable_file(
    path: str | Path, flag: str, *, overwrite: bool = False, inputs: Iterable[str | Path] = ()
) -> None:
    """``path`` can be written as a file: not a folder, its folder writable, not one of
    ``inputs`` (:func:`check_not_input`) and not an existing file unless ``overwrite`` (else
    UserError)."""
    path = Path(path)
    check_not_input(path, flag, inputs)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise UserError(f"{flag} {path} exists; pass --overwrite to replace it")
    check_writable_dir(path.parent, flag)


def check_not_input(path: str | Path, flag: str, inputs: Iterable[str | Path]) -> None:
    """UserError when ``path`` is one of ``inputs`` (the same file, by ``os.path.samefile``) or
    an existing file inside an input that is a folder (e.g. the ground truth): replacing it
    would destroy what the command reads, so not even ``--overwrite`` allows it."""
    path = Path(path)
    if not path.exists():
        return
    for source in map(Path, inputs):
        if not source.exists():
            continue
        if os.path.samefile(path, source):
            raise UserError(f"{flag} {path} is an input of this command; write to another file")
        if source.is_dir() and any(
            parent.exists() and os.path.samefile(parent, source) for parent in path.parents
        ):
            raise UserError(
                f"{flag} {path} is inside the input folder {source}; write to another file"
            )


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
