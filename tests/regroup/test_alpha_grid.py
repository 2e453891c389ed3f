"""--alphas auto (regroup/alpha_grid.py) on hand-built trajectories. The reference for "where the
grouping changes" is a plain loop over the scores (no running maximum, no bisect)."""
from __future__ import annotations

import math
import random

import pytest

from pam_explorer.core.errors import ConfigError
from pam_explorer.regroup.algorithms import Trajectory, phases
from pam_explorer.regroup.alpha_grid import auto_alphas, change_points


def traj(scores, subset=("A",), layer="fc") -> Trajectory:
    n = len(scores)
    return Trajectory(layer, subset, tuple(range(n)), tuple(float(s) for s in scores), tuple(range(n)))


def brute_cut(scores, alpha) -> int:
    """Longest prefix whose every score is <= alpha, by walking it."""
    n = 0
    while n < len(scores) and all(s <= alpha for s in scores[:n + 1]):
        n += 1
    return n


def test_change_points_are_exactly_where_the_cut_grows():
    rng = random.Random(0)
    for _ in range(20):
        scores = [rng.choice([rng.uniform(-0.01, 0.01), rng.uniform(0, 2)])
                  for _ in range(rng.randint(1, 30))]
        points = change_points(traj(scores))
        ordered = sorted(scores)
        probes = set(scores) | {-1.0, 3.0} | {(a + b) / 2 for a, b in zip(ordered, ordered[1:])}
        grows = sorted({p for p in probes if brute_cut(scores, p) > brute_cut(scores, p - 1e-12)})
        assert points == pytest.approx(grows)


def shaped(n_flat=10, n_rise=30, n_sat=10, top=1.0) -> list[float]:
    """Scores with a flat phase (1e-6), a geometric rise from 1e-3 * top to top, a saturating tail."""
    rise = [top * 1e-3 * (1e3 ** (k / (n_rise - 1))) for k in range(n_rise)]
    return [1e-6] * n_flat + rise + [top * (1 + 0.001 * k) for k in range(1, n_sat + 1)]


def test_auto_alphas_span_flat_to_rising_log_spaced_change_points():
    t = traj(shaped())
    got = auto_alphas([{"fc": {("A",): t}}])
    end = phases(t)[1][2]
    assert got.hi == pytest.approx(t.running_max[end - 1])  # top of the rising phase
    assert got.lo >= got.hi / 1e3 and got.lo == min(got.alphas)
    assert len(got.alphas) == 8 and got.candidates > 8
    assert got.alphas[0] == got.lo and got.alphas[-1] == got.hi
    assert set(got.alphas) <= set(change_points(t))  # every alpha changes the grouping
    ratios = [math.log(b / a) for a, b in zip(got.alphas, got.alphas[1:])]
    ideal = math.log(got.hi / got.lo) / 7
    assert all(0.5 * ideal < r < 1.5 * ideal for r in ratios)  # log-spaced
    assert all(a > 1e-5 for a in got.alphas)  # the flat phase's noise is below the span


def test_few_change_points_are_all_kept_and_every_layer_and_seed_counts():
    a = traj([0.0, 0.2, 0.2, 0.5, 0.9, 1.0])
    b = traj([0.1, 0.3], subset=("B",))
    c = traj([0.05, 0.4], layer="conv")
    got = auto_alphas([{"fc": {("A",): a, ("B",): b}}, {"conv": {("A",): c}}])
    assert list(got.alphas) == sorted(got.alphas)
    assert {0.1, 0.3, 0.05, 0.4, 0.2} <= set(got.alphas)
    assert len(got.alphas) <= 8


def test_nothing_above_zero_is_an_error():
    with pytest.raises(ConfigError, match="no alpha changes the grouping"):
        auto_alphas([{"fc": {("A",): traj([-0.1, 0.0, 0.0])}}])
    with pytest.raises(ConfigError):
        auto_alphas([{"fc": {("A",): traj(shaped())}}], max_count=1)
