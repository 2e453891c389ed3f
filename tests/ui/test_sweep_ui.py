"""The alpha sweep on the dashboard: pure builders (ui/sweep_view.py) against the sweep report's
numbers, and the pages through AppTest: no sweep -> the page says so and launches one; a sweep ->
measured figures at the swept alpha nearest the slider, the live recommendation follows the
page's probabilities, and "use recommended alpha" moves the slider."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pam_explorer.core.errors import ConfigError
from pam_explorer.runs import jobs
from pam_explorer.runs import sweep_report as sr
from pam_explorer.runs.estimate import human
from ui import sweep_view as V

APP = str(Path(__file__).resolve().parents[2] / "app.py")
ALPHAS = (0.01, 0.1, 0.5)
# mean FLOPs per alpha: uniform mix -> 0.1 (29/3), only A -> 0.5 (4), only A+B -> 0.01 (10)
FLOPS = {0.01: (10, 10, 10), 0.1: (6, 12, 11), 0.5: (4, 14, 14)}


def rec(a, b, ab, acc=99.0) -> dict:
    return {"flops": {"A": a, "B": b, "A+B": ab}, "params": {"A": 1, "B": 1, "A+B": 1},
            "accuracy": {"A": acc, "B": acc}, "val_accuracy": {"A": acc, "B": acc}, "seconds": 1.0,
            "groups_before_pruning": {"fc1": {"A": 1, "B": 1, "A+B": 2}}}


def make_sweep() -> dict:
    records = {}
    for s, d in ((0, -1.0), (1, 1.0)):
        records[("B1", s, None)] = rec(20 + d, 20, 40)
        records[("B2", s, None)] = rec(15 + d, 15, 15)
        for a, (fa, fb, fab) in FLOPS.items():
            records[("PAM", s, a)] = rec(fa + d, fb, fab)
    head = {"preset": "digits-2task", "tasks": ["A", "B"], "prune": "taylor", "config": {},
            "torch_threads": 1}
    return sr.build(head, [(a, f"{a:g}") for a in ALPHAS], records, [0, 1], {"A": 90.0, "B": 90.0}, 0.5,
                    sr.uniform_mix(["A", "B"]))


# --------------------------------------------------------------------------- pure builders
def test_nearest_point_is_nearest_in_log_alpha():
    s = make_sweep()
    assert V.nearest_point(s, 0.02)["alpha"] == 0.01  # log distance: 0.30 vs 0.70
    assert V.nearest_point(s, 0.04)["alpha"] == 0.1
    assert V.nearest_point(s, 0.0)["alpha"] == 0.01 and V.nearest_point(s, 9.0)["alpha"] == 0.5
    assert V.nearest_point({"points": [{"alpha": 0.1}]}, 0.1) is None  # nothing measured yet


def test_tables_and_figures_show_the_report_numbers():
    s = make_sweep()
    p = V.nearest_point(s, 0.1)
    table = V.measured_table(s, p)
    assert list(table.index) == ["PAM (alpha 0.1)", "B1", "B2"]
    half = (p["flops_ci95"]["A"][1] - p["flops_ci95"]["A"][0]) / 2 / 1e6
    assert table.loc["PAM (alpha 0.1)", "FLOPs A (M)"] == f"{6 / 1e6:.3f} ± {half:.3f}"
    assert table.loc["B1", "acc A (%)"] == "99.00 (min 99.00)" and table.loc["B2", "floor met"] == "yes"
    gains = V.gains_table(p)
    assert gains.loc["vs B1", "average"] == pytest.approx(p["gains"]["vs_B1"]["average"], abs=1e-3)
    fig = V.fig_measured_flops(s, p).to_dict()
    pam = fig["data"][0]
    assert list(pam["y"]) == [6, 12, 11] and list(pam["error_y"]["array"]) == pytest.approx(
        [p["flops_ci95"][k][1] - p["flops"][k] for k in ("A", "B", "A+B")])
    probs = {"A": 0.5, "B": 0.25, "A+B": 0.25}
    front = V.fig_frontier(s, 0.1, probs, 0.5).to_dict()
    expected = next(t for t in front["data"] if t["name"] == "expected (your mix)")
    mixed = [0.5 * a + 0.25 * b + 0.25 * ab for a, b, ab in FLOPS.values()]
    assert list(expected["y"]) == pytest.approx(mixed)
    star = next(t for t in front["data"] if t["name"] == "recommended")
    assert list(star["x"]) == [0.5]


def test_live_recommendation_and_probabilities_from_page_state():
    s = make_sweep()
    state = {"prob_digits-2task_A": 1.0, "prob_digits-2task_B": 0.0, "prob_digits-2task_A+B": 0.0}
    assert V.live_recommendation(s, V.probabilities(["A", "B"], state, "digits-2task"))["alpha"] == 0.5
    assert V.live_recommendation(s, V.probabilities(["A", "B"], {}, "digits-2task"))["alpha"] == 0.1
    with pytest.raises(ConfigError, match="sum to 1"):
        V.live_recommendation(s, {"A": 0.2})


def test_sweep_job_spec():
    job = V.sweep_job("digits-2task", "taylor", "auto", "0,1", "local", 2, True)
    assert job == {"command": "sweep", "args": {"preset": "digits-2task", "prune": "taylor", "alphas": "auto",
                                                "seeds": [0, 1], "executor": "local", "workers": 2,
                                                "quick": True}}
    assert V.sweep_job("p", "vib", "0.1, 0.5", "3", "slurm", None, False)["args"]["alphas"] == [0.1, 0.5]
    for alphas in ("0.1,-1", "nan", "x"):
        with pytest.raises(ConfigError):
            V.sweep_job("digits-2task", "taylor", alphas, "0", "local", None, False)
    table = V.points_table([{"label": "B1_s0", "state": "done", "attempts": 1, "seconds": 3.0,
                             "source": "computed"}])
    assert table.loc[0, "job"] == "B1_s0" and table.loc[0, "source"] == "computed"


# --------------------------------------------------------------------------- pages
@pytest.fixture()
def runs_root(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("PAM_RUNS_ROOT", str(root))
    monkeypatch.setattr(jobs, "start_next", lambda *a, **k: None)  # queue runs, never start them
    return root


def fresh() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, at.exception
    return at


def button(at, text):
    return next(b for b in at.button if text in b.label)


def measured(at):
    """The explorer's measured table (PAM at the shown alpha, B1, B2)."""
    return next(df.value for df in at.dataframe if str(df.value.index[0]).startswith("PAM (alpha"))


def chart_titles(at) -> list[str]:
    return [json.loads(el.proto.spec)["layout"]["title"]["text"] for el in at.get("plotly_chart")]


def test_explorer_without_sweep_says_so_and_launches_one(runs_root):
    at = fresh()
    assert any("No alpha sweep of `digits-2task`" in i.value for i in at.info)
    button(at, "Launch a sweep of digits-2task").click().run()
    assert not at.exception and any("queued" in s.value for s in at.success)
    (run,) = jobs.list_runs(runs_root)
    assert run["job"]["command"] == "sweep" and run["job"]["args"]["alphas"] == "auto"


def test_explorer_shows_the_sweep_and_moves_the_slider_to_the_recommended_alpha(runs_root):
    (runs_root / "my-sweep").mkdir(parents=True)
    (runs_root / "my-sweep" / "sweep.json").write_text(json.dumps(make_sweep()))
    at = fresh()
    assert not at.error and "Measured after pruning: the alpha sweep" in [s.value for s in at.subheader]
    for a in ALPHAS:
        assert a in at.select_slider[0].options or str(a) in at.select_slider[0].options  # swept alphas
    options = [float(o) for o in at.select_slider[0].options]
    for target, swept in ((0.15, 0.1), (0.3, 0.5), (0.013, 0.01)):  # slider between swept alphas
        value = min((o for o in options if o not in ALPHAS), key=lambda o: abs(o - target))
        assert V.nearest_point(make_sweep(), value)["alpha"] == swept  # brute force over 3 alphas:
        assert min(ALPHAS, key=lambda a: abs(math.log(a / value))) == swept  # log-nearest
        at.select_slider[0].set_value(value).run()
        pam = measured(at)
        assert pam.index[0] == f"PAM (alpha {swept:g})"
        assert pam.iloc[0]["FLOPs A (M)"].startswith(f"{FLOPS[swept][0] / 1e6:.3f} ± ")
    assert any(t.startswith("Measured trade-off across alphas") for t in chart_titles(at))  # frontier
    at.select_slider[0].set_value(0.5).run()
    assert measured(at).index[0] == "PAM (alpha 0.5)"
    button(at, "Use recommended alpha (0.1 bits)").click().run()  # uniform probabilities
    assert at.select_slider[0].value == pytest.approx(0.1)
    assert measured(at).index[0] == "PAM (alpha 0.1)"
    at.radio(key="explorer_view").set_value("Expected FLOPs").run()  # where the probabilities are set
    for s, p in (("A", 1.0), ("B", 0.0), ("A+B", 0.0)):
        at.number_input(key=f"prob_digits-2task_{s}").set_value(p)
    at.run()
    button(at, "Use recommended alpha (0.5 bits)").click().run()
    assert at.select_slider[0].value == pytest.approx(0.5) and not at.exception


def test_runs_page_launches_a_sweep_and_shows_points(runs_root):
    at = fresh()
    at.switch_page("ui/page_runs.py").run()
    alphas = next(t for t in at.text_input if t.label.startswith("alphas"))
    alphas.set_value("0.1,-1")
    button(at, "Launch sweep").click().run()
    assert any("finite numbers >= 0" in e.value for e in at.error) and not jobs.list_runs(runs_root)
    next(t for t in at.text_input if t.label.startswith("alphas")).set_value("0.05,0.5")
    button(at, "Launch sweep").click().run()
    (run,) = jobs.list_runs(runs_root)
    assert run["job"]["args"]["alphas"] == [0.05, 0.5] and run["job"]["args"]["seeds"] == [0, 1, 2]
    (Path(run["dir"]) / "points.json").write_text(json.dumps({"points": [
        {"label": "B1_s0", "state": "done", "attempts": 1, "seconds": 2.0, "source": "computed"},
        {"label": "PAM_a0.05_s0", "state": "running", "attempts": 1}]}))
    at.run()
    shown = [df.value for df in at.dataframe if "job" in getattr(df.value, "columns", [])]
    assert shown and list(shown[-1]["job"]) == ["B1_s0", "PAM_a0.05_s0"]


# --------------------------------------------------------------------------- issue 26, points 5, 6, 8
def test_the_frontier_names_every_line_and_a_quick_sweep_says_so():
    s = make_sweep()
    probs = {"A": 0.5, "B": 0.25, "A+B": 0.25}
    front = V.fig_frontier(s, 0.1, probs, 0.5).to_dict()
    assert not front["layout"].get("shapes")  # every line is a trace: it has a legend entry
    lines = {t["name"]: t for t in front["data"]}
    for name in ("B1", "B2"):
        line = lines[f"{name} expected (your mix)"]
        want = sum(p * s["baselines"][name]["flops"][k] for k, p in probs.items())
        assert line["line"]["dash"] == "dash" and list(line["y"]) == pytest.approx([want, want])
    assert lines["slider alpha 0.1"]["line"]["dash"] == "dot"
    assert not front["layout"]["title"]["text"].endswith("quick sweep")
    s["config"] = {"quick": True}
    p = V.nearest_point(s, 0.1)
    for fig in (V.fig_frontier(s, 0.1, probs, 0.5), V.fig_measured_flops(s, p)):
        assert fig.layout.title.text.endswith(" · quick sweep")


def plant_stages(root: Path, seconds: dict[str, float]) -> None:
    folder = root / "measured"
    (folder / "stages").mkdir(parents=True)
    (folder / ".pam-run.json").write_text(json.dumps({"command": "experiment", "config": {
        "preset": "digits-2task", "prune": "taylor", "quick": False, "arch": "lenet5"}}))
    for name, sec in seconds.items():
        (folder / "stages" / f"{name}_s0.json").write_text(json.dumps({"seconds": sec}))


def test_buttons_that_start_work_say_how_long_and_the_sweep_form_uses_taylor(runs_root):
    at = fresh()
    captions = [c.value for c in at.caption if c.value.startswith("Duration")]
    assert captions and "duration unknown" in captions[0] and "has run on this machine yet" in captions[0]
    plant_stages(runs_root, {"B1": 600.0, "B2": 300.0, "PAM": 100.0})
    at.run()
    workers = len(os.sched_getaffinity(0))  # the sweep's default: a job per usable core
    want = 3 * (600 + 300 + 8 * 100) / workers  # seeds x (B1 + B2 + 8 alphas) / workers
    assert any(c.value.replace("\\", "").startswith(f"Duration: about {human(want)} (") for c in at.caption)
    at.switch_page("ui/page_runs.py").run()
    assert not at.exception
    assert at.selectbox(key="sweep_prune").value == "taylor"  # as the experiment form and the README
    info = " ".join(i.value for i in at.info)
    assert f"**Duration**: about {human(600 + 300 + 100)}" in info.replace("\\", "")  # one seed, 3 schemes
    assert any(c.value.replace("\\", "").startswith("A sweep of digits-2task with the defaults above")
               and f"about {human(want)}" in c.value.replace("\\", "") for c in at.caption)
