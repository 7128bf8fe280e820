"""The project's error types: a problem with the user's input, reported in one line.

Every error here subclasses :class:`PixelgroupError` and a builtin (``ValueError``), so
``except ValueError`` keeps working. The command line turns a :class:`PixelgroupError` into a
one-line message with exit status 2; any other exception is a bug and shows its traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "PixelgroupError",
    "ConfigError",
    "DataError",
    "CheckpointError",
    "InputError",
    "InputTypeError",
    "data_errors",
]


class PixelgroupError(Exception):
    """Base of the errors that describe bad input rather than a bug."""


class ConfigError(PixelgroupError, ValueError):
    """A config file, option or ``--set`` override that does not fit the schema."""


class DataError(PixelgroupError, ValueError):
    """A dataset, image or annotation file that cannot be used (names the file)."""


class CheckpointError(PixelgroupError, ValueError):
    """A checkpoint that is missing, corrupt or does not fit its model."""


class InputError(PixelgroupError, ValueError):
    """A tensor or argument given to a public function that it cannot use (names it)."""


class InputTypeError(PixelgroupError, TypeError):
    """An argument of the wrong type given to a public function (names it)."""


@contextmanager
def data_errors(prefix: str = "") -> Iterator[None]:
    """Report a ``ValueError`` raised inside (bad data handed to the library) as a one-line
    :class:`DataError` with ``prefix`` (e.g. the image) in front; without a prefix the
    project's own errors pass through unchanged."""
    try:
        yield
    except (PixelgroupError, ValueError) as e:
        if isinstance(e, PixelgroupError) and not prefix:
            raise
        raise DataError(f"{prefix}{e}") from None
