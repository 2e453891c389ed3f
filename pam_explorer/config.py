"""Frozen, validated configuration dataclasses with a JSON round trip.

Every config validates itself in ``__post_init__`` and raises ``ValueError`` naming the
offending field, so bad input fails before any work is done.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Type, TypeVar

T = TypeVar("T")

POOLINGS = ("max", "mean")
LABEL_MODES = ("sum", "joint")
BOUNDS = ("kl", "bd")
ALGORITHMS = ("simplified", "full")


def _fail(cls: object, name: str, msg: str) -> None:
    raise ValueError(f"{type(cls).__name__}.{name}: {msg}")


def _positive_int(obj: object, name: str) -> None:
    v = getattr(obj, name)
    if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
        _fail(obj, name, f"must be a positive integer, got {v!r}")


def _finite_positive(obj: object, name: str) -> None:
    v = getattr(obj, name)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
        _fail(obj, name, f"must be a finite number > 0, got {v!r}")


def _choice(obj: object, name: str, choices: tuple[str, ...]) -> None:
    v = getattr(obj, name)
    if v not in choices:
        _fail(obj, name, f"must be one of {list(choices)}, got {v!r}")


@dataclass(frozen=True)
class DataConfig:
    """Sizes and seed of a composed multi-label data set (train/val/test pictures)."""

    n_train: int = 8000
    n_val: int = 1000
    n_test: int = 2000
    seed: int = 0
    image_size: int = 32
    root: str | None = None  # local root of real data sets (Fashion-MNIST, CelebA)

    def __post_init__(self) -> None:
        for name in ("n_train", "n_val", "n_test", "image_size"):
            _positive_int(self, name)
        if not isinstance(self.seed, int):
            _fail(self, "seed", f"must be an integer, got {self.seed!r}")
        if self.image_size < 16:
            _fail(self, "image_size", f"must be >= 16 for a 2x2 grid, got {self.image_size}")


@dataclass(frozen=True)
class TrainConfig:
    """Single-task pre-training (multi-label BCE)."""

    epochs: int = 15
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        _positive_int(self, "epochs")
        _positive_int(self, "batch_size")
        _finite_positive(self, "lr")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            _fail(self, "weight_decay", f"must be >= 0, got {self.weight_decay!r}")


@dataclass(frozen=True)
class MIConfig:
    """Settings of the mutual-information estimate used for regrouping.

    sigma2 is the noise variance relative to the layer's RMS (activations are divided by
    the layer RMS before the estimate). MI values are in bits.
    """

    n_samples: int = 256
    sigma2: float = 0.1
    pooling: str = "max"
    label_mode: str = "sum"
    bound: str = "kl"
    seed: int = 0

    def __post_init__(self) -> None:
        _positive_int(self, "n_samples")
        _finite_positive(self, "sigma2")
        _choice(self, "pooling", POOLINGS)
        _choice(self, "label_mode", LABEL_MODES)
        _choice(self, "bound", BOUNDS)


@dataclass(frozen=True)
class RegroupConfig:
    """Alpha (bits) for every layer, with optional per-layer overrides."""

    alpha: float = 0.05
    overrides: tuple[tuple[str, float], ...] = ()
    algorithm: str = "simplified"

    def __post_init__(self) -> None:
        _check_alpha(self, "alpha", self.alpha)
        for item in self.overrides:
            if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
                _fail(self, "overrides", f"entries must be (layer_name, alpha), got {item!r}")
            _check_alpha(self, f"overrides[{item[0]}]", item[1])
        _choice(self, "algorithm", ALGORITHMS)

    def alpha_for(self, layer: str) -> float:
        return dict(self.overrides).get(layer, self.alpha)


def _check_alpha(obj: object, name: str, v: Any) -> None:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or math.isnan(v) or v < 0:
        _fail(obj, name, f"alpha must be a number >= 0 (inf allowed), got {v!r}")


@dataclass(frozen=True)
class FinetuneConfig:
    """Joint finetuning of a merged network."""

    epochs: int = 3
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 0:
            _fail(self, "epochs", f"must be an integer >= 0, got {self.epochs!r}")
        _positive_int(self, "batch_size")
        _finite_positive(self, "lr")


def to_json(cfg: Any) -> str:
    """Serialise a config dataclass to a JSON string."""
    return json.dumps(dataclasses.asdict(cfg), sort_keys=True)


def from_json(cls: Type[T], text: str) -> T:
    """Rebuild a config dataclass from ``to_json`` output (validation runs again)."""
    raw = json.loads(text)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(raw) - names
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}")
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in raw and isinstance(raw[f.name], list):
            raw[f.name] = tuple(tuple(x) if isinstance(x, list) else x for x in raw[f.name])
    return cls(**raw)  # type: ignore[call-arg]


__all__ = [
    "DataConfig", "TrainConfig", "MIConfig", "RegroupConfig", "FinetuneConfig",
    "to_json", "from_json", "field",
]
