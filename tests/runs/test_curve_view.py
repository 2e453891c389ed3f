"""The Results page's curves (runs/curve_view.py) against hand-read values of the hand-made
curves (tests/runs/curve_fixtures.py), a hand-computed isotonic fit and band, and the report's
own read-off (runs.report.at_tolerance: a read-off marker lies where the report reads off)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pam_explorer.runs import curve_view as CV
from pam_explorer.runs import report as rep
from tests.runs import curve_fixtures as F

TASKS = ["A", "B"]


def pairs(points) -> list[float]:
    """(FLOPs, y) pairs flattened, for pytest.approx (which does not nest)."""
    return [float(v) for p in points for v in p]
OLD = Path(__file__).resolve().parents[1] / "ui" / "fixtures" / "report_two_seeds_quick.json"


def test_a_merged_curve_is_judged_on_its_worst_task():
    c = CV.seed_curve(F.record(F.merged_curve(F.PAM_ROWS)), "PAM", "A+B", TASKS, 1.0)
    # point 0 (the net as given) is not fitted: the line runs over the finetuned checkpoints
    assert pairs(c["fit"]) == pytest.approx(pairs([(120, -0.2), (90, -0.6), (60, -2.0)]))
    assert [p["y"] for p in c["raw"]] == pytest.approx([0.1, -0.2, -0.6, -2.0])
    assert [p["task"] for p in c["raw"]] == ["B", "A", "A", "A"] and {p["se"] for p in c["raw"]} == {F.SE}
    assert c["readoff"] == pytest.approx({"flops": 90, "y": -0.6, "points": 2, "fraction": 0.8})
    # subset A of the same merged net: x moves to A's FLOPs, the judgement stays on every task
    a = CV.seed_curve(F.record(F.merged_curve(F.PAM_ROWS)), "PAM", "A", TASKS, 1.0)
    assert [x for x, _ in a["fit"]] == [80, 60, 40] and a["readoff"]["flops"] == 60


def test_the_fit_is_the_isotonic_one():
    """Point 0 is the net as given (not finetuned: not fitted, as in prune.curve.readoff); changes
    A of the finetuned 1-3: -0.5, 0.0, -1.0 (B flat): pool-adjacent-violators pools 1-2 to -0.25."""
    rows = [((40, 40, 50), (-0.6, 0.0)), ((30, 30, 40), (-0.5, 0.0)), ((20, 20, 30), (0.0, 0.0)),
            ((10, 10, 20), (-1.0, 0.0))]
    c = CV.seed_curve(F.record(F.merged_curve(rows)), "PAM", "A+B", TASKS, 0.3)
    assert [y for _, y in c["fit"]] == pytest.approx([-0.25, -0.25, -1.0])
    assert [p["y"] for p in c["raw"]] == pytest.approx([-0.6, -0.5, 0.0, -1.0])  # as measured
    assert c["readoff"]["points"] == 2  # -0.25 >= -0.3; the raw -0.5 of #1 does not stop it
    assert CV.seed_curve(F.record(F.merged_curve(rows)), "PAM", "A+B", TASKS, 0.2)["readoff"] is None


def test_b1_on_several_tasks_is_the_sum_of_its_networks_read_offs():
    c = CV.seed_curve(F.record(F.b1_curve()), "B1", "A+B", TASKS, 0.5)
    assert c["raw"] == []  # no checkpoint of its own
    staircase = [(100, 0.0), (90, -0.3), (75, -0.4), (65, -1.0), (55, -1.5)]  # module doc of curve_fixtures
    assert pairs(c["fit"]) == pytest.approx(pairs(staircase))
    per_seed = {"0": F.seed_records(0)}
    for delta in (0.25, 0.5, 1.0, 2.0):
        at = CV.seed_curve(F.record(F.b1_curve()), "B1", "A+B", TASKS, delta)["readoff"]
        assert at["flops"] == rep.at_tolerance(per_seed, delta, TASKS)["schemes"]["B1"]["flops"]["A+B"]
        assert at["points"] == F.B1_AT[delta]
        assert any(pairs([p]) == pytest.approx([at["flops"], at["y"]]) for p in c["fit"])  # on the curve
    one = CV.seed_curve(F.record(F.b1_curve()), "B1", "B", TASKS, 0.5)  # one task: its network alone
    assert pairs(one["fit"]) == pytest.approx(pairs([(50, 0.0), (35, -0.4), (25, -1.5)]))
    assert len(one["raw"]) == 3
    assert one["readoff"]["flops"] == 35


def test_the_band_spans_the_seeds_fits_where_all_have_values():
    """f1 through (50, -1) and (100, 0); f2 through (60, -2) and (120, 0): on [60, 100], f1 at 60
    is -0.8 and f2 at 100 is -2/3 (linear between checkpoints)."""
    b = CV.band([[(100, 0.0), (50, -1.0)], [(120, 0.0), (60, -2.0)]], n=5)
    assert b["flops"] == pytest.approx([60, 70, 80, 90, 100])
    assert (b["low"][0], b["high"][0]) == pytest.approx((-2.0, -0.8))
    assert (b["low"][-1], b["high"][-1]) == pytest.approx((-2 / 3, 0.0))
    assert b["median"][0] == pytest.approx(-1.4)
    assert CV.band([[(100, 0.0), (50, -1.0)]]) is None  # one seed: its line, no band
    assert CV.band([[(100, 0.0), (90, -1.0)], [(50, 0.0), (40, -1.0)]]) is None  # no common range


def test_curves_view_of_a_report_lists_seeds_without_a_read_off():
    views = CV.curves_view(F.published_report(), "A+B", 0.5)
    assert list(views) == ["B1", "B2", "PAM"]
    assert views["B2"]["missing"] == ["0", "1"] and views["PAM"]["missing"] == []
    assert [c["readoff"]["flops"] for c in views["PAM"]["seeds"].values()] == pytest.approx([120, 132])
    assert views["PAM"]["band"] is not None


def test_a_floor_greedy_report_gives_one_point_per_seed():
    old = json.loads(OLD.read_text())
    views = CV.curves_view(old, "A", 0.5)
    for name, view in views.items():
        for seed, c in view["seeds"].items():
            r = old["per_seed"][seed]["schemes"][name]
            judged = ["A"] if name == "B1" else TASKS
            assert c["fit"] == [] and c["readoff"] is None
            assert c["point"]["flops"] == r["flops"]["A"]
            assert c["point"]["y"] == pytest.approx(min(r["val_accuracy"][t] - r["reference_val_accuracy"][t]
                                                        for t in judged))
