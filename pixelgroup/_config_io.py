"""Reading configs: frozen dataclasses from YAML values and ``--set key=value`` overrides.

YAML holds values only (no import paths). Unknown keys are an error that names the key and
lists the valid ones, so a typo never silently falls back to a default. Every number must be
finite, and a field whose metadata is a :func:`rule` must keep to it (a range, or a set of
choices): :func:`from_dict` checks both when a config is read, so a bad value is one error naming
the key, never a run that trains garbage. Configs round-trip through plain dicts, which is how
checkpoints carry them.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from pixelgroup.errors import ConfigError

__all__ = [
    "from_dict",
    "to_dict",
    "load_config",
    "apply_overrides",
    "coerce_value",
    "rule",
    "option",
    "rest_field",
    "ConfigError",
]

T = TypeVar("T")


class _Loader(yaml.SafeLoader):
    """YAML 1.1 with YAML 1.2 floats: ``1e-3`` is a number, not the string PyYAML makes it."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _yaml(text: str, where: str) -> Any:
    """Parse YAML ``text``; a syntax error becomes one line naming ``where``."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML ({problem})") from None


def rule(
    *,
    min: float | None = None,
    above: float | None = None,
    max: float | None = None,
    choices: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Dataclass field metadata that :func:`from_dict` enforces: a number (or each number of a
    tuple) ``>= min``, ``> above``, ``<= max``; a string one of ``choices`` (an ``int | str``
    field may have both). ``None`` (an unset optional field) always passes.

    Example:
        >>> from dataclasses import dataclass, field
        >>> @dataclass(frozen=True)
        ... class Optim:
        ...     lr: float = field(default=1e-3, metadata=rule(above=0))
        >>> from_dict(Optim, {"lr": -1.0})
        Traceback (most recent call last):
        ...
        pixelgroup.errors.ConfigError: lr must be > 0, got -1.0
    """
    return {"rule": {"min": min, "above": above, "max": max, "choices": choices}}


def option(default: Any, **limits: Any) -> Any:
    """A dataclass field with ``default`` and the :func:`rule` ``limits`` (``min``, ``above``,
    ``max``, ``choices``), for the option classes of datasets and tasks."""
    return dataclasses.field(default=default, metadata=rule(**limits))


def _bounded(r: dict[str, Any]) -> bool:
    """A :func:`rule` that bounds numbers (so a field of it may hold one)."""
    return any(r[k] is not None for k in ("min", "above", "max"))


def _check_rule(value: Any, metadata: Any, key: str, optional: bool) -> None:
    """Raise :class:`ConfigError` naming ``key`` when ``value`` breaks its field's :func:`rule`
    (``optional``: the field may also be null, and the message says so)."""
    r = metadata.get("rule")
    if r is None or value is None:
        return
    for v in value if isinstance(value, tuple) else (value,):
        if isinstance(v, str) and r["choices"] is not None and v not in r["choices"]:
            options = ", ".join(repr(c) for c in r["choices"])
            number = " or a number" if _bounded(r) else ""
            raise ConfigError(f"{key} must be one of {options}{number}, got {v!r}")
        if not isinstance(v, str) and (
            (r["min"] is not None and v < r["min"])
            or (r["above"] is not None and v <= r["above"])
            or (r["max"] is not None and v > r["max"])
        ):
            bounds = [
                f"{op} {b}"
                for op, b in ((">=", r["min"]), (">", r["above"]), ("<=", r["max"]))
                if b is not None
            ]
            null = " or null" if optional else ""
            words = " or ".join(repr(c) for c in r["choices"] or ())
            alternatives = f" or {words}" if words else ""
            raise ConfigError(
                f"{key} must be {' and '.join(bounds)}{null}{alternatives}, got {v!r}"
            )


def coerce_value(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked against (and converted to) the annotation ``tp``; int -> float,
    lists -> tuples, nested dataclasses from mappings; a mismatch raises ConfigError naming
    ``key``."""
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce_value(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        item_type = typing.get_args(tp)[0] if typing.get_args(tp) else Any
        return tuple(coerce_value(v, item_type, key) for v in value)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        return float(value)
    if tp is float:
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp in (int, str, bool) and type(value) is not tp:
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
    return value


def rest_field() -> Any:
    """A dataclass field that :func:`from_dict` fills with the keys that are not the other
    fields' (a mapping, read later by whoever owns them) and :func:`to_dict` writes back
    beside them: the section keeps one flat layout in YAML and checkpoints."""
    return dataclasses.field(default_factory=dict, metadata={"rest": True})


def _is_rest(f: dataclasses.Field) -> bool:
    return bool(f.metadata.get("rest"))


def from_dict(cls: type[T], values: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a (nested) dict; unknown keys raise :class:`ConfigError`
    (or, where ``cls`` has a :func:`rest_field`, go into it)."""
    all_fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    fields = {f.name: f for f in all_fields if not _is_rest(f)}
    rest = [f.name for f in all_fields if _is_rest(f)]
    unknown = sorted(set(values) - set(fields))
    if unknown and not rest:
        raise ConfigError(
            f"unknown config key '{prefix}{unknown[0]}'; "
            f"valid keys here: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {name: {k: values[k] for k in unknown} for name in rest}
    for name, v in values.items():
        if name not in fields:
            continue
        key = f"{prefix}{name}"
        kwargs[name] = coerce_value(v, hints[name], key)
        optional = type(None) in typing.get_args(hints[name])
        _check_rule(kwargs[name], fields[name].metadata, key, optional)
    return cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict (tuples become lists) for YAML/JSON/checkpoints."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            out: dict[str, Any] = {}
            for f in dataclasses.fields(v):
                value = plain(getattr(v, f.name))
                if _is_rest(f):
                    out.update(value)
                else:
                    out[f.name] = value
            return out
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(config)


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``["a.b=1", "c=[1, 2]"]`` (YAML-parsed values) to a nested dict copy."""
    out = yaml.safe_load(yaml.safe_dump(values)) or {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        node = out
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {p!r} is not a section")
        node[leaf] = _yaml(raw, f"--set {item}")
    return out


def load_config(cls: type[T], path: str | Path | None, overrides: list[str] | None = None) -> T:
    """Read YAML at ``path`` (or start from the defaults), apply overrides, validate."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        values = _yaml(path.read_text(), str(path)) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
    return from_dict(cls, apply_overrides(values, overrides or []))


def checked_options(fn: Callable[..., Any], options: Mapping[str, Any], section: str) -> dict:
    """``options`` checked against ``fn``'s signature: unknown keys and values that do not
    fit the annotation raise :class:`ConfigError` naming ``section.key``."""
    target = fn.__init__ if inspect.isclass(fn) else fn  # type: ignore[misc]
    params = inspect.signature(fn).parameters
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # an annotation that cannot be resolved: check names only
        hints = {}
    valid = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    out = {}
    for key, value in options.items():
        if key not in valid:
            raise ConfigError(
                f"unknown config key '{section}.{key}'; valid keys here: {', '.join(valid)}"
            )
        out[key] = coerce_value(value, hints[key], f"{section}.{key}") if key in hints else value
    return out
