"""Task presets: a named split of a data set's label columns into tasks, plus label-MI tools.

A task is a subset of label columns; its target is that sub-matrix of the label matrix. The
relatedness of two tasks is the mutual information I(Y^A; Y^B) in bits between their joint
label vectors (plug-in estimate). The ``digits-related-*`` presets use pure, disjoint subsets
of the ten digit labels: because every picture holds exactly four digits, the presence of
A's digits constrains how many of B's can be present, and the strength of that coupling
grows with the subset sizes (a shared label would add its whole entropy, ~0.93 bits, at once).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import torch

from pam_explorer.core.config import DataConfig
from pam_explorer.core.errors import ConfigError, DataError
from pam_explorer.data.digits import DIGITS_IMAGE_SIZE, MultiLabelSplit, load_digits_multilabel
from pam_explorer.data.mnist import MNIST_IMAGE_SIZE, load_mnist_multilabel
from pam_explorer.data.real import (
    CELEBA_ATTRIBUTES,
    CELEBA_IMAGE_SIZE,
    FASHION_IMAGE_SIZE,
    load_celeba_multilabel,
    load_fashion_multilabel,
)

Splits = dict[str, MultiLabelSplit]

DATASET_LOADERS: dict[str, Callable[[DataConfig], Splits]] = {
    "digits": load_digits_multilabel,
    "fashion": load_fashion_multilabel,
    "celeba": load_celeba_multilabel,
    "mnist": load_mnist_multilabel,
}
DATASET_NUM_LABELS: dict[str, int] = {"digits": 10, "fashion": 10, "celeba": len(CELEBA_ATTRIBUTES),
                                      "mnist": 10}
DATASET_IN_CHANNELS: dict[str, int] = {"digits": 1, "fashion": 1, "celeba": 3, "mnist": 1}  # image channels
# picture side when DataConfig.image_size is None (the size the committed networks expect)
DATASET_IMAGE_SIZE: dict[str, int] = {"digits": DIGITS_IMAGE_SIZE, "fashion": FASHION_IMAGE_SIZE,
                                      "celeba": CELEBA_IMAGE_SIZE, "mnist": MNIST_IMAGE_SIZE}


@dataclass(frozen=True)
class Preset:
    """Tasks of one data set: task k predicts label columns ``task_labels[k]``."""

    name: str
    dataset: str  # "digits" | "fashion" | "celeba" | "mnist"
    task_names: tuple[str, ...]
    task_labels: tuple[tuple[int, ...], ...]
    description: str
    default_alpha: float = 0.5  # bits; end of the flat MI phase on the digits presets at sigma2 = 0.1

    def __post_init__(self) -> None:
        if self.dataset not in DATASET_NUM_LABELS:
            raise ConfigError(f"Preset {self.name!r}: unknown dataset {self.dataset!r}, "
                              f"known: {sorted(DATASET_NUM_LABELS)}")
        if len(self.task_names) != len(self.task_labels) or len(self.task_names) < 1:
            raise ConfigError(f"Preset {self.name!r}: need one label tuple per task name")
        if len(set(self.task_names)) != len(self.task_names) or any("+" in t for t in self.task_names):
            # "+" joins task names into subset names (DESIGN: "A+B"), so it cannot appear inside one.
            raise ConfigError(f"Preset {self.name!r}: task names must be unique and contain no '+'")
        n = DATASET_NUM_LABELS[self.dataset]
        for t, cols in zip(self.task_names, self.task_labels):
            if not cols or len(set(cols)) != len(cols) or not all(0 <= c < n for c in cols):
                raise ConfigError(f"Preset {self.name!r}: task {t!r} needs distinct label "
                                  f"columns in [0, {n}), got {cols!r}")

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    @property
    def in_channels(self) -> int:
        """Channels of the data set's images (1 digits/fashion, 3 celeba); a property, not a field,
        so the trajectory cache keys (built from the preset's fields) stay as they were."""
        return DATASET_IN_CHANNELS[self.dataset]

    @property
    def image_size(self) -> int:
        """Natural picture side of the data set (used when DataConfig.image_size is None); a
        property for the same reason as in_channels."""
        return DATASET_IMAGE_SIZE[self.dataset]

    def data_config(self, config: DataConfig = DataConfig()) -> DataConfig:
        """``config`` with image_size filled in (its own, else :attr:`image_size`): the data this
        preset's loader composes, so cache keys of equal data are equal."""
        return config.sized(self.image_size)

    def task_index(self, task: int | str) -> int:
        """Position of a task given by index or name."""
        if isinstance(task, str):
            if task not in self.task_names:
                raise ConfigError(f"Preset {self.name!r} has no task {task!r}; tasks: "
                                  f"{list(self.task_names)}")
            return self.task_names.index(task)
        if not 0 <= task < self.num_tasks:
            raise ConfigError(f"Preset {self.name!r}: task index {task} out of range [0, {self.num_tasks})")
        return int(task)


_REGISTRY: dict[str, Preset] = {}


def register_preset(preset: Preset, *, overwrite: bool = False) -> Preset:
    """Add a preset to the registry (the app's select box and parametrised tests read it)."""
    if preset.name in _REGISTRY and not overwrite:
        raise ConfigError(f"preset {preset.name!r} is already registered")
    _REGISTRY[preset.name] = preset
    return preset


def get_preset(name: str) -> Preset:
    """The registered preset called ``name``; ConfigError listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; known presets: {list_presets()}") from None


def list_presets() -> list[str]:
    """Registered preset names in registration order."""
    return list(_REGISTRY)


def task_targets(labels: torch.Tensor, preset: Preset, task: int | str) -> torch.Tensor:
    """Targets of one task: labels (N, L) -> (N, L_t) with L_t = len(preset.task_labels[task])."""
    cols = preset.task_labels[preset.task_index(task)]
    if labels.shape[1] < max(cols) + 1:
        raise DataError(f"labels have {labels.shape[1]} columns; task needs column {max(cols)}")
    return labels[:, list(cols)]


def _row_codes(labels: torch.Tensor, cols: Sequence[int]) -> torch.Tensor:
    """Dense int64 id (N,) of each row's label vector restricted to cols (N, L) -> (N,)."""
    sub = labels[:, list(cols)] > 0.5
    if sub.shape[1] <= 62:
        # Bit-packing into int64 is far faster than torch.unique over rows.
        weights = 2 ** torch.arange(sub.shape[1], dtype=torch.int64)
        return torch.unique((sub.long() * weights).sum(1), return_inverse=True)[1]
    return torch.unique(sub, dim=0, return_inverse=True)[1]


def _entropy_bits(codes: torch.Tensor) -> float:
    """Plug-in entropy in bits of integer codes (N,)."""
    counts = torch.unique(codes, return_counts=True)[1].double()
    p = counts / counts.sum()
    return float(-(p * torch.log2(p)).sum())


def label_mutual_information(
    labels: torch.Tensor, cols_a: Sequence[int], cols_b: Sequence[int]
) -> float:
    """Plug-in estimate of I(Y^A; Y^B) in bits between the joint label vectors of two column sets.

    labels: (N, L) in {0, 1}. I = H(Y^A) + H(Y^B) - H(Y^A, Y^B) from empirical frequencies.
    The plug-in estimate is biased upward by roughly (#occupied joint cells) / (2 N ln 2), which
    is negligible for the digit presets (N = 8000) but large for wide tasks such as CelebA 20/20.
    """
    if labels.shape[0] == 0:
        raise DataError("need at least one sample")
    a, b = _row_codes(labels, cols_a), _row_codes(labels, cols_b)
    joint = a * (int(b.max()) + 1) + b
    mi = _entropy_bits(a) + _entropy_bits(b) - _entropy_bits(joint)
    return max(mi, 0.0)  # clip float round-off below zero


def preset_relatedness(preset: Preset | str,
                       splits: Mapping[str, MultiLabelSplit] | MultiLabelSplit) -> float:
    """Task relatedness of a preset in bits, measured on the train split.

    Two tasks: I(Y^A; Y^B). K > 2 tasks: the mean of I over all K(K-1)/2 task pairs.
    One task: 0.0. ``splits`` is a dict from :func:`load_preset_data` or a single split.
    """
    preset = get_preset(preset) if isinstance(preset, str) else preset
    labels = (splits if isinstance(splits, MultiLabelSplit) else splits["train"]).labels
    pairs = list(combinations(preset.task_labels, 2))
    if not pairs:
        return 0.0
    return sum(label_mutual_information(labels, a, b) for a, b in pairs) / len(pairs)


def load_preset_data(preset: Preset | str, config: DataConfig = DataConfig()) -> Splits:
    """Train/val/test splits of the data set behind ``preset`` (dispatch on preset.dataset)."""
    preset = get_preset(preset) if isinstance(preset, str) else preset
    return DATASET_LOADERS[preset.dataset](preset.data_config(config))


def _r(lo: int, hi: int) -> tuple[int, ...]:
    return tuple(range(lo, hi + 1))


def _register_builtin() -> None:
    """Built-in presets. MI figures in descriptions are exact values for uniform digit classes
    (measured plug-in values on the default train split are within ~0.02 bits)."""
    _register_digit_family("digits", "digits", "")
    register_preset(Preset("fashion-2task", "fashion", ("A", "B"), (_r(0, 4), _r(5, 9)),
                           "Multi-Label Fashion-MNIST; A: classes 0-4, B: classes 5-9"))
    register_preset(Preset("celeba-2task", "celeba", ("A", "B"), (_r(0, 19), _r(20, 39)),
                           "CelebA attributes; A: attributes 0-19, B: attributes 20-39"))
    _register_digit_family("mnist", "mnist", "Multi-Label MNIST (56x56); ")


def _register_digit_family(prefix: str, dataset: str, note: str) -> None:
    """<prefix>-2task, -5task, -inclusion and -related-0..3 on a ten-digit data set (digits, mnist)."""
    register_preset(Preset(f"{prefix}-2task", dataset, ("A", "B"), (_r(0, 4), _r(5, 9)),
                           f"{note}A: digits 0-4, B: digits 5-9 (I(Y^A;Y^B) ~ 0.62 bits)"))
    register_preset(Preset(f"{prefix}-5task", dataset, ("T1", "T2", "T3", "T4", "T5"),
                           tuple((2 * k, 2 * k + 1) for k in range(5)),
                           f"{note}Five tasks of two digits each: "
                           "{0,1}, {2,3}, {4,5}, {6,7}, {8,9}"))
    register_preset(Preset(f"{prefix}-inclusion", dataset, ("A", "B"), (_r(0, 9), _r(0, 4)),
                           f"{note}A: all ten digits, B: digits 0-4 (B's labels are a subset of A's)"))
    related = [  # (A, B, exact MI in bits): disjoint digit sets, larger sets couple more
        (_r(0, 1), _r(5, 6), 0.03),
        (_r(0, 2), _r(5, 7), 0.09),
        (_r(0, 2), _r(5, 9), 0.23),
        (_r(0, 2), _r(3, 9), 0.55),
    ]
    for k, (a, b, mi) in enumerate(related):
        register_preset(Preset(
            f"{prefix}-related-{k}", dataset, ("A", "B"), (a, b),
            f"{note}A: digits {a[0]}-{a[-1]}, B: digits {b[0]}-{b[-1]} (I(Y^A;Y^B) ~ {mi:.2f} bits)"))


_register_builtin()

__all__ = [
    "Preset", "register_preset", "get_preset", "list_presets", "task_targets",
    "label_mutual_information", "preset_relatedness", "load_preset_data",
    "DATASET_LOADERS", "DATASET_NUM_LABELS", "DATASET_IN_CHANNELS", "DATASET_IMAGE_SIZE",
]
