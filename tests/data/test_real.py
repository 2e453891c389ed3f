"""Real-data loaders on tiny fixture trees (no network): Fashion-MNIST grids and CelebA."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets

from pam_explorer.core.config import DataConfig
from pam_explorer.data import CELEBA_ATTRIBUTES, FASHION_CLASSES
from pam_explorer.data.real import load_celeba_multilabel, load_fashion_multilabel, read_idx

N_FASHION_TRAIN, N_FASHION_TEST = 50, 20


@pytest.fixture(autouse=True)
def _no_download(monkeypatch):
    monkeypatch.delenv("PAM_ALLOW_DOWNLOAD", raising=False)


def _write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + b"".join(struct.pack(">I", d) for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def _fashion_tree(root: Path, gz: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (N_FASHION_TRAIN, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(N_FASHION_TRAIN) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (N_FASHION_TEST, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(N_FASHION_TEST) % 10,
    }
    for stem, arr in arrays.items():
        _write_idx(raw / (f"{stem}.gz" if gz else stem), arr, gz)
    return arrays


def test_read_idx_plain_and_gz(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a-ubyte", arr, gz=False)
    _write_idx(tmp_path / "a-ubyte.gz", arr, gz=True)
    assert np.array_equal(read_idx(tmp_path / "a-ubyte"), arr)
    assert np.array_equal(read_idx(tmp_path / "a-ubyte.gz"), arr)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError):
        read_idx(tmp_path / "bad")


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_multilabel(tmp_path, gz):
    arrays = _fashion_tree(tmp_path, gz)
    cfg = DataConfig(n_train=30, n_val=12, n_test=16, seed=0, root=str(tmp_path))
    s = load_fashion_multilabel(cfg)
    classes = torch.from_numpy(np.concatenate(
        [arrays["train-labels-idx1-ubyte"], arrays["t10k-labels-idx1-ubyte"]]).astype(np.int64))
    for name, n in (("train", 30), ("val", 12), ("test", 16)):
        sp = s[name]
        assert sp.images.shape == (n, 1, 32, 32) and sp.labels.shape == (n, 10)
        assert sp.label_names == FASHION_CLASSES
        assert 0.0 <= float(sp.images.min()) and float(sp.images.max()) <= 1.0
        expected = torch.zeros(n, 10).scatter_(1, classes[sp.source_ids], 1.0)
        assert torch.equal(sp.labels, expected)
        assert torch.all((sp.labels.sum(1) >= 1) & (sp.labels.sum(1) <= 4))
    used = {k: set(v.source_ids.flatten().tolist()) for k, v in s.items()}
    assert not used["train"] & used["val"]
    assert max(used["train"] | used["val"]) < N_FASHION_TRAIN  # train/val from official train
    assert min(used["test"]) >= N_FASHION_TRAIN  # test pictures only from t10k
    again = load_fashion_multilabel(cfg)
    assert all(torch.equal(s[k].images, again[k].images) for k in s)


def test_fashion_cells_are_resized_items(tmp_path):
    arrays = _fashion_tree(tmp_path)
    s = load_fashion_multilabel(DataConfig(n_train=4, n_val=4, n_test=4, image_size=56, root=str(tmp_path)))
    # image_size 56 -> 28x28 cells: the top-left cell is the raw item, scaled to [0, 1].
    src = torch.from_numpy(np.concatenate(
        [arrays["train-images-idx3-ubyte"], arrays["t10k-images-idx3-ubyte"]]).astype(np.float32)) / 255
    tr = s["train"]
    assert torch.allclose(tr.images[:, 0, :28, :28], src[tr.source_ids[:, 0]])


def test_fashion_missing_files_clear_error(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", lambda *a, **k: calls.append(k))
    with pytest.raises(FileNotFoundError) as err:
        load_fashion_multilabel(DataConfig(root=str(tmp_path)))
    msg = str(err.value)
    assert str(tmp_path / "FashionMNIST" / "raw") in msg
    assert "train-images-idx3-ubyte" in msg and "t10k-labels-idx1-ubyte" in msg
    assert "PAM_ALLOW_DOWNLOAD" in msg
    assert calls == []  # no download attempt unless PAM_ALLOW_DOWNLOAD=1


def test_fashion_download_only_when_allowed(tmp_path, monkeypatch):
    calls = []

    def fake_download(root, train, download):
        calls.append(train)
        if len(calls) == 1:
            _fashion_tree(Path(root))  # pretend torchvision fetched the files

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", fake_download)
    monkeypatch.setenv("PAM_ALLOW_DOWNLOAD", "1")
    s = load_fashion_multilabel(DataConfig(n_train=5, n_val=5, n_test=5, root=str(tmp_path)))
    assert calls == [True, False] and len(s["train"]) == 5


def test_fashion_failed_download_still_clear_error(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("network down")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", boom)
    monkeypatch.setenv("PAM_ALLOW_DOWNLOAD", "1")
    with pytest.raises(FileNotFoundError):
        load_fashion_multilabel(DataConfig(root=str(tmp_path)))


CELEBA_PARTS = [0, 0, 0, 1, 1, 2]
CELEBA_COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 255, 255)]


def _celeba_tree(root: Path) -> np.ndarray:
    from PIL import Image

    base = root / "celeba"
    (base / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(1)
    attrs = rng.choice([-1, 1], size=(6, 40))
    lines = ["6", " ".join(CELEBA_ATTRIBUTES)]
    parts = []
    for i in range(6):
        fname = f"{i + 1:06d}.jpg"
        Image.new("RGB", (20, 24), CELEBA_COLORS[i]).save(base / "img_align_celeba" / fname, quality=95)
        lines.append(fname + "  " + " ".join(f"{v:2d}" for v in attrs[i]))
        parts.append(f"{fname} {CELEBA_PARTS[i]}")
    (base / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (base / "list_eval_partition.txt").write_text("\n".join(parts) + "\n")
    return attrs


def test_celeba_multilabel(tmp_path):
    attrs = _celeba_tree(tmp_path)
    s = load_celeba_multilabel(DataConfig(n_train=2, n_val=5, n_test=5, image_size=16, root=str(tmp_path)))
    assert [len(s[k]) for k in ("train", "val", "test")] == [2, 2, 1]  # min(config, partition)
    for p, name in enumerate(("train", "val", "test")):
        sp = s[name]
        rows = sp.source_ids[:, 0]
        assert sp.images.shape == (len(sp), 3, 16, 16) and sp.labels.shape == (len(sp), 40)
        assert sp.label_names == CELEBA_ATTRIBUTES
        assert all(CELEBA_PARTS[r] == p for r in rows.tolist())
        assert torch.equal(sp.labels, torch.from_numpy((attrs[rows.numpy()] > 0).astype(np.float32)))
        for img, r in zip(sp.images, rows.tolist()):
            color = torch.tensor(CELEBA_COLORS[r], dtype=torch.float32) / 255
            assert torch.allclose(img.mean(dim=(1, 2)), color, atol=0.05)
    again = load_celeba_multilabel(DataConfig(n_train=2, n_val=5, n_test=5, image_size=16,
                                              root=str(tmp_path)))
    assert torch.equal(again["train"].source_ids, s["train"].source_ids)


def test_celeba_missing_files_clear_error(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(torchvision.datasets, "CelebA", lambda *a, **k: calls.append(k))
    with pytest.raises(FileNotFoundError) as err:
        load_celeba_multilabel(DataConfig(root=str(tmp_path)))
    msg = str(err.value)
    for part in ("list_attr_celeba.txt", "list_eval_partition.txt", "img_align_celeba"):
        assert str(tmp_path / "celeba" / part) in msg
    assert calls == []


def test_celeba_missing_image_named(tmp_path):
    _celeba_tree(tmp_path)
    (tmp_path / "celeba" / "img_align_celeba" / "000006.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="000006.jpg"):
        load_celeba_multilabel(DataConfig(image_size=16, root=str(tmp_path)))
