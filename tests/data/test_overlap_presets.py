"""The regime map's relatedness series (mnist28[-wide]-overlap-K): the label count and per-label
frequencies stay, only the joint label distribution of A and B changes.

Independent references: a plain count of the label rows (collections.Counter over the tuples of
each task's labels: entropies from counts, no torch), the closed form 1 - (1 - p)^4 of a digit's
presence in a 2x2 grid of uniform cells, and the exact I(Y^A; Y^B) of uniform digits (by
enumerating the 10^4 cell draws, a few lines here).
"""
from __future__ import annotations

import itertools
import math
from collections import Counter

import pytest

from pam_explorer.core.config import DataConfig
from pam_explorer.data import get_preset, label_mutual_information, load_preset_data
from pam_explorer.data.catalogue import (
    HEADROOM_WIDTHS,
    OVERLAP_MI,
    OVERLAPS,
    REGIME_SIZE,
    overlap_labels,
    overlap_name,
)

LABELS = 5  # labels per task, at every level
UNIFORM_PRESENCE = 1 - 0.9 ** 4  # a digit in at least one of 4 cells, uniform digits
# MNIST's class shares (9.0 % for 5 to 11.2 % for 1) move a digit's presence by up to 0.035
CLASS_SHARE_SLACK = 0.04


def _plain_mi(rows: list[tuple[int, ...]], a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """I(Y^A; Y^B) in bits from counts of the label tuples."""
    n = len(rows)
    h = lambda c: -sum(k / n * math.log2(k / n) for k in c.values())  # noqa: E731
    ya = Counter(tuple(r[i] for i in a) for r in rows)
    yb = Counter(tuple(r[i] for i in b) for r in rows)
    yab = Counter(tuple(r[i] for i in a) + tuple(r[i] for i in b) for r in rows)
    return h(ya) + h(yb) - h(yab)


def _exact_uniform_mi(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """I(Y^A; Y^B) in bits of four uniform digit cells, by enumeration."""
    joint, pa, pb = Counter(), Counter(), Counter()
    for cells in itertools.product(range(10), repeat=4):
        present = set(cells)
        ka, kb = tuple(d in present for d in a), tuple(d in present for d in b)
        joint[ka, kb] += 1
        pa[ka] += 1
        pb[kb] += 1
    n = 10 ** 4
    return sum(c / n * math.log2(c * n / (pa[x] * pb[y])) for (x, y), c in joint.items())


@pytest.fixture(scope="module")
def rows() -> list[tuple[int, ...]]:
    # the series shares one data set: the loader of any of its presets gives every level's labels
    splits = load_preset_data(overlap_name(0), DataConfig(n_train=6000, n_val=10, n_test=10))
    assert splits["train"].images.shape[-1] == REGIME_SIZE
    return [tuple(int(x) for x in r) for r in splits["train"].labels.round().int().tolist()]


@pytest.mark.parametrize("infix", list(HEADROOM_WIDTHS))
def test_every_level_has_the_declared_label_count_and_frequencies(infix, rows):
    n = len(rows)
    for k in OVERLAPS:
        preset = get_preset(overlap_name(k, infix))
        assert preset.task_labels == overlap_labels(k) and preset.image_size == REGIME_SIZE
        for cols in preset.task_labels:
            assert len(cols) == LABELS
            for c in cols:
                freq = sum(r[c] for r in rows) / n
                se = math.sqrt(freq * (1 - freq) / n)
                assert abs(freq - UNIFORM_PRESENCE) < CLASS_SHARE_SLACK + 3 * se, (k, c, freq)
        assert len(set(preset.task_labels[0]) & set(preset.task_labels[1])) == k


def test_label_mi_rises_across_the_series_by_a_plain_count(rows):
    import torch

    labels = torch.tensor(rows, dtype=torch.float32)
    counted = []
    for k in OVERLAPS:
        a, b = get_preset(overlap_name(k, "-wide")).task_labels
        plain = _plain_mi(rows, a, b)
        assert label_mutual_information(labels, a, b) == pytest.approx(plain, abs=1e-9)
        # the description's figure: exact for uniform digits; MNIST's shares and 6,000 pictures
        assert OVERLAP_MI[k] == pytest.approx(_exact_uniform_mi(a, b), abs=5e-4)
        assert plain == pytest.approx(OVERLAP_MI[k], abs=0.06)
        counted.append(plain)
    assert all(lo + 0.5 < hi for lo, hi in zip(counted, counted[1:])), counted
