"""Field validators of the config dataclasses: one set for every config of the package.

Each check reads ``getattr(obj, name)`` and raises :class:`ConfigError` as
``"<Class>.<field>: must be ..., got <value>"``; bools are never numbers. :func:`alpha` is the
one check of an MI threshold (bits, >= 0, inf allowed), for configs and functions alike.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NoReturn

from pam_explorer.core.errors import ConfigError


def fail(obj: object, name: str, msg: str) -> NoReturn:
    """Raise ConfigError("<Class>.<name>: <msg>")."""
    raise ConfigError(f"{type(obj).__name__}.{name}: {msg}")


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def integer(obj: object, name: str) -> None:
    if not is_int(getattr(obj, name)):
        fail(obj, name, f"must be an integer, got {getattr(obj, name)!r}")


def positive_int(obj: object, name: str) -> None:
    v = getattr(obj, name)
    if not is_int(v) or v <= 0:
        fail(obj, name, f"must be a positive integer, got {v!r}")


def non_negative_int(obj: object, name: str) -> None:
    v = getattr(obj, name)
    if not is_int(v) or v < 0:
        fail(obj, name, f"must be an integer >= 0, got {v!r}")


def finite(obj: object, name: str) -> None:
    if not is_number(getattr(obj, name)):
        fail(obj, name, f"must be a finite number, got {getattr(obj, name)!r}")


def finite_positive(obj: object, name: str) -> None:
    v = getattr(obj, name)
    if not is_number(v) or v <= 0:
        fail(obj, name, f"must be a finite number > 0, got {v!r}")


def finite_non_negative(obj: object, name: str) -> None:
    v = getattr(obj, name)
    if not is_number(v) or v < 0:
        fail(obj, name, f"must be a finite number >= 0, got {v!r}")


def in_interval(obj: object, name: str, low: float, high: float, closed_high: bool = False) -> None:
    """low < value < high, or low < value <= high when ``closed_high``."""
    v = getattr(obj, name)
    if not is_number(v) or not (low < v < high or (closed_high and v == high)):
        fail(obj, name, f"must be in ({low:g}, {high:g}{']' if closed_high else ')'}, got {v!r}")


def choice(obj: object, name: str, choices: Sequence[Any]) -> None:
    v = getattr(obj, name)
    if v not in choices:
        fail(obj, name, f"must be one of {list(choices)}, got {v!r}")


def boolean(obj: object, name: str) -> None:
    if not isinstance(getattr(obj, name), bool):
        fail(obj, name, f"must be True or False, got {getattr(obj, name)!r}")


def device(obj: object, name: str = "device") -> None:
    v = getattr(obj, name)
    if not isinstance(v, str) or not v:
        fail(obj, name, f"must be 'auto', 'cpu' or 'cuda[:i]', got {v!r}")


def alpha(value: Any, where: str = "") -> None:
    """An MI threshold in bits: a number >= 0, inf allowed (NaN and bools are not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
        raise ConfigError(f"{where + ': ' if where else ''}alpha must be a number >= 0 (inf allowed), "
                          f"got {value!r}")


__all__ = ["fail", "is_int", "is_number", "integer", "positive_int", "non_negative_int", "finite",
           "finite_positive", "finite_non_negative", "in_interval", "choice", "boolean", "device", "alpha"]
