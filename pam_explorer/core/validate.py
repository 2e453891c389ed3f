"""Field validators of the config dataclasses: one set for every config of the package.

Each check reads ``getattr(obj, name)`` and raises :class:`ConfigError` as
``"<Class>.<field>: must be ..., got <value>"``; bools are never numbers. :func:`alpha` is the
one check of an MI threshold (bits, >= 0, inf allowed), for configs and functions alike.
"""
from __future__ import annotations

import math
import re
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


SEED_LIMIT = 2 ** 32  # seeds are integers in [0, 2**32): what every seeded generator takes as is
DEVICE_FORM = re.compile(r"auto|cpu|cuda(:[0-9]{1,3})?")  # the devices a run can be placed on


def is_seed(v: Any) -> bool:
    return is_int(v) and 0 <= v < SEED_LIMIT


def seed(obj: object, name: str = "seed") -> None:
    if not is_seed(getattr(obj, name)):
        fail(obj, name, f"must be an integer in [0, 2**32), got {getattr(obj, name)!r}")


def is_device(v: Any) -> bool:
    return isinstance(v, str) and DEVICE_FORM.fullmatch(v) is not None


def device(obj: object, name: str = "device") -> None:
    if not is_device(getattr(obj, name)):
        fail(obj, name, f"must be 'auto', 'cpu', 'cuda' or 'cuda:i', got {getattr(obj, name)!r}")


def alpha(value: Any, where: str = "") -> None:
    """An MI threshold in bits: a number >= 0, inf allowed (NaN and bools are not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
        raise ConfigError(f"{where + ': ' if where else ''}alpha must be a number >= 0 (inf allowed), "
                          f"got {value!r}")


__all__ = ["fail", "is_int", "is_number", "integer", "positive_int", "non_negative_int", "finite",
           "finite_positive", "finite_non_negative", "in_interval", "choice", "boolean", "device", "alpha",
           "is_seed", "seed", "is_device", "SEED_LIMIT", "DEVICE_FORM"]
