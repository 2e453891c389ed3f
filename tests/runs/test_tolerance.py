"""A report and a sweep at any tolerance (runs/tolerance.py), against read-offs known by hand
(tests/runs/curve_fixtures.py), the report's own stored tolerances, and the sweep as written."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pam_explorer.runs import report as rep
from pam_explorer.runs import tolerance as TOL
from tests.runs import curve_fixtures as F

UI_FIXTURES = Path(__file__).resolve().parents[1] / "ui" / "fixtures"


def old_report() -> dict:
    return json.loads((UI_FIXTURES / "report_two_seeds_quick.json").read_text())


def pam_flops(delta: float, seed: int, subset: str) -> float:
    (a, b, ab), _ = F.PAM_ROWS[F.PAM_AT[delta]]
    return {"A": a, "B": b, "A+B": ab}[subset] * (1.1 if seed else 1.0)


def b1_flops(delta: float, subset: str) -> float:
    picks = F.B1_AT[delta]
    return sum(F.B1_ROWS[t][picks[t]][0] for t in subset.split("+"))


@pytest.mark.parametrize("delta", [0.25, 0.5, 1.0, 2.0])
def test_report_at_a_tolerance_gives_the_hand_read_offs(delta):
    shown = TOL.report_at(F.published_report(), delta)
    assert shown["delta"] == delta and shown["floor"] == {t: v - delta for t, v in F.VAL.items()}
    for subset in ("A", "B", "A+B"):
        assert shown["schemes"]["PAM"]["flops"][subset] == pytest.approx(
            (pam_flops(delta, 0, subset) + pam_flops(delta, 1, subset)) / 2)
        assert shown["schemes"]["B1"]["flops"][subset] == pytest.approx(b1_flops(delta, subset))
    assert shown["schemes"]["B2"]["flops"] is None and shown["missing"] == {"B2": ["0", "1"]}
    ratios = [[b1_flops(delta, k) / pam_flops(delta, s, k) for k in ("A", "B", "A+B")] for s in (0, 1)]
    assert shown["gains"]["vs_B1"]["average"] == pytest.approx(sum(sum(r) / 3 for r in ratios) / 2)
    assert shown["gains"]["vs_B1"]["peak"] == pytest.approx(sum(max(r) for r in ratios) / 2)
    assert "vs_B2" not in shown["gains"]  # B2 has no checkpoint above the floor in any seed
    i = F.PAM_AT[delta]
    assert shown["schemes"]["PAM"]["widths"] == {"fc1": {"A": i, "B": i, "A+B": 10 - i}}  # the read-off's
    assert shown["schemes"]["PAM"]["widths_seed"] == "0"
    worst_test = min(F.PAM_ROWS[i][1])  # test accuracy falls as validation does
    assert shown["floor_check"]["PAM"]["meets"] == (worst_test >= -delta)


def j(x):
    """As JSON on disk (the read-offs hold tuples where a report read back holds lists)."""
    return json.loads(json.dumps(x))


def no_widths(schemes: dict) -> dict:
    """Widths apart: the report keeps each record's own (read off at the run's delta), the page
    shows those of the checkpoint read off at the slider's."""
    drop = ("widths", "widths_seed")
    return {n: {k: v for k, v in s.items() if k not in drop} for n, s in j(schemes).items()}


def test_the_stored_tolerances_and_the_runs_own_delta_are_reproduced():
    report = F.published_report(delta=0.5)
    same = TOL.report_at(report, 0.5)
    for key in ("gains", "missing", "floor_check"):
        assert j(same[key]) == report[key], key
    assert no_widths(same["schemes"]) == no_widths(report["schemes"])
    for d, stored in report["tolerances"].items():
        shown = TOL.report_at(report, float(d))
        assert j(shown["gains"]) == stored["gains"] and shown["missing"] == stored["missing"]
        assert no_widths(shown["schemes"]) == no_widths(stored["schemes"])


def test_latency_is_kept_at_the_runs_own_delta_only():
    report = F.published_report()
    report["latency_gains"] = {"vs_B1": {"average": 1.0, "peak": 1.0, "n": 2}}
    report["latency_measurement"] = {"schemes": {}}
    assert {"latency_gains", "latency_measurement"} <= set(TOL.report_at(report, 0.5))
    assert not {"latency_gains", "latency_measurement"} & set(TOL.report_at(report, 1.0))


def test_a_floor_greedy_report_is_labelled_and_not_read_off():
    old = old_report()
    assert not TOL.has_curves(old) and TOL.schedule_of(old) == TOL.FLOOR_GREEDY
    assert TOL.report_at(old, 2.0) == old  # its figures were decided at its own delta
    assert TOL.schedule_of(F.published_report()) == TOL.PUBLISHED
    assert TOL.schedule_of({**F.published_report(), "per_seed": {}}) == TOL.FLOOR_GREEDY  # no curve


def test_slider_options_span_0_to_2_with_the_stored_tolerances_and_the_runs_delta():
    opts = TOL.tolerance_options(F.published_report())
    assert opts[0] == 0.0 and opts[-1] == 2.0 and len(opts) == 41
    assert {0.25, 0.5, 1.0, 2.0} <= set(opts)
    big = TOL.tolerance_options(F.published_report(delta=100.0))
    assert big[-1] == 100.0 and big[-2] == 2.0
    assert TOL.tolerance_options(F.published_report(delta=0.33)).count(0.33) == 1


# --------------------------------------------------------------------------- sweeps
def test_a_sweep_at_its_own_delta_is_the_sweep_as_written():
    sweep = F.published_sweep(0.5)
    assert TOL.sweep_has_curves(sweep)
    assert json.dumps(TOL.sweep_at(sweep, 0.5), sort_keys=True) == json.dumps(sweep, sort_keys=True)


def test_a_sweeps_frontier_and_recommendation_follow_the_tolerance():
    """Hand-derived (curve_fixtures.published_sweep): at 0.5 only alpha 0.1 meets the floor; at
    1.0 alpha 0.5 does too and is cheaper on every subset."""
    at05, at1 = F.published_sweep(0.5), TOL.sweep_at(F.published_sweep(0.5), 1.0)
    assert [p["meets_floor"] for p in at05["points"]] == [True, False]
    assert at05["points"][1]["below_floor"] == [0, 1] and "flops" not in at05["points"][1]
    assert at05["frontier"] == [0.1] and at05["recommended"]["alpha"] == 0.1
    assert [p["meets_floor"] for p in at1["points"]] == [True, True]
    assert at1["frontier"] == [0.5] and at1["recommended"]["alpha"] == 0.5
    assert at1["points"][1]["flops"]["A+B"] == pytest.approx((40 + 44) / 2)  # read-off #1 of both seeds
    assert at1["points"][0]["flops"]["A+B"] == pytest.approx((90 + 99) / 2)  # PAM 0.1 at 1.0: #2
    assert at1["points"][0]["gains"]["vs_B1"]["average"] == pytest.approx(
        sum((b1_flops(1.0, k) / pam_flops(1.0, s, k)) for s in (0, 1) for k in ("A", "B", "A+B")) / 6)
    assert at1["delta"] == 1.0 and at1["floor"] == {t: v - 1.0 for t, v in F.TEST.items()}
    assert j(at1) == {**F.published_sweep(1.0), "config": at1["config"]}  # as if the sweep had run at 1.0


def test_a_sweep_without_curves_is_returned_as_it_is():
    from tests.ui.test_sweep_ui import make_sweep

    sweep = make_sweep()
    assert not TOL.sweep_has_curves(sweep) and TOL.sweep_at(sweep, 2.0) == sweep


def test_at_tolerance_is_the_reports_own_function():
    """The slider's figures are the writer's (runs.report.at_tolerance), not a second read-off."""
    report = F.published_report()
    per_seed = {s: v["schemes"] for s, v in report["per_seed"].items()}
    direct = rep.at_tolerance(per_seed, 1.0, ["A", "B"])
    shown = TOL.report_at(report, 1.0)
    assert shown["gains"] == direct["gains"]
    assert shown["schemes"]["B1"]["flops"] == direct["schemes"]["B1"]["flops"]
