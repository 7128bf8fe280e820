"""Write files all-or-nothing: to a temp file in the target folder, then ``os.replace``."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "write_text", "write_json"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it replaces ``path``, on error it is removed.

    The file gets the usual permissions (0o666 minus the umask), not mkstemp's 0o600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(text: str, path: str | os.PathLike) -> None:
    """Write ``text`` to ``path`` all-or-nothing."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _json_ready(data: Any) -> Any:
    """``data`` with every NaN / infinite float (in dicts, lists, tuples) replaced by None."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {k: _json_ready(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_json_ready(v) for v in data]
    return data


def write_json(data: Any, path: str | os.PathLike) -> None:
    """Write ``data`` as indented JSON to ``path`` all-or-nothing; a NaN or infinite float (an
    undefined score) becomes ``null``, as JSON has no NaN."""
    write_text(json.dumps(_json_ready(data), indent=2, allow_nan=False) + "\n", path)
