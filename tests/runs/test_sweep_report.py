"""The sweep's report (runs/sweep_report.py) on hand-made stage records: floor rule, Pareto
frontier, recommended alpha under a mix and paired gains, each checked against numbers worked
out by hand in the test."""
from __future__ import annotations

import pytest

from pam_explorer.core.errors import ConfigError
from pam_explorer.runs import sweep_report as sr

SEEDS = (0, 1)
ORIGINAL = {"A": 90.0, "B": 90.0}
DELTA = 0.5


def rec(a: float, b: float, ab: float, acc_a: float = 95.0, acc_b: float = 95.0) -> dict:
    return {"flops": {"A": a, "B": b, "A+B": ab}, "params": {"A": 1, "B": 1, "A+B": 1},
            "accuracy": {"A": acc_a, "B": acc_b}, "val_accuracy": {"A": acc_a, "B": acc_b},
            "seconds": 1.0, "log": ["dropped from the report"]}


def per_seed(a: float, b: float, ab: float, **acc) -> dict:
    """Seed 0 one FLOP below, seed 1 one above: the mean is (a, b, ab)."""
    return {0: rec(a - 1, b - 1, ab - 1, **acc), 1: rec(a + 1, b + 1, ab + 1, **acc)}


def point(alpha, pam, b1=None, b2=None):
    b1 = b1 or per_seed(20, 20, 40)
    b2 = b2 or per_seed(15, 15, 15)
    return sr.point(alpha, f"{alpha:g}", pam, b1, b2, SEEDS, ORIGINAL, DELTA)


def test_summary_means_min_and_floor():
    p = point(0.1, {0: rec(7, 8, 13, acc_a=91.0), 1: rec(9, 10, 15, acc_a=89.4)})
    assert p["flops"] == {"A": 8, "B": 9, "A+B": 14}
    assert p["accuracy"]["A"] == pytest.approx(90.2) and p["accuracy_min"]["A"] == 89.4
    assert p["worst"]["A"] == pytest.approx(-0.6)
    assert not p["meets_floor"]  # 89.4 < 90 - 0.5 in seed 1
    assert "log" not in p["per_seed"]["0"] and p["per_seed"]["1"]["flops"]["A"] == 9
    ok = point(0.1, {0: rec(7, 8, 13, acc_a=89.5), 1: rec(9, 10, 15)})
    assert ok["meets_floor"]  # exactly at the floor counts
    missing = point(0.1, {0: rec(7, 8, 13)})
    assert not missing["complete"] and not missing["meets_floor"]  # a seed did not finish


def test_gains_are_paired_by_seed():
    b1 = {0: rec(20, 20, 40), 1: rec(30, 30, 60)}
    pam = {0: rec(10, 10, 20), 1: rec(10, 10, 10)}
    p = point(0.1, pam, b1=b1)
    # seed 0: 20/10, 20/10, 40/20 -> 2; seed 1: 3, 3, 6 -> mean 4, peak 6
    assert p["gains"]["vs_B1"]["per_seed"]["average"] == pytest.approx([2.0, 4.0])
    assert p["gains"]["vs_B1"]["average"] == pytest.approx(3.0)
    assert p["gains"]["vs_B1"]["per_seed"]["peak"] == pytest.approx([2.0, 6.0])
    # seeds 2 and 4: the t-interval of two values (t_0.975,1 = 12.71) is 3 -+ 12.71: it holds 1
    assert p["gains"]["vs_B1"]["average_verdict"] == "no difference"
    assert p["gains"]["vs_B1"]["ci_method"] == "t"
    assert p["gains"]["vs_B1"]["average_ci95"] == pytest.approx([3 - 12.7062, 3 + 12.7062], abs=1e-3)
    one = sr.point(0.1, "0.1", {0: pam[0]}, {0: b1[0]}, {0: b1[0]}, (0,), ORIGINAL, DELTA)
    assert one["gains"]["vs_B1"]["average_verdict"] == "single seed"  # gain 2, but no interval


def synthetic_points() -> list[dict]:
    return [point(0.01, per_seed(10, 10, 12)),
            point(0.1, per_seed(8, 9, 14)),
            point(0.5, per_seed(9, 11, 15)),          # dominated by 0.1
            point(1.0, per_seed(5, 5, 5, acc_a=89.0)),  # cheapest, below the floor
            point(2.0, per_seed(10, 10, 12))]         # ties 0.01 on every subset


def test_frontier_is_pareto_among_points_at_the_floor():
    assert sr.frontier(synthetic_points()) == [0.01, 0.1, 2.0]


def test_recommendation_follows_the_mix():
    pts = synthetic_points()
    base = {"B1": {"flops": {"A": 20, "B": 20, "A+B": 40}}, "B2": {"flops": {"A": 15, "B": 15, "A+B": 15}}}
    only_a = sr.recommend(pts, base, {"A": 1.0})
    assert only_a["alpha"] == 0.1 and only_a["expected_flops"] == 8
    assert only_a["gains"]["vs_B1"] == pytest.approx(20 / 8)
    only_ab = sr.recommend(pts, base, {"A+B": 1.0})
    assert only_ab["alpha"] == 0.01  # tie with 2.0 at 12: the smaller alpha
    uniform = sr.recommend(pts, base, sr.uniform_mix(["A", "B"]))
    assert uniform["alpha"] == 0.1  # (8+9+14)/3 = 10.33 < (10+10+12)/3
    assert uniform["expected_flops"] == pytest.approx(31 / 3)
    none = sr.recommend([p for p in pts if p["alpha"] == 1.0], base, {"A": 1.0})
    assert none["alpha"] is None and "floor" in none["reason"]
    with pytest.raises(ConfigError, match="sum to 1"):
        sr.recommend(pts, base, {"A": 0.5})
    with pytest.raises(ConfigError, match="sum to 1"):
        sr.recommend(pts[3:4], base, {"A": 0.5})  # a bad mix is refused even with no candidate


def test_build_and_markdown():
    records = {("B1", s, None): r for s, r in per_seed(20, 20, 40).items()}
    records.update({("B2", s, None): r for s, r in per_seed(15, 15, 15).items()})
    records.update({("PAM", s, 0.1): r for s, r in per_seed(8, 9, 14).items()})
    records[("PAM", 0, 0.5)] = rec(9, 9, 9)
    failed = [{"label": "PAM_a0.5_s1", "message": "boom", "log": "logs/PAM_a0.5_s1.log"}]
    head = {"preset": "p", "tasks": ["A", "B"], "prune": "taylor", "config": {}, "torch_threads": 1}
    s = sr.build(head, [(0.1, "0.1"), (0.5, "0.5")], records, SEEDS, ORIGINAL, DELTA,
                 sr.uniform_mix(["A", "B"]), failed)
    assert s["format"] == sr.FORMAT and s["alphas"] == [0.1, 0.5]
    assert s["frontier"] == [0.1] and s["recommended"]["alpha"] == 0.1
    assert not s["complete"] and s["points"][1]["seeds"] == [0]
    assert s["floor"] == {"A": 89.5, "B": 89.5}
    md = sr.markdown(s)
    assert "(recommended)" in md and "PAM_a0.5_s1" in md and "Recommended alpha" in md
