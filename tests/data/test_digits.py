"""Multi-Label Digits: determinism, disjoint pools, labels, shapes, speed."""
from __future__ import annotations

import time

import pytest
import torch

from pam_explorer.core.config import DataConfig
from pam_explorer.data import MultiLabelSplit, load_digits_multilabel
from pam_explorer.data.digits import compose_grid, digit_sources, pool_split

SMALL = DataConfig(n_train=2000, n_val=300, n_test=500, seed=0)


@pytest.fixture(scope="module")
def splits() -> dict[str, MultiLabelSplit]:
    return load_digits_multilabel(SMALL)


def test_shapes_sizes_and_range(splits):
    assert set(splits) == {"train", "val", "test"}
    for name, n in (("train", 2000), ("val", 300), ("test", 500)):
        s = splits[name]
        assert len(s) == n
        assert s.images.shape == (n, 1, 32, 32) and s.images.dtype == torch.float32
        assert s.labels.shape == (n, 10) and s.labels.dtype == torch.float32
        assert s.source_ids.shape == (n, 4) and s.source_ids.dtype == torch.int64
        assert s.label_names == tuple(f"digit {d}" for d in range(10))
        assert float(s.images.min()) >= 0.0 and float(s.images.max()) <= 1.0
        assert float(s.images.max()) > 0.9  # real strokes, not an all-dark picture


def test_same_seed_identical_different_seed_different():
    a, b = load_digits_multilabel(SMALL), load_digits_multilabel(SMALL)
    c = load_digits_multilabel(DataConfig(n_train=2000, n_val=300, n_test=500, seed=1))
    for k in a:
        assert torch.equal(a[k].images, b[k].images) and torch.equal(a[k].labels, b[k].labels)
        assert torch.equal(a[k].source_ids, b[k].source_ids)
        assert not torch.equal(a[k].source_ids, c[k].source_ids)
        assert not torch.equal(a[k].images, c[k].images)


def test_split_size_does_not_change_other_splits():
    # Each split has its own generator, so growing train leaves val/test pictures unchanged.
    a = load_digits_multilabel(SMALL)
    b = load_digits_multilabel(DataConfig(n_train=2500, n_val=300, n_test=500, seed=0))
    assert torch.equal(a["val"].images, b["val"].images)
    assert torch.equal(a["test"].source_ids, b["test"].source_ids)


def test_source_pools_disjoint_and_stratified(splits):
    used = {k: set(s.source_ids.flatten().tolist()) for k, s in splits.items()}
    assert not used["train"] & used["val"]
    assert not used["train"] & used["test"]
    assert not used["val"] & used["test"]
    _, classes = digit_sources()
    pools = pool_split(classes, seed=0)
    assert sum(len(p) for p in pools) == 1797
    assert len(set().union(*[set(p.tolist()) for p in pools])) == 1797
    for p, frac in zip(pools, (0.60, 0.15, 0.25)):
        counts = torch.bincount(classes[p], minlength=10).float()
        full = torch.bincount(classes, minlength=10).float()
        assert torch.all((counts - frac * full).abs() <= 1.0)  # stratified up to rounding
    for k, p in zip(("train", "val", "test"), pools):
        assert used[k] <= set(p.tolist())


def test_labels_equal_presence_of_source_classes(splits):
    _, classes = digit_sources()
    for s in splits.values():
        expected = torch.zeros(len(s), 10)
        expected.scatter_(1, classes[s.source_ids], 1.0)
        assert torch.equal(s.labels, expected)
        per_picture = s.labels.sum(1)
        assert per_picture.min() >= 1 and per_picture.max() <= 4
    # Every digit appears with P = 1 - 0.9^4 = 0.344 (pools are stratified ~ uniform classes).
    freq = splits["train"].labels.mean(0)
    assert torch.all((freq - 0.344).abs() < 0.05)


def test_cells_hold_the_source_digits():
    images, classes = digit_sources()
    cells = torch.nn.functional.interpolate(images, size=(16, 16), mode="bilinear", align_corners=False)
    pool = torch.arange(len(classes))
    gen = torch.Generator().manual_seed(3)
    pics, labels, ids = compose_grid(cells, classes, pool, 5, 10, 32, gen)
    assert pics.shape == (5, 1, 32, 32) and labels.shape == (5, 10)
    # Row-major cell order: (0,0) top-left, (0,1) top-right, (1,0) bottom-left, (1,1) bottom-right.
    for k, (r, c) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        block = pics[:, :, 16 * r: 16 * r + 16, 16 * c: 16 * c + 16]
        assert torch.allclose(block, cells[ids[:, k]])


def test_odd_image_size_is_padded():
    s = load_digits_multilabel(DataConfig(n_train=10, n_val=10, n_test=10, image_size=33))
    assert s["train"].images.shape == (10, 1, 33, 33)
    assert float(s["train"].images[:, :, 32, :].abs().sum()) == 0.0


def test_default_config_composes_fast():
    digit_sources()  # sklearn's one-off CSV parse is not part of composition
    t0 = time.perf_counter()
    s = load_digits_multilabel(DataConfig())
    elapsed = time.perf_counter() - t0
    assert [len(s[k]) for k in ("train", "val", "test")] == [8000, 1000, 2000]
    assert elapsed < 2.0, f"composing 11,000 pictures took {elapsed:.2f}s"


def test_split_validates_shapes():
    with pytest.raises(ValueError):
        MultiLabelSplit(torch.zeros(3, 1, 8, 8), torch.zeros(2, 10), tuple("abcdefghij"))
    with pytest.raises(ValueError):
        MultiLabelSplit(torch.zeros(3, 1, 8, 8), torch.zeros(3, 10), ("a",))


def test_digit_sources_equal_sklearns_load_digits_without_importing_it():
    """The bundled CSV is read directly (no sklearn/scipy import on a first visit); reference:
    sklearn.datasets.load_digits itself, in a fresh process so the import check is real."""
    import subprocess
    import sys
    code = ("import sys, torch; from pam_explorer.data.digits import digit_sources; "
            "i, c = digit_sources(); assert 'sklearn' not in sys.modules; "
            "from sklearn.datasets import load_digits; b = load_digits(); "
            "assert torch.equal(i, torch.as_tensor(b.images, dtype=torch.float32).unsqueeze(1) / 16.0); "
            "assert torch.equal(c, torch.as_tensor(b.target, dtype=torch.int64)); print(i.shape[0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=__import__("pathlib").Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "1797"
