"""Frozen, validated configuration dataclasses with a JSON round trip.

Every config validates itself in ``__post_init__`` (validators of :mod:`pam_explorer.core.validate`)
and raises :class:`~pam_explorer.core.errors.ConfigError` naming the offending field, so bad input
fails before any work is done.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, TypeVar

from pam_explorer.core import validate as v
from pam_explorer.core.errors import ConfigError
from pam_explorer.core.io import dumps_strict, from_strict

T = TypeVar("T")

POOLINGS = ("max", "mean")
LABEL_MODES = ("sum", "joint")
BOUNDS = ("kl", "bd")
ALGORITHMS = ("simplified", "full")
KERNELS = ("fixed", "scaled")
NORMALISATIONS = ("rms", "none")
BOTH_PICKED = ("share", "drop")
# the built-in pruning methods (pam_explorer.prune registers them; tests/prune check the registry
# against this list), named here so the command line lists them without importing torch
PRUNE_METHODS = ("taylor", "vib", "adapmtl")


@dataclass(frozen=True)
class DataConfig:
    """Sizes and seed of a composed multi-label data set (train/val/test pictures).

    ``image_size`` None means the data set's natural size (32 for digits, Fashion-MNIST and
    CelebA, 56 for MNIST: 2x2 grids of 28x28 digits); loaders fill it in with :meth:`sized`.
    """

    n_train: int = 8000
    n_val: int = 1000
    n_test: int = 2000
    seed: int = 0
    image_size: int | None = None
    root: str | None = None  # local root of real data sets (Fashion-MNIST, CelebA)

    def __post_init__(self) -> None:
        for name in ("n_train", "n_val", "n_test"):
            v.positive_int(self, name)
        v.seed(self)
        if self.image_size is not None:
            v.positive_int(self, "image_size")
            if self.image_size < 16:
                v.fail(self, "image_size", f"must be >= 16 for a 2x2 grid, got {self.image_size}")

    def sized(self, natural: int) -> DataConfig:
        """This config with ``image_size`` set: its own if given, else the data set's ``natural``."""
        return self if self.image_size is not None else dataclasses.replace(self, image_size=natural)


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
        v.positive_int(self, "epochs")
        v.positive_int(self, "batch_size")
        v.finite_positive(self, "lr")
        v.finite_non_negative(self, "weight_decay")
        v.seed(self)
        v.device(self)


@dataclass(frozen=True)
class MIConfig:
    """Settings of the mutual-information estimate used for regrouping (MI values in bits).

    The defaults are this project's estimator, chosen by measurement (docs/estimator.md);
    :meth:`paper` is the paper's literal one. :attr:`profile` names which one a config is.
    """

    n_samples: int = 128  # N pictures of the estimate (the authors: one batch of 128)
    sigma2: float = 0.1  # kernel noise variance: relative to the layer RMS, or absolute (normalise)
    pooling: str = "max"  # conv channel map -> one number per sample: "max" | "mean"
    label_mode: str = "sum"  # "sum" of per-label MI (the authors) | "joint" label vector as one class
    bound: str = "kl"  # "kl" upper bound (the paper) | "bd" lower bound
    seed: int = 0  # which N pictures, and the label permutations of the chance level
    kernel: str = "scaled"  # "fixed": sigma2 per neuron (paper) | "scaled": relative to the set's variance
    null_perms: int = 16  # label permutations for the chance level; 0 = none (paper). alpha: bits beyond it
    normalise: str = "rms"  # "rms": each network's layer / its RMS | "none": raw activations (authors)

    def __post_init__(self) -> None:
        v.positive_int(self, "n_samples")
        v.finite_positive(self, "sigma2")
        v.choice(self, "pooling", POOLINGS)
        v.choice(self, "label_mode", LABEL_MODES)
        v.choice(self, "bound", BOUNDS)
        v.seed(self)
        v.choice(self, "kernel", KERNELS)
        v.non_negative_int(self, "null_perms")
        v.choice(self, "normalise", NORMALISATIONS)

    @classmethod
    def paper(cls, **changes: Any) -> MIConfig:
        """The paper's estimator (authors' code): fixed kernel, absolute sigma2 = 0.1 on raw
        activations, no chance correction, N = 128; ``changes`` override fields."""
        return dataclasses.replace(cls(kernel="fixed", null_perms=0, normalise="none"), **changes)

    @property
    def profile(self) -> str:
        """"default" or "paper" when the estimator settings (all but ``seed``) are those of
        ``MIConfig()`` or :meth:`paper`, else "custom"."""
        mine = dataclasses.replace(self, seed=0)
        return "default" if mine == MIConfig() else "paper" if mine == MIConfig.paper() else "custom"


@dataclass(frozen=True)
class RegroupConfig:
    """Alpha (bits) for every layer, with optional per-layer overrides.

    both_picked: a neuron picked by more than one exclusive set is "share"d (this project's
    first rule) or "drop"ped from the network (the paper's Algorithm 2 line 16 and the authors'
    code). The default is chosen by measurement (docs/estimator.md).
    """

    alpha: float = 0.05
    overrides: tuple[tuple[str, float], ...] = ()
    algorithm: str = "simplified"
    both_picked: str = "share"

    def __post_init__(self) -> None:
        v.alpha(self.alpha, "RegroupConfig.alpha")
        for item in self.overrides:
            if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
                v.fail(self, "overrides", f"entries must be (layer_name, alpha), got {item!r}")
            v.alpha(item[1], f"RegroupConfig.overrides[{item[0]}]")
        v.choice(self, "algorithm", ALGORITHMS)
        v.choice(self, "both_picked", BOTH_PICKED)

    def alpha_for(self, layer: str) -> float:
        return dict(self.overrides).get(layer, self.alpha)


@dataclass(frozen=True)
class FinetuneConfig:
    """Joint finetuning of a merged network."""

    epochs: int = 3
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    device: str = "auto"
    lr_end: float | None = None  # None: constant lr; else cosine decay per minibatch from lr to this

    def __post_init__(self) -> None:
        v.non_negative_int(self, "epochs")
        v.positive_int(self, "batch_size")
        v.finite_positive(self, "lr")
        if self.lr_end is not None:
            v.finite_positive(self, "lr_end")
        v.seed(self)
        v.device(self)


def to_json(cfg: Any) -> str:
    """Serialise a config dataclass to a strict JSON string (inf as "inf": core.io.strict_json)."""
    return dumps_strict(dataclasses.asdict(cfg), indent=None, sort_keys=True)


def from_json(cls: type[T], text: str) -> T:
    """Rebuild a config dataclass from ``to_json`` output (validation runs again)."""
    raw = json.loads(text)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(raw) - names
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}")
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in raw and isinstance(raw[f.name], list):
            raw[f.name] = tuple(tuple(x) if isinstance(x, list) else x for x in raw[f.name])
        if f.name in raw and "float" in str(f.type):  # "inf" as strict JSON writes it -> inf
            raw[f.name] = from_strict(raw[f.name]) if not isinstance(raw[f.name], tuple) else tuple(
                tuple(from_strict(y) for y in x) if isinstance(x, tuple) else from_strict(x)
                for x in raw[f.name])
    return cls(**raw)  # type: ignore[call-arg]


__all__ = [
    "DataConfig", "TrainConfig", "MIConfig", "RegroupConfig", "FinetuneConfig",
    "to_json", "from_json", "POOLINGS", "LABEL_MODES", "BOUNDS", "ALGORITHMS", "KERNELS",
    "NORMALISATIONS", "BOTH_PICKED", "PRUNE_METHODS",
]
