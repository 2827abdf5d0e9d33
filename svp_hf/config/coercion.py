"""Types: every recipe value is checked against its field's annotation, for recipe files, command-line flags and
Python keyword arguments alike (a YAML ``batch_size: [64, 32]`` or ``fraction: true`` is refused, never coerced)."""

from __future__ import annotations

import math
import typing
from dataclasses import fields
from typing import Any, List, Optional, Sequence

from ..errors import SVPConfigError

_TRUE, _FALSE = ("true", "yes", "y", "t", "1", "on"), ("false", "no", "n", "f", "0", "off")


def _kind(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


# More data-loader worker processes than this per process is a typo, not a setting (each is a process of its own).
MAX_WORKERS = 256


# The largest integer any setting may take: every count, size and seed ends up in a 64-bit integer somewhere.
MAX_INT = 2**63 - 1


def _whole(value: Any) -> Optional[int]:
    """`value` as a whole number (an int, a float or text with no fractional part), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)  # exactly, however many digits
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            return None
        return int(number) if number.is_integer() else None
    return None


def _to_int(name: str, value: Any) -> int:
    number = _whole(value)
    if number is None:
        raise SVPConfigError(f"{name} must be an integer, got {_kind(value)}")
    if abs(number) > MAX_INT:
        raise SVPConfigError(f"{name} is too large: {number} (at most {MAX_INT})")
    return number


def _to_float(name: str, value: Any) -> float:
    number = None
    if not isinstance(value, bool):
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())  # YAML 1.1 reads 5e-4 as a string
            except ValueError:
                pass
    if number is None:
        raise SVPConfigError(f"{name} must be a number, got {_kind(value)}")
    if not math.isfinite(number):
        raise SVPConfigError(f"{name} must be a finite number, got {value!r}")
    return number


def _to_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise SVPConfigError(f"{name} must be true or false, got {_kind(value)}")


def _to_str(name: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # YAML reads `train_split: 2020` as a number
    raise SVPConfigError(f"{name} must be a string, got {_kind(value)}")


_SCALARS = {int: _to_int, float: _to_float, bool: _to_bool, str: _to_str}


def _split_items(value: str, separators: str) -> List[str]:
    """`value` split on any of the characters in `separators`, items stripped, empty ones dropped."""
    for sep in separators[1:]:
        value = value.replace(sep, separators[0])
    return [item.strip() for item in value.split(separators[0]) if item.strip()]


def coerce(name: str, value: Any, annotation: Any, *, split: str = ", ") -> Any:
    """`value` checked against (and converted to) the type `annotation`; a clear error naming `name` otherwise.

    ``Optional[X]`` takes None; ``List[X]`` takes a list, or one string split on the characters in `split`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union:
        if value is None:
            return None
        (annotation,) = [a for a in args if a is not type(None)]
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (list, List):
        item = args[0] if args else str
        if isinstance(value, str):
            value = _split_items(value, split) if split else [value]
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and item is int:
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise SVPConfigError(f"{name} must be a list, got {_kind(value)}")
        return [coerce(f"{name}[{i}]", v, item) for i, v in enumerate(value)]
    if annotation is Any:
        return value
    return _SCALARS[annotation](name, value)


# Fields whose value is checked by their dataclass, not by their annotation (a path, a list of paths or a mapping).
_UNTYPED = ("data_files",)


# How a single string is split into a list field's items (default: on commas and spaces); "" keeps it whole.
_SPLIT = {"labels_from": "", "class_names": ","}


def coerce_fields(instance) -> None:
    """Check (and convert) every field of a dataclass instance against its annotation."""
    hints = typing.get_type_hints(type(instance))
    for f in fields(instance):
        if f.name in _UNTYPED:
            continue
        value = getattr(instance, f.name)
        setattr(instance, f.name, coerce(f.name, value, hints[f.name], split=_SPLIT.get(f.name, ", ")))


def _none_if_empty(value):
    return None if value in ("", "none", "None") else value


def _at_least_one(instance, names: Sequence[str]) -> None:
    for name in names:
        value = getattr(instance, name)
        if value is not None and value < 1:
            raise SVPConfigError(f"{name} must be at least 1, got {value}")
