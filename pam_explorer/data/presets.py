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
from itertools import combinations
from pathlib import Path

import torch

from pam_explorer.core.config import DataConfig
from pam_explorer.core.errors import ConfigError, DataError
from pam_explorer.data.catalogue import (
    DATASET_IMAGE_SIZE,
    DATASET_IN_CHANNELS,
    DATASET_NUM_LABELS,
    Preset,
    builtin_presets,
)
from pam_explorer.data.digits import MultiLabelSplit, load_digits_multilabel
from pam_explorer.data.mnist import load_mnist_multilabel
from pam_explorer.data.project import PROJECT_SUFFIX, ProjectPreset, read_project
from pam_explorer.data.real import load_celeba_multilabel, load_fashion_multilabel

Splits = dict[str, MultiLabelSplit]

DATASET_LOADERS: dict[str, Callable[[DataConfig], Splits]] = {
    "digits": load_digits_multilabel,
    "fashion": load_fashion_multilabel,
    "celeba": load_celeba_multilabel,
    "mnist": load_mnist_multilabel,
}


_REGISTRY: dict[str, Preset] = {}


def register_preset(preset: Preset, *, overwrite: bool = False) -> Preset:
    """Add a preset to the registry (the app's select box and parametrised tests read it)."""
    if preset.name in _REGISTRY and not overwrite:
        raise ConfigError(f"preset {preset.name!r} is already registered")
    _REGISTRY[preset.name] = preset
    return preset


def get_preset(name: str) -> Preset:
    """The registered preset called ``name``, or the project of a file ``name`` ending in .toml
    (:func:`~pam_explorer.data.project.read_project`: its name is the file's absolute path, so
    it resolves again to the same project); ConfigError listing the known names otherwise."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if isinstance(name, (str, Path)) and str(name).endswith(PROJECT_SUFFIX):
        return read_project(name)
    raise ConfigError(f"unknown preset {name!r}; known presets: {list_presets()} (or a project "
                      f"file, path ending in {PROJECT_SUFFIX})")


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
    if isinstance(preset, ProjectPreset):
        return preset.load_splits(preset.data_config(config))
    return DATASET_LOADERS[preset.dataset](preset.data_config(config))


for _preset in builtin_presets():
    register_preset(_preset)

__all__ = [
    "Preset", "register_preset", "get_preset", "list_presets", "task_targets",
    "label_mutual_information", "preset_relatedness", "load_preset_data",
    "DATASET_LOADERS", "DATASET_NUM_LABELS", "DATASET_IN_CHANNELS", "DATASET_IMAGE_SIZE", "Splits",
]
