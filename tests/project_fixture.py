"""A project file built in a temporary folder from the MNIST digits the mnist presets read.

:func:`make_project` writes ``pam.toml``, ``labels.csv`` and 2x2-grid PNG pictures (56 px,
four 28x28 MNIST digits each; label "zero" ... "nine": that digit is present) with a train /
val / test split, and optionally tiny untrained LeNet-5 networks (width 0.1). Tests edit the
files to make them bad (:func:`write_toml`, :func:`rewrite_csv`).
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pam_explorer.data.mnist import _read_mnist, mnist_dir
from pam_explorer.zoo import build_model, save_checkpoint

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPLITS = {"train": 160, "val": 40, "test": 40}


def grids(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n pictures (n, 56, 56) uint8 of four MNIST training digits each, and labels (n, 10)."""
    arrays = _read_mnist(mnist_dir())
    images, digits = arrays["train_images"], arrays["train_labels"]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(images), size=(n, 4))
    cells = images[idx]  # (n, 4, 28, 28)
    pics = np.concatenate([np.concatenate([cells[:, 0], cells[:, 1]], 2),
                           np.concatenate([cells[:, 2], cells[:, 3]], 2)], 1)
    labels = np.zeros((n, 10), dtype=np.uint8)
    np.put_along_axis(labels, digits[idx].astype(np.int64), 1, axis=1)
    return pics, labels


TOML = """name = "fixture"
image_size = 56
channels = 1

[data]
csv = "labels.csv"
images = "pictures"

[tasks.A]
labels = ["zero", "one", "two", "three", "four"]
arch = "lenet5"
width = 0.1

[tasks.B]
labels = ["five", "six", "seven", "eight", "nine"]
arch = "lenet5"
width = 0.1
"""


def make_project(root: Path, nets: bool = False, splits: dict[str, int] = SPLITS) -> Path:
    """Write the fixture project under ``root``; returns the path of its pam.toml."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pictures").mkdir(exist_ok=True)
    n = sum(splits.values())
    pics, labels = grids(n, seed=0)
    names = [s for s, k in splits.items() for _ in range(k)]
    with (root / "labels.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "split", *NAMES])
        for i in range(n):
            Image.fromarray(pics[i]).save(root / "pictures" / f"{i:04d}.png")
            w.writerow([f"{i:04d}.png", names[i], *labels[i].tolist()])
    write_toml(root, TOML)
    if nets:
        make_nets(root)
    return root / "pam.toml"


def make_nets(root: Path, seed: int = 0) -> None:
    """Untrained tiny LeNet-5s (width 0.1) as nets/A and nets/B, with sidecars."""
    for k, t in enumerate(("A", "B")):
        torch.manual_seed(seed + k)
        save_checkpoint(build_model("lenet5", 5, 1, 56, width=0.1), root / "nets" / f"{t}.safetensors")


def write_toml(root: Path, text: str) -> Path:
    (root / "pam.toml").write_text(text)
    return root / "pam.toml"


def rewrite_csv(root: Path, edit) -> None:
    """Apply ``edit(rows)`` to labels.csv (rows[0] is the header) and write it back."""
    path = root / "labels.csv"
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    edit(rows)
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
