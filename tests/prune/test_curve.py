"""Read-offs of accuracy-FLOPs curves (prune/curve.py) against values worked out by hand."""
from __future__ import annotations

import pytest

from pam_explorer.prune.curve import monotone, readoff, readoffs


def points(*accs: tuple[float, float]) -> list[dict]:
    return [{"val_accuracy": {"A": a, "B": b}, "flops": {"A+B": 100 - 10 * i}}
            for i, (a, b) in enumerate(accs)]


def test_monotone_is_the_non_increasing_least_squares_fit():
    # by hand (pool adjacent violators): 97 < 97.5 pools to 97.25; 96 < 96.4 pools to 96.2
    fit = monotone([97.0, 97.5, 96.0, 96.4, 95.0, 90.0])
    assert fit == pytest.approx([97.25, 97.25, 96.2, 96.2, 95.0, 90.0])
    assert monotone([3.0, 2.0, 1.0]) == [3.0, 2.0, 1.0] and monotone([]) == []
    # brute force on a tiny grid: no non-increasing sequence of grid values fits better
    values = [1.0, 3.0, 2.0]
    fit = monotone(values)
    err = sum((f - v) ** 2 for f, v in zip(fit, values))
    grid = [x / 4 for x in range(0, 17)]
    best = min(sum((c - v) ** 2 for c, v in zip(cand, values))
               for cand in ((a, b, c) for a in grid for b in grid for c in grid if a >= b >= c))
    assert err <= best + 1e-12


def test_readoff_is_the_cheapest_checkpoint_within_the_floor_after_smoothing():
    ref = {"A": 97.0, "B": 96.0}
    curve = points((97.0, 96.0), (97.2, 95.9), (96.8, 95.0), (96.9, 96.0), (95.0, 93.0))
    # fits by hand: A [97.1, 97.1, 96.85, 96.85, 95]; B [96, 95.9, 95.5, 95.5, 93]
    # B's pooled 95.5 meets 96 - 0.5 exactly; the raw 95.0 of point 2 alone would not
    assert readoff(curve, ref, 0.5) == 3
    assert readoff(curve, ref, 0.4) == 1  # B at 95.5 < 95.6
    assert readoff(curve, ref, 3.0) == 4
    assert readoff(points((90.0, 90.0)), ref, 0.5) is None  # even the first point is below
    assert readoffs(curve, ref, (0.4, 0.5)) == {"0.4": 1, "0.5": 3}
    # a lucky far-pruned point after failing ones is not picked: 96.9 at point 3 pools down
    assert readoff(points((97.0, 96.0), (95.0, 96.0), (95.0, 96.0), (96.9, 96.0)), ref, 0.5) == 0


def test_readoff_never_picks_a_checkpoint_where_only_task_b_is_below_its_floor():
    ref = {"A": 97.0, "B": 96.0}
    curve = points((97.0, 96.0), (97.0, 95.6), (97.0, 95.4), (97.0, 95.0))  # A always fine
    assert readoff(curve, ref, 0.5) == 1
    assert readoff(curve, {"A": 97.0}, 0.5) == 3  # judged on A alone, everything passes


def test_an_unfinetuned_start_is_left_out_of_the_fit_and_is_the_fallback():
    ref = {"A": 97.0, "B": 96.0}
    start = {"val_accuracy": {"A": 91.5, "B": 88.8}, "flops": {"A+B": 100}, "finetuned": False}
    trained = points((97.0, 96.0), (96.8, 95.7), (95.0, 93.0))
    # pooled with the start, the first two checkpoints would fall under the floor; left out, they pass
    assert readoff([start, *trained], ref, 0.5) == 2
    assert readoff([start, *trained], ref, 0.0) == 1  # point 1 (97.0/96.0) is the last at the reference
    original = {"val_accuracy": {"A": 97.0, "B": 96.0}, "flops": {"A+B": 100}, "finetuned": False}
    failing = points((95.0, 94.0), (94.0, 93.0))
    assert readoff([original, *failing], ref, 0.5) == 0  # B1's start is the original: always passes
    assert readoff([start, *failing], ref, 0.5) is None
