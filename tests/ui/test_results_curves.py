"""The Results page on the published schedule's curves (issue 23) and sweeps in Results (issue 26
item 3), through AppTest, against read-offs known by hand (tests/runs/curve_fixtures.py) and the
report's own function (runs.report.at_tolerance, called here, independently of the page).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pam_explorer.runs import report as rep
from tests.runs import curve_fixtures as F
from tests.ui.apptest import plotly_specs
from tests.ui.test_results_truth import RESULTS, fixture_report, markdown_texts, plant_run
from ui import labels as L
from ui import results_view as R

TASKS = ["A", "B"]
SUBSETS = ("A", "B", "A+B")
RID = "20270102-000000-curves"


def page() -> AppTest:
    at = AppTest.from_file(RESULTS, default_timeout=60).run()
    assert not at.exception, at.exception
    return at


def at_tolerance(report: dict, delta: float) -> dict:
    return rep.at_tolerance({s: v["schemes"] for s, v in report["per_seed"].items()}, delta, TASKS)


def hand_flops(name: str, delta: float, subset: str) -> float:
    """Mean over seeds 0 and 1 of the hand read-off (curve_fixtures' tables)."""
    if name == "B1":
        return sum(F.B1_ROWS[t][F.B1_AT[delta][t]][0] for t in subset.split("+"))
    (a, b, ab), _ = F.PAM_ROWS[F.PAM_AT[delta]]
    return {"A": a, "B": b, "A+B": ab}[subset] * (1 + 1.1) / 2


@pytest.mark.parametrize("delta", [1.0, 2.0, 0.25])
def test_the_tolerance_slider_moves_costs_and_gains_as_at_tolerance_computes(runs_root, delta):
    report = F.published_report(delta=0.5)
    plant_run(runs_root, RID, report)
    at = page()
    slider = at.select_slider(key=f"tol_single_{RID}")
    assert slider.value == 0.5 and {"0", "0.25", "0.5 (the run's)", "1", "2"} <= set(slider.options)
    assert at.table[0].value.equals(R.table1_display(report))  # opens at the run's own tolerance
    slider.set_value(delta).run()
    assert not at.exception, at.exception
    want = at_tolerance(report, delta)
    table = at.table[0].value
    for name in ("B1", "PAM"):
        s = want["schemes"][name]
        for k in SUBSETS:
            assert s["flops"][k] == pytest.approx(hand_flops(name, delta, k))  # the reference is right
            assert table.loc[name, f"FLOPs {k}"] == R.pm(s["flops"][k], s["flops_ci95"][k], "{:,.0f}")
    assert set(table.loc["B2"]) == {L.DASH}  # no checkpoint above the floor at any of these
    gains = at.table[1].value
    g = want["gains"]["vs_B1"]
    assert gains.loc["vs B1 (FLOPs)", "average"] == R.pm(g["average"], g["average_ci95"], "{:.3f}") + "x"
    assert gains.loc["vs B1 (FLOPs)", "peak"] == R.pm(g["peak"], g["peak_ci95"], "{:.3f}") + "x"
    assert "vs B2 (FLOPs)" not in gains.index
    assert any(f"Read off the curves at tolerance {delta:g} points" in c.value for c in at.caption)
    diamonds = next(t for t in _curve_spec(at)["data"] if t.get("name") == f"PAM: read-off at {delta:g}")
    (a, b, ab), change = F.PAM_ROWS[F.PAM_AT[delta]]
    assert diamonds["x"] == pytest.approx([ab, ab * 1.1])
    assert diamonds["y"] == pytest.approx([min(change)] * 2)
    floor = next(t for t in _curve_spec(at)["data"] if t.get("name", "").startswith("floor"))
    assert floor["y"] == [-delta, -delta]
    layout = _curve_spec(at)["layout"]  # axis titles as objects: plotly.js drops a bare string
    assert layout["yaxis"]["title"]["text"] == "validation accuracy - original (points)"
    assert layout["xaxis"]["title"]["text"] == "FLOPs of A+B (batch 1)"


def _curve_spec(at: AppTest) -> dict:
    return next(s for s in plotly_specs(at) if "Accuracy vs FLOPs" in s["layout"]["title"]["text"])


def test_a_scheme_below_the_floor_says_so_and_every_accuracy_has_its_se(runs_root):
    report = F.published_report(delta=0.5)
    plant_run(runs_root, RID, report)
    at = page()
    assert any(w.value == L.plain("B2: no checkpoint above the floor (original - 0.5 on validation) in seeds "
                                  "0, 1; no figures or gains at this tolerance.") for w in at.warning)
    readoffs = at.table[-1].value
    assert list(readoffs.loc["B2 · seed 1"]) == ["no checkpoint above the floor"] + [L.DASH] * 7
    (a, b, ab), (ca, cb) = F.PAM_ROWS[F.PAM_AT[0.5]]
    row = readoffs.loc["PAM · seed 1"]
    assert row["FLOPs A+B"] == f"{ab * 1.1:,.0f}" and row["read-off"].startswith("#1 (90%")
    assert row["val A (%)"] == f"{F.VAL['A'] + ca:.2f} ± {F.SE:.2f}"
    assert row["test B (%)"] == f"{F.TEST['B'] + cb:.2f} ± {F.SE:.2f}"
    assert readoffs.loc["B1 · seed 0", "read-off"] == "A #1 (90%), B #1 (90%)"
    names = [t.get("name") for t in _curve_spec(at)["data"]]
    assert "B2: monotone fit per seed (no checkpoint above the floor)" in names
    checkpoints = next(t for t in _curve_spec(at)["data"]
                       if t.get("name") == "PAM: checkpoints (validation ± SE)")
    assert set(checkpoints["error_y"]["array"]) == {F.SE}  # each checkpoint's validation SE


def test_an_old_floor_greedy_report_is_labelled_and_has_no_slider(runs_root):
    old = fixture_report()
    plant_run(runs_root, "20270101-000000-old", old)
    at = page()
    assert not at.select_slider
    assert any("floor-greedy" in i.value for i in at.info)
    assert at.table[0].value.equals(R.table1_display(old))  # the report's own figures
    squares = next(t for t in _curve_spec(at)["data"] if t.get("name") == "PAM: floor-greedy result")
    assert squares["x"] == [old["per_seed"][s]["schemes"]["PAM"]["flops"]["A+B"] for s in ("0", "1")]


def plant_sweep(root: Path, name: str, sweep: dict, **status) -> str:
    plant_run(root, name, None, job={"command": "sweep", "args": {}}, **status)
    (root / name / "sweep.json").write_text(json.dumps(sweep))
    return name


def test_a_sweep_in_results_with_its_frontier_at_the_slider(runs_root):
    plant_run(runs_root, "20270101-000000-old", fixture_report())
    rid = plant_sweep(runs_root, "20270103-000000-sweep", F.published_sweep(0.5))
    at = page()
    assert at.selectbox(key="res_run").value == rid  # the newest run with results
    texts = markdown_texts(at)
    assert not [t for t in texts if "without writing report.json" in t]
    assert any(t.startswith("**Alpha sweep** (complete)") for t in texts)
    table = at.table[0].value
    assert list(table.index) == ["B1", "B2", "PAM alpha 0.1", "PAM alpha 0.5"]
    assert table.loc["PAM alpha 0.5", "floor met"] == "no checkpoint above the floor in seeds 0, 1"
    assert table.loc["PAM alpha 0.1", "recommended"] == "yes"
    assert any("**0.1** bits" in s.value for s in at.success)
    at.select_slider(key=f"sweep_tol_single_{rid}").set_value(1.0).run()
    assert not at.exception, at.exception
    table = at.table[0].value
    assert table.loc["PAM alpha 0.5", "frontier"] == "yes" and table.loc["PAM alpha 0.1", "frontier"] == ""
    assert table.loc["PAM alpha 0.5", "FLOPs A+B (M)"].startswith(f"{(40 + 44) / 2 / 1e6:.3f} ±")
    assert any("**0.5** bits" in s.value for s in at.success)
    frontier = next(s for s in plotly_specs(at) if "trade-off" in s["layout"]["title"]["text"])
    star = next(t for t in frontier["data"] if t["name"] == "recommended")
    assert star["x"] == [0.5]


def test_the_page_opens_on_runs_with_results_and_compares_two_of_them(runs_root):
    plant_run(runs_root, "20270101-000000-old", fixture_report(), created=1.8e9)
    plant_run(runs_root, RID, F.published_report(), created=1.8e9 + 1)
    plant_run(runs_root, "20270103-000000-merge", None, created=1.8e9 + 2,
              job={"command": "experiment", "args": {}})
    plant_run(runs_root, "20270104-000000-cancelled", None, created=1.8e9 + 3, state="cancelled")
    at = page()
    assert at.selectbox(key="res_run").value == RID
    options = at.selectbox(key="res_run").options  # newest first; still listed, marked
    assert [o.endswith("· no results") for o in options] == [True, True, False, False]
    at.toggle[0].set_value(True).run()
    assert not at.exception, at.exception
    assert [at.selectbox(key=f"res_run_{i}").value for i in (0, 1)] == [RID, "20270101-000000-old"]
    at = AppTest.from_file(RESULTS, default_timeout=60)
    at.session_state["res_run"] = "20270101-000000-old"  # as the Runs page's "Open its results" sets it
    at.run()
    assert at.selectbox(key="res_run").value == "20270101-000000-old" and not at.exception


def test_strict_json_inf_alpha_and_overrides_are_read_as_numbers(runs_root):
    report = fixture_report()
    report["alpha"] = "inf"
    report["config"]["regroup_config"]["overrides"] = [["conv1", "inf"], ["fc1", 0.5]]
    plant_run(runs_root, "20270101-000000-inf", report)
    at = page()
    assert any("alpha inf bits, per-layer overrides: `conv1=inf, fc1=0.5`" in c.value for c in at.caption)


def test_the_explorers_sweep_section_reads_the_same_curves_at_its_tolerance(runs_root):
    """The explorer's sweep section, alpha slider on 0.5: at tolerance 0.5 PAM at alpha 0.5 has no
    checkpoint above the floor, so the nearest measured alpha is 0.1 and it is recommended; at 1.0
    alpha 0.5 is measured, on the frontier and recommended (curve_fixtures.published_sweep)."""
    from tests.ui.apptest import fresh

    (runs_root / "curves-sweep").mkdir(parents=True)
    (runs_root / "curves-sweep" / "sweep.json").write_text(json.dumps(F.published_sweep(0.5)))
    at = fresh()
    at.select_slider[0].set_value(0.5).run()  # the explorer's alpha (the swept alphas are options)
    measured = next(df.value for df in at.dataframe if str(df.value.index[0]).startswith("PAM (alpha"))
    assert measured.index[0] == "PAM (alpha 0.1)"
    assert measured.loc["B2", "floor met"] == "no checkpoint above the floor in seeds 0, 1"
    assert any(b.label == "Use recommended alpha (0.1 bits)" for b in at.button)
    at.select_slider(key="sweep_tolerance").set_value(1.0).run()
    assert not at.exception, at.exception
    measured = next(df.value for df in at.dataframe if str(df.value.index[0]).startswith("PAM (alpha"))
    assert measured.index[0] == "PAM (alpha 0.5)" and measured.iloc[0]["floor met"] == "yes"
    assert any(b.label == "Use recommended alpha (0.5 bits)" for b in at.button)
    assert any("figures read off at tolerance 1 points" in c.value for c in at.caption)


def test_a_recorded_report_reads_off_its_own_curves(runs_root):
    """The recorded two-seed report (tests/ui/fixtures/README.md): PAM's seed 1 has no checkpoint
    above the floor at any tolerance (its finetuned checkpoints are all 1.5+ points down), seed 0
    has one from 0.25 points (its untrained first point is left out of the fit: prune.curve); so
    at 1 and at 0.5 PAM's figures and gains are seed 0's. The CIs over two seeds are t-intervals,
    and the caption says so."""
    from tests.ui.apptest import FIXTURES

    report = json.loads((FIXTURES / "report_published_two_seeds.json").read_text())
    rid = plant_run(runs_root, RID, report)
    at = page()
    assert at.select_slider(key=f"tol_single_{rid}").value == 1.0
    line = ("PAM: no checkpoint above the floor (original - 1 on validation) in seed 1; its figures and "
            "gains are over the other seeds.")
    assert any(w.value == L.plain(line) for w in at.warning)
    assert any("(t-interval: fewer than 5 seeds)" in c.value for c in at.caption)
    sharing = [s for s in plotly_specs(at) if s["layout"]["title"]["text"].startswith("PAM sharing ratio")]
    assert len(sharing) == 1 and "(seed 0)" in sharing[0]["layout"]["title"]["text"]
    at.select_slider(key=f"tol_single_{rid}").set_value(0.5).run()
    assert not at.exception, at.exception
    want = at_tolerance(report, 0.5)
    assert want["missing"]["PAM"] == ["1"] and want["schemes"]["PAM"]["n"] == 1 and want["gains"]
    pam = want["schemes"]["PAM"]
    assert at.table[0].value.loc["PAM", "FLOPs A+B"] == R.pm(pam["flops"]["A+B"], pam["flops_ci95"]["A+B"],
                                                              "{:,.0f}")
    b1 = want["schemes"]["B1"]
    cell = R.pm(b1["flops"]["A+B"], b1["flops_ci95"]["A+B"], "{:,.0f}")
    assert at.table[0].value.loc["B1", "FLOPs A+B"] == cell
