"""The regime map on the Results page and the headroom figure beside the explorer's alpha slider,
through AppTest.

Independent references: the heat map's numbers against the gains recomputed from the stage
records by the backend test's own read-off (tests/runs/test_regime_map.py: its isotonic fit,
gains and intervals); the headroom sentence against compression ratios worked out by hand from
hand-made curves that start at the networks' FLOPs (FlopCounterMode)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pam_explorer.runs import headroom as hr
from tests.runs.test_regime_map import recomputed_gains
from tests.ui.apptest import DEFAULT_ALPHA, fresh, plotly_specs
from tests.ui.regime_fixture import CONTROL, HEADLINE, b1_records, regime_results
from ui import figures as F

REPO = Path(__file__).resolve().parents[2]
RESULTS = str(REPO / "ui" / "page_results.py")
MAP = "Regime map (study)"


@pytest.fixture()
def results(tmp_path, monkeypatch, runs_root):
    root = tmp_path / "results"
    monkeypatch.setenv("PAM_RESULTS_ROOT", str(root))
    return root


def _map_page() -> AppTest:
    at = AppTest.from_file(RESULTS, default_timeout=60).run()  # the page alone
    assert not at.exception, at.exception
    at.radio(key="res_view").set_value(MAP).run()
    assert not at.exception, at.exception
    return at


def _heat(at: AppTest) -> dict:
    """The map's figure, its trace of the mean gains first."""
    spec = next(s for s in plotly_specs(at) if any(t.get("name") == "mean gain" for t in s["data"]))
    return {**spec, "data": [t for t in spec["data"] if t.get("name") == "mean gain"]}


def test_the_heat_map_shows_the_gains_recomputed_from_the_records(results):
    records = regime_results(results)
    at = _map_page()
    spec = _heat(at)
    heat = spec["data"][0]
    assert heat["y"] == ["width 1", "width 4"] and heat["x"] == ["K = 0 (0.62 bits)", "K = 2 (2.02 bits)"]
    want = {name: recomputed_gains({s: r for s, r in rec.items() if len(r) == 3}, 0.5)
            for name, rec in records.items()}
    assert heat["z"][1][0] == pytest.approx(want[HEADLINE]["vs_B1"]["average"], rel=1e-9)
    assert heat["z"][0][1] == pytest.approx(want[CONTROL]["vs_B1"]["average"], rel=1e-9)
    assert heat["z"][0][0] is None and heat["z"][1][1] is None
    notes = {(a["y"], a["x"]): a["text"] for a in spec["layout"]["annotations"]}
    assert notes[("width 1", "K = 0 (0.62 bits)")] == "not run"
    lo, hi = want[HEADLINE]["vs_B1"]["average_ci95"]
    assert f"[{lo:.2f}, {hi:.2f}]" in notes[("width 4", "K = 0 (0.62 bits)")]
    assert "n = 3" in notes[("width 4", "K = 0 (0.62 bits)")]
    assert "n = 2" in notes[("width 1", "K = 2 (2.02 bits)")]  # seed 2 unfinished
    # another baseline, gain and tolerance: the same cells, other numbers
    at.selectbox(key="regime_vs").set_value("vs_B2").run()
    at.selectbox(key="regime_kind").set_value("peak").run()
    at.selectbox(key="regime_delta").set_value(2.0).run()
    assert not at.exception, at.exception
    other = recomputed_gains({s: r for s, r in records[HEADLINE].items()}, 2.0)
    assert _heat(at)["data"][0]["z"][1][0] == pytest.approx(other["vs_B2"]["peak"], rel=1e-9)
    table = at.table[0].value
    assert table.loc[CONTROL, "seeds"] == "2 of 3" and "seed 2 not finished" in table.loc[CONTROL, "missing"]
    assert table.loc[HEADLINE, "missing"] == "—"
    assert table.loc[HEADLINE, "B1 compression A"].endswith("×)")
    at.selectbox(key="regime_prune").set_value("vib").run()
    assert any("no cell pruned by P1" in i.value for i in at.info)


def test_a_cell_opens_its_report(results):
    regime_results(results)
    at = _map_page()
    box = at.selectbox(key="regime_cell")
    assert set(box.options) == {f"width 4 · K = 0 (0.62 bits) · {HEADLINE}",
                                f"width 1 · K = 2 (2.02 bits) · {CONTROL}"}
    charts = len(plotly_specs(at))
    box.set_value(HEADLINE).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert HEADLINE in " ".join(m.value for m in at.markdown)  # the run's header line
    assert "pruning `taylor`" in " ".join(c.value for c in at.caption)  # its configuration
    assert len(plotly_specs(at)) > charts  # its gains and curves
    report = json.loads((results / "regime_map" / HEADLINE / "report.json").read_text())
    assert any("PAM" in str(t.value.index.tolist()) for t in at.table[1:])  # Table 1
    assert report["gains"]["vs_B1"]["average"] == pytest.approx(_heat(at)["data"][0]["z"][1][0])
    at.selectbox(key="regime_cell").set_value(CONTROL).run()
    assert not at.exception and any("2 of 3 seeds finished" in i.value for i in at.info)


def test_without_records_the_map_says_how_to_compute_it(results):
    at = _map_page()
    assert len(at.info) == 1 and "`python scripts/regime_map.py --rank flops-aware`" in at.info[0].value
    assert not plotly_specs(at)


def test_the_explorer_shows_measured_headroom(results, explorer):
    b1_records(results, "digits-2task", explorer.nets,
               {"A": [95.0, 94.8, 94.6, 93.0], "B": [92.0, 91.9, 91.7, 91.6]})
    at = fresh()
    text = " ".join(m.value for m in at.markdown)
    # A stays within 0.5 points down to checkpoint 2 (60 % of its FLOPs), B to checkpoint 3 (40 %)
    assert "B1 compresses task A 1.67×, B 2.50× at 0.5 points (measured from 1 record)" in text
    assert any("B2" in c.value and "merging" in c.value for c in at.caption)  # what it means
    assert not [b for b in at.button if b.key == "headroom_estimate"]


def test_the_explorer_estimates_headroom_on_click_only(results, explorer, monkeypatch):
    calls = {"figure": 0, "estimate": 0}
    figure = hr.headroom_figure

    def counted_figure(*args, **kw):
        calls["figure"] += 1
        return figure(*args, **kw)

    def fake_estimate(preset, nets, delta=0.5, **kw):
        calls["estimate"] += 1
        return {"measured": False, "delta": delta, "compression": {"A": 3.0, "B": 4.25}, "seconds": 12.5,
                "plan": {}, "data": {"n_train": 2000}}

    monkeypatch.setattr(hr, "headroom_figure", counted_figure)
    monkeypatch.setattr(hr, "estimate_headroom", fake_estimate)
    alphas = F.alpha_grid(explorer.max_mi(), extra=[DEFAULT_ALPHA])
    at = fresh()
    button = at.button(key="headroom_estimate")
    assert button.label.startswith("Estimate headroom (about ")
    assert "no B1 curve of these networks yet" in " ".join(m.value for m in at.markdown)
    assert calls == {"figure": 1, "estimate": 0}  # never estimated on page load
    at.select_slider[0].set_value(alphas[40]).run()
    assert calls == {"figure": 1, "estimate": 0}  # a slider move recomputes nothing
    button.click().run()
    assert not at.exception, at.exception
    assert calls["estimate"] == 1
    text = " ".join(m.value for m in at.markdown)
    assert "Quick estimate: B1 compresses task A 3.00×, B 4.25× at 0.5 points" in text
    assert "a lower bound" in text  # what the estimate measured against the records
    at.select_slider[0].set_value(alphas[45]).run()
    assert calls == {"figure": 1, "estimate": 1}
    assert "Quick estimate: B1 compresses task A 3.00×" in " ".join(m.value for m in at.markdown)
    assert not [b for b in at.button if b.key == "headroom_estimate"]


def test_the_explorer_measures_headroom_as_a_background_run(results, explorer, monkeypatch):
    """The measure button submits B1 alone (the experiment's defaults, seed 0) to the run queue;
    once that run has ended, the figure is read again and shows the measurement."""
    from pam_explorer.runs import jobs

    submitted, state = [], {"state": "running"}
    monkeypatch.setattr(jobs, "submit", lambda job, root, name="run", **kw: submitted.append(job) or "r1")
    monkeypatch.setattr(jobs, "start_next", lambda root=None: "r1")
    monkeypatch.setattr(jobs, "read_status", lambda rid, root=None: {"run_id": rid, **state})
    alphas = F.alpha_grid(explorer.max_mi(), extra=[DEFAULT_ALPHA])
    at = fresh()
    button = at.button(key="headroom_measure")
    assert button.label.startswith("Measure it (B1 alone, seed 0, up to ")
    button.click().run()
    assert not at.exception, at.exception
    assert submitted == [hr.measure_job("digits-2task", "lenet5")]
    assert submitted[0]["args"] == {"preset": "digits-2task", "arch": "lenet5", "prune": "taylor",
                                    "schemes": ["B1"], "seeds": [0]}
    assert any("Run r1 measures the headroom" in m.value for m in at.success)
    at.select_slider[0].set_value(alphas[40]).run()  # still running: the figure is not read again
    assert any("Measuring run r1" in c.value for c in at.caption)
    assert not [b for b in at.button if b.key == "headroom_measure"]
    b1_records(results, "digits-2task", explorer.nets,
               {"A": [95.0, 94.8, 94.6, 93.0], "B": [92.0, 91.9, 91.7, 91.6]})  # what the run wrote
    state["state"] = "done"
    at.select_slider[0].set_value(alphas[45]).run()
    assert not at.exception, at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "B1 compresses task A 1.67×, B 2.50× at 0.5 points (measured from 1 record)" in text
    assert not [b for b in at.button if b.key in ("headroom_measure", "headroom_estimate")]
