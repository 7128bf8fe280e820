"""Input validation shared by the public functions.

Every check raises ``ValueError`` or ``TypeError`` with one message per problem that names the
argument, what was expected and the value received, so that bad input never surfaces as a
traceback from deep inside an op. Scalars may be Python numbers, NumPy scalars or 0-d tensors;
the checks return them as Python ``int`` / ``float``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch

from pixelgroup.errors import InputError, InputTypeError

__all__ = [
    "MIN_BANDWIDTH",
    "check_tensor",
    "check_rank",
    "check_shape",
    "check_points",
    "check_labels",
    "check_real",
    "check_positive",
    "check_bandwidth",
    "check_finite_number",
    "check_in_range",
    "check_int",
    "check_non_negative_int",
    "check_count",
    "check_size",
    "check_optional_int",
    "check_choice",
    "check_generator",
    "check_weights",
    "check_finite",
    "check_unit_rows",
]

# δ below 1e-8 means κ = 1/δ² > 1e16: a logit κ·x_i·x_j then carries an absolute rounding
# error above 1 even in float64 (κ·2^-53 > 1), so no dtype resolves the kernel any more.
MIN_BANDWIDTH = 1e-8


def check_tensor(x: object, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        hint = "; convert it with torch.from_numpy" if type(x).__module__ == "numpy" else ""
        raise InputTypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}{hint}")
    return x


def check_rank(x: torch.Tensor, ranks: tuple[int, ...], name: str, layout: str) -> None:
    if x.dim() not in ranks:
        raise InputError(
            f"{name} must have shape {layout} ({' or '.join(map(str, ranks))} dims), "
            f"got shape {tuple(x.shape)}"
        )


def check_shape(
    x: torch.Tensor | np.ndarray, layout: Sequence[str | int], name: str
) -> dict[str, int]:
    """``x`` has the dims of ``layout`` (as kornia's ``KORNIA_CHECK_SHAPE``): a letter is any
    size, the same letter twice the same size, an int exactly that size. Returns the size of
    each letter.

    Example:
        >>> check_shape(torch.zeros(2, 8, 5, 7), ["B", "D", "H", "W"], "embedding")
        {'B': 2, 'D': 8, 'H': 5, 'W': 7}
        >>> check_shape(torch.zeros(3, 5, 7), ["B", 3, "H", "W"], "image")
        Traceback (most recent call last):
        ...
        pixelgroup.errors.InputError: image must have shape (B, 3, H, W), got shape (3, 5, 7)
    """
    shape = tuple(int(n) for n in x.shape)
    sizes: dict[str, int] = {}
    fits = len(shape) == len(layout)
    for size, want in zip(shape, layout, strict=False):
        if isinstance(want, int):
            fits = fits and size == want
        else:
            fits = fits and sizes.setdefault(want, size) == size
    if not fits:
        raise InputError(
            f"{name} must have shape ({', '.join(map(str, layout))}), got shape {shape}"
        )
    return sizes


def check_points(x: object, name: str = "x") -> torch.Tensor:
    """A floating ``(B, N, D)`` point set with B, N, D >= 1."""
    x = check_tensor(x, name)
    check_rank(x, (3,), name, "(B, N, D)")
    if not x.is_floating_point():
        raise InputTypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if min(x.shape) == 0:
        raise InputError(
            f"{name} must have B >= 1 images of N >= 1 points of D >= 1 dims (B, N, D), "
            f"got shape {tuple(x.shape)}"
        )
    return x


def check_labels(labels: object, shape: tuple[int, ...], name: str = "labels") -> torch.Tensor:
    """An integer label tensor of exactly ``shape``."""
    labels = check_tensor(labels, name)
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise InputTypeError(f"{name} must be an integer tensor, got dtype {labels.dtype}")
    if tuple(labels.shape) != tuple(shape):
        raise InputError(
            f"{name} must have shape {tuple(shape)} to match the embeddings, "
            f"got {tuple(labels.shape)}"
        )
    return labels


def _scalar(value: object, name: str, kind: str) -> object:
    """A 0-d tensor's Python value; other tensors are a TypeError."""
    if isinstance(value, torch.Tensor):
        if value.dim() != 0:
            raise InputTypeError(
                f"{name} must be {kind}, got a tensor of shape {tuple(value.shape)}"
            )
        if value.dtype == torch.bool or value.is_complex():
            raise InputTypeError(f"{name} must be {kind}, got a {value.dtype} tensor")
        return value.item()
    return value


def _is_bool(value: object) -> bool:
    return isinstance(value, (bool, np.bool_))


def check_real(value: object, name: str) -> float:
    """A real number (Python, NumPy or 0-d tensor; not bool) as a Python float (an int stays
    an int)."""
    value = _scalar(value, name, "a number")
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise InputTypeError(f"{name} must be a number, got {type(value).__name__}")
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def check_finite_number(value: object, name: str, minimum: float | None = None) -> float:
    """A finite real number, optionally ``>= minimum``."""
    number = check_real(value, name)
    if not math.isfinite(number):
        raise InputError(f"{name} must be finite, got {number!r}")
    if minimum is not None and number < minimum:
        raise InputError(f"{name} must be >= {minimum:g}, got {number!r}")
    return number


def check_positive(value: object, name: str) -> float:
    """A finite real number > 0."""
    number = check_real(value, name)
    if not (number > 0 and math.isfinite(number)):
        raise InputError(f"{name} must be a finite number > 0, got {number!r}")
    return float(number)


def check_bandwidth(value: object, name: str = "bandwidth") -> float:
    """The kernel bandwidth δ: finite and in [MIN_BANDWIDTH, inf)."""
    number = check_positive(value, name)
    if number < MIN_BANDWIDTH:
        raise InputError(
            f"{name} must be >= {MIN_BANDWIDTH:g} (κ = 1/δ² above 1e16 is beyond float64's "
            f"resolution of the kernel), got {number!r}"
        )
    return float(number)


def check_in_range(
    value: object,
    name: str,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A real number in the interval from ``low`` to ``high`` (closed unless told open)."""
    number = check_real(value, name)
    above = number > low if low_open else number >= low
    below = number < high if high_open else number <= high
    if not (above and below):  # NaN fails both
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise InputError(f"{name} must lie in {interval}, got {number!r}")
    return number


def _describe(value: object) -> str:
    kind = type(value).__name__
    return f"{kind} {value}" if isinstance(value, numbers.Number) else kind


def check_int(value: object, name: str, minimum: int | None = None) -> int:
    """An integer (Python, NumPy or 0-d integer tensor; not bool, not a float such as 2.0) as
    a Python int, optionally ``>= minimum``."""
    if isinstance(value, torch.Tensor) and value.dim() == 0 and value.is_floating_point():
        raise InputTypeError(f"{name} must be an int, got a {value.dtype} tensor {value.item()}")
    value = _scalar(value, name, "an int")
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise InputTypeError(f"{name} must be an int, got {_describe(value)}")
    number = int(value)
    if minimum is not None and number < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {number}")
    return number


def check_non_negative_int(value: object, name: str) -> int:
    return check_int(value, name, minimum=0)


def check_count(value: object, name: str, minimum: int = 1) -> int:
    """An integer >= ``minimum`` (Python or NumPy; not bool, not a float) as a Python int;
    anything else, of whatever type, is one :class:`~pixelgroup.errors.InputError` that
    states both requirements (``"{name} must be an int >= 1, got 0"``)."""
    if _is_bool(value) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InputError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_size(value: object, name: str = "image_size") -> tuple[int, int]:
    """An ``(H, W)`` pair of ints >= 1 (any sequence of two) as a tuple of Python ints."""
    size = tuple(value) if isinstance(value, (Sequence, torch.Size)) else ()
    if len(size) != 2 or any(
        _is_bool(v) or not isinstance(v, numbers.Integral) or v < 1 for v in size
    ):
        raise InputError(f"{name} must be (H, W) with positive ints, got {value!r}")
    return int(size[0]), int(size[1])


def check_optional_int(value: object, name: str) -> int | None:
    """``None`` or an integer."""
    if value is None:
        return None
    if _is_bool(value) or not isinstance(value, (numbers.Integral, torch.Tensor)):
        raise InputTypeError(f"{name} must be an int or None, got {_describe(value)}")
    return check_int(value, name)


def check_choice(value: object, name: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InputError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_generator(generator: object, name: str = "generator") -> torch.Generator | None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise InputTypeError(
            f"{name} must be a torch.Generator or None, got {type(generator).__name__}"
        )
    return generator


def check_weights(values: object, name: str, length: int, counted: str = "") -> list[float]:
    """``length`` finite, non-negative real numbers (a sequence, 1-D array or 1-D tensor);
    ``counted`` says where the length comes from (e.g. ``"num_iters + 1"``)."""
    if isinstance(values, (str, bytes)) or not isinstance(
        values, (Sequence, np.ndarray, torch.Tensor)
    ):
        raise InputTypeError(
            f"{name} must be a sequence of {length} numbers or None, got {type(values).__name__}"
        )
    items = list(values.tolist() if isinstance(values, (np.ndarray, torch.Tensor)) else values)
    if len(items) != length:
        source = f"{counted} = " if counted else ""
        raise InputError(f"{name} needs {source}{length} values, got {len(items)}")
    return [
        float(check_finite_number(item, f"{name}[{i}]", minimum=0.0))
        for i, item in enumerate(items)
    ]


def check_finite(x: torch.Tensor, name: str) -> None:
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise InputError(f"{name} contains {bad} non-finite values (NaN or inf)")


def check_unit_rows(
    x: torch.Tensor,
    name: str,
    tol: float = 1e-2,
    *,
    dim: int = -1,
    what: str = "rows along the last dim",
) -> None:
    """Vectors along ``dim`` must have norm <= 1 + tol (they are points on the sphere; shorter
    ones, zero included, are accepted)."""
    norm = float(x.detach().float().norm(dim=dim).max())
    if norm > 1.0 + tol:
        raise InputError(
            f"{name} must hold unit-norm {what} (max norm {norm:.4g}); "
            "call pixelgroup.ops.normalize_to_sphere first"
        )
