"""Task presets: registry, task targets, label MI and the related-* ordering."""
from __future__ import annotations

import math

import pytest
import torch

from pam_explorer.core.config import DataConfig
from pam_explorer.data import (
    Preset,
    get_preset,
    label_mutual_information,
    list_presets,
    load_preset_data,
    preset_relatedness,
    register_preset,
    task_targets,
)

BUILTIN = [
    "digits-2task", "digits-5task", "digits-inclusion", "digits-related-0", "digits-related-1",
    "digits-related-2", "digits-related-3", "fashion-2task", "celeba-2task", "mnist-2task", "mnist-5task",
    "mnist-inclusion", "mnist-related-0", "mnist-related-1", "mnist-related-2", "mnist-related-3",
]


@pytest.fixture(scope="module")
def digit_splits():
    # Default train size: the plug-in MI of related-3 needs a few thousand pictures.
    return load_preset_data("digits-2task", DataConfig(n_train=8000, n_val=10, n_test=10))


def test_builtin_presets_registered():
    names = list_presets()
    for n in BUILTIN:
        assert n in names
        assert get_preset(n).name == n


def test_unknown_preset_error_lists_known_names():
    with pytest.raises(ValueError) as err:
        get_preset("no-such-preset")
    assert "no-such-preset" in str(err.value) and "digits-2task" in str(err.value)
    with pytest.raises(ValueError):
        load_preset_data("no-such-preset")


def test_register_rejects_duplicates_and_bad_presets():
    with pytest.raises(ValueError):
        register_preset(get_preset("digits-2task"))
    with pytest.raises(ValueError):
        Preset("bad", "digits", ("A",), ((10,),), "label column out of range")
    with pytest.raises(ValueError):
        Preset("bad", "no-such-data", ("A",), ((0,),), "unknown dataset")
    with pytest.raises(ValueError):
        Preset("bad", "digits", ("A", "A"), ((0,), (1,)), "duplicate task names")


@pytest.mark.parametrize("name", [n for n in BUILTIN if n.startswith("digits")])
def test_task_targets_shapes(name, digit_splits):
    preset = get_preset(name)
    labels = digit_splits["train"].labels
    for k, (tname, cols) in enumerate(zip(preset.task_names, preset.task_labels)):
        by_index, by_name = task_targets(labels, preset, k), task_targets(labels, preset, tname)
        assert by_index.shape == (len(labels), len(cols))
        assert torch.equal(by_index, by_name)
        assert torch.equal(by_index, labels[:, list(cols)])
    with pytest.raises(ValueError):
        task_targets(labels, preset, "nope")


def test_preset_tasks_content():
    assert get_preset("digits-2task").task_labels == ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9))
    five = get_preset("digits-5task")
    assert five.task_names == ("T1", "T2", "T3", "T4", "T5")
    assert five.task_labels == ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))
    a, b = get_preset("digits-inclusion").task_labels
    assert set(b) < set(a) and len(a) == 10
    assert get_preset("celeba-2task").task_labels == (tuple(range(20)), tuple(range(20, 40)))


def test_inclusion_targets_subset(digit_splits):
    preset, labels = get_preset("digits-inclusion"), digit_splits["train"].labels
    tb = task_targets(labels, preset, "B")
    ta = task_targets(labels, preset, "A")
    # B's columns are columns of A, so B's targets are read off A's targets.
    pos = [preset.task_labels[0].index(c) for c in preset.task_labels[1]]
    assert torch.equal(ta[:, pos], tb)


def test_label_mi_known_values():
    y = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]] * 25, dtype=torch.float32)
    assert label_mutual_information(y, [0], [1]) == pytest.approx(0.0, abs=1e-12)
    same = torch.tensor([[0, 0], [1, 1]] * 50, dtype=torch.float32)
    assert label_mutual_information(same, [0], [1]) == pytest.approx(1.0)
    # A column set vs a subset of itself: I = H(subset).
    z = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]] * 25, dtype=torch.float32)
    assert label_mutual_information(z, [0, 1], [1]) == pytest.approx(1.0)
    assert label_mutual_information(z, [0, 1], [0, 1]) == pytest.approx(2.0)


def test_related_presets_mi_ordering(digit_splits):
    mi = [preset_relatedness(f"digits-related-{k}", digit_splits) for k in range(4)]
    assert mi[0] < mi[1] < mi[2] < mi[3]
    assert mi[0] < 0.05
    assert 0.06 < mi[1] < 0.14 and 0.15 < mi[2] < 0.3
    assert 0.35 <= mi[3] <= 0.7


def test_relatedness_of_other_presets(digit_splits):
    two = preset_relatedness("digits-2task", digit_splits)
    assert 0.55 < two < 0.75  # exact value 0.62 bits for uniform digit classes
    # Inclusion: I(Y^A; Y^B) = H(Y^B), the entropy of the five-label vector (exact 4.56 bits).
    inc = preset_relatedness("digits-inclusion", digit_splits)
    assert inc == pytest.approx(4.56, abs=0.05)
    # Five tasks: mean over the 10 pairs of two-vs-two digit MI (exact 0.031 bits).
    five = get_preset("digits-5task")
    pairs = [(a, b) for i, a in enumerate(five.task_labels) for b in five.task_labels[i + 1:]]
    labels = digit_splits["train"].labels
    mean = sum(label_mutual_information(labels, a, b) for a, b in pairs) / len(pairs)
    assert preset_relatedness(five, digit_splits) == pytest.approx(mean)
    assert math.isfinite(mean) and mean < 0.05
    assert preset_relatedness(five, digit_splits["train"]) == pytest.approx(mean)


def test_load_preset_data_dispatches_to_digits():
    s = load_preset_data(get_preset("digits-5task"), DataConfig(n_train=20, n_val=5, n_test=5))
    assert s["train"].labels.shape == (20, 10) and s["test"].images.shape == (5, 1, 32, 32)


def test_real_presets_without_data_raise_file_not_found(tmp_path, monkeypatch):
    monkeypatch.delenv("PAM_ALLOW_DOWNLOAD", raising=False)
    for name in ("fashion-2task", "celeba-2task"):
        with pytest.raises(FileNotFoundError):
            load_preset_data(name, DataConfig(root=str(tmp_path)))


def test_the_torch_free_catalogue_agrees_with_the_loaders():
    """data/catalogue.py states each data set's shape without importing a loader (for a fast
    --help); the loaders' own constants are the reference."""
    from pam_explorer.data import catalogue
    from pam_explorer.data.digits import DIGIT_NAMES, DIGITS_IMAGE_SIZE
    from pam_explorer.data.mnist import MNIST_IMAGE_SIZE
    from pam_explorer.data.real import (
        CELEBA_ATTRIBUTES,
        CELEBA_IMAGE_SIZE,
        FASHION_CLASSES,
        FASHION_IMAGE_SIZE,
    )
    assert catalogue.DATASET_IMAGE_SIZE == {"digits": DIGITS_IMAGE_SIZE, "fashion": FASHION_IMAGE_SIZE,
                                            "celeba": CELEBA_IMAGE_SIZE, "mnist": MNIST_IMAGE_SIZE}
    assert catalogue.DATASET_NUM_LABELS == {"digits": len(DIGIT_NAMES), "fashion": len(FASHION_CLASSES),
                                            "celeba": len(CELEBA_ATTRIBUTES), "mnist": len(DIGIT_NAMES)}
