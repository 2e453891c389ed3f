"""Pure builders of the dashboard (no streamlit): the explorer's charts, the Results page's tables
and figures, the text helpers and the run jobs. References: the backend's own numbers (the
committed preset's Explorer), hand-built reports and trajectories."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from pam_explorer.core.config import MIConfig, RegroupConfig
from pam_explorer.regroup.explorer import Explorer
from ui import figures as F
from ui import labels as L
from ui import results_logs as G
from ui import results_view as R
from ui import run_args as A


@pytest.fixture(scope="module")
def explorer() -> Explorer:
    return Explorer.open("digits-2task", MIConfig())


def _series(option: dict, name: str) -> dict:
    return next(s for s in option["series"] if s["name"] == name)


# --------------------------------------------------------------------------- MI phase chart (items 1, 2)
def _curves(explorer, layer):
    return explorer.phase_curve(layer), explorer.trajs.trajectories[layer]


@pytest.mark.parametrize("log_y", [False, True])
def test_phase_alpha_line_is_at_alpha_against_the_score(explorer, log_y):
    """The alpha line sits at alpha in data coordinates on a linear and on a log axis (it was
    drawn at log10(alpha) before), against the score curve (MI beyond chance); raw MI and the
    chance level are drawn too."""
    curves, trajs = _curves(explorer, "fc1")
    alpha = 0.0849
    opt = F.fig_phase(curves, trajs, alpha, "fc1", log_y=log_y)
    json.dumps(opt)  # JSON-able (what st.echarts_chart sends)
    line = _series(opt, f"alpha = {alpha:g}")
    assert [y for _, y in line["data"]] == [alpha, alpha]
    assert opt["yAxis"]["type"] == ("log" if log_y else "value")
    assert opt["yAxis"]["min"] < alpha < opt["yAxis"]["max"]
    score = _series(opt, "A: MI beyond chance")
    want = curves[("A",)]["score"]
    got = [y for _, y in score["data"]]
    if log_y:  # values <= 1e-4 cannot be drawn on a log axis: gaps
        assert got == [v if v > F.LOG_FLOOR else None for v in want] and None not in got[-5:]
    else:
        assert got == want
    assert [y for _, y in _series(opt, "A: chance level")["data"]][-1] == pytest.approx(
        curves[("A",)]["null"][-1] if not log_y or curves[("A",)]["null"][-1] > F.LOG_FLOOR else None)
    cut = _series(opt, "A: MI beyond chance")["markLine"]["data"][0]["xAxis"] - 0.5
    assert cut == F.cut(trajs[("A",)], alpha)


def test_phase_axis_is_clamped_to_the_data_not_to_a_huge_override(explorer):
    curves, trajs = _curves(explorer, "conv2")
    top = max(v for c in curves.values() for k in ("score", "mi", "null") for v in c[k])
    for log_y in (False, True):
        opt = F.fig_phase(curves, trajs, 1e9, "conv2", log_y=log_y)
        want = top * (1.5 if log_y else 1.08)  # the data's top, widened to a round number
        assert want <= opt["yAxis"]["max"] <= want * (10 if log_y else 1.1)
        assert not any(s["name"].startswith("alpha =") for s in opt["series"])
        assert "alpha = 1e+09 bits: above the chart" in opt["title"]["subtext"]


def test_nice_bounds_round_outward():
    assert F.nice_bounds(-0.0007477590825146763, 0.013902733884751798) == (-0.001, 0.014)
    assert F.nice_bounds(0.0, 2.3456) == (0.0, 2.4)
    assert F.nice_bounds(0.0, 0.0) == (0.0, 0.0)


# --------------------------------------------------------------------------- groups, FLOPs (explorer)
def test_groups_chart_and_table_are_the_explorers_groups(explorer):
    cfg = RegroupConfig(alpha=0.0849)
    groups = explorer.groups(cfg)
    table = F.sharing_table(explorer.tasks, groups)
    opt = F.fig_groups(table, F.group_keys(explorer.tasks, groups))
    for key in ("A", "B", "A+B"):
        assert _series(opt, key)["data"] == [len(g.groups[tuple(key.split("+"))]) for g in groups.values()]
    labels = [d["label"]["formatter"] for d in _series(opt, "sharing ratio")["data"]]
    assert labels == [f"{g.sharing_ratio():.0%} shared" for g in groups.values()]
    dropped = explorer.groups(RegroupConfig(alpha=0.0849, both_picked="drop"))
    t2 = F.sharing_table(explorer.tasks, dropped)
    if any(g.dropped for g in dropped.values()):
        assert list(t2["dropped"]) == [len(g.dropped) for g in dropped.values()]
        assert _series(F.fig_groups(t2, F.group_keys(explorer.tasks, dropped)),
                       "dropped (not in the network)")["data"] == [len(g.dropped) for g in dropped.values()]
    flops = F.flops_table(explorer.predicted_flops(cfg))
    assert _series(F.fig_flops(flops), "PAM")["data"] == list(flops["PAM"])


# --------------------------------------------------------------------------- shared vs alpha (item 7)
def test_sharing_turning_points_mark_where_sharing_rises_again():
    alphas = [0.0, 0.1, 0.2, 0.3, 0.4]
    curves = {"l1": {"shared": [10, 6, 4, 7, 10], "kept": [10] * 5, "multi": [0, 0, 0, 3, 6]},
              "l2": {"shared": [10, 8, 6, 5, 5], "kept": [10] * 5, "multi": [0] * 5}}
    assert F.sharing_turns(alphas, curves) == {"l1": 0.2}  # l2 never rises again: no marker
    opt = F.fig_shared_vs_alpha(alphas, curves, 0.3)
    marks = _series(opt, "least sharing (rises again beyond)")["data"]
    assert [m["value"] for m in marks] == [[0.2, 40.0]] and "is shared" in marks[0]["name"]
    assert _series(opt, "alpha = 0.3")["data"] == [[0.3, 0], [0.3, 105]]
    assert _series(opt, "l1")["data"][0] == [0.1, 60.0]  # alpha 0 is not on a log axis


def test_real_sharing_curves_are_not_monotone_and_marked(explorer):
    grid = tuple(F.alpha_grid(explorer.max_mi(), n=40))
    curves = explorer.sharing_curves(grid)
    turns = F.sharing_turns(grid, curves)
    assert turns, "digits-2task: sharing rises again at a larger alpha in some layer"
    for layer, a in turns.items():
        frac = F.shared_fractions(grid, curves[layer])
        i = grid.index(a)
        assert max(frac[i:]) > frac[i]
        assert curves[layer]["shared"][grid.index(a)] == len(
            explorer.groups(RegroupConfig(alpha=a)).get(layer).groups[explorer.tasks])


# --------------------------------------------------------------------------- results (items 3, 9, 10)
def _scheme(f: float, a: float) -> dict:
    return {"flops": {"A": f, "B": f, "A+B": 2 * f},
            "flops_ci95": {"A": [f - 2, f + 2], "B": [f, f], "A+B": [2 * f, 2 * f]},
            "accuracy": {"A": a, "B": a - 1}, "accuracy_ci95": {"A": [a - 0.5, a + 0.5], "B": [a - 1, a - 1]},
            "accuracy_min": {"A": a - 0.4, "B": a - 1}}


def _report(seeds=(0, 1), quick=True) -> dict:
    n = len(seeds)
    return {"preset": "digits-2task", "tasks": ["A", "B"], "prune": "taylor", "alpha": 0.5, "quick": quick,
            "seeds": list(seeds), "reference_accuracy": {"A": 96.78, "B": 95.2},
            "config": {"rank": "published", "floor": "original", "regroup": "default",
                       "regroup_config": {"alpha": 0.5, "overrides": [["conv1", 0.1]],
                                          "both_picked": "share"},
                       "mi": {"profile": "default", "n_samples": 256, "sigma2": 0.1, "kernel": "scaled",
                              "null_perms": 16}},
            "schemes": {"B1": _scheme(100, 96.0), "B2": _scheme(80, 90.0), "PAM": _scheme(50, 95.5)},
            "gains": {"vs_B1": {"average": 2.0, "peak": 2.2, "average_ci95": [1.8, 2.2],
                                "peak_ci95": [2.0, 2.4], "average_verdict": "above", "n": n},
                      "vs_B2": {"average": 1.0, "peak": 1.2, "average_ci95": [0.9, 1.1],
                                "peak_ci95": [1.1, 1.3], "average_verdict": "no difference", "n": n}},
            "floor_check": {"B2": {"meets": False, "worst": {"A": -6.0, "B": -5.0}}}}


def test_table1_display_mean_ci_worst_seed_and_dashes():
    t = R.table1_display(_report())
    assert t.loc["original", "acc A (%)"] == "96.78"
    assert t.loc["original", "FLOPs A+B"] == L.DASH and "None" not in t.to_string()
    assert t.loc["PAM", "acc A (%)"] == "95.50 ± 0.50 (worst 95.10)"
    assert t.loc["PAM", "FLOPs A"] == "50 ± 2" and t.loc["PAM", "FLOPs A+B"] == "100"
    one = _report(seeds=(0,), quick=False)
    assert "worst" not in R.table1_display(one).loc["PAM", "acc A (%)"]


def test_gains_display_gives_the_verdict_and_seeds():
    g = R.gains_display(_report())
    assert g.loc["vs B1 (FLOPs)", "average"] == "2.000 ± 0.200x"
    assert g.loc["vs B1 (FLOPs)", "average 95% CI"] == "1.800-2.200"
    assert g.loc["vs B1 (FLOPs)", "verdict (average)"] == R.VERDICT_TEXT["above"]
    assert g.loc["vs B2 (FLOPs)", "verdict (average)"].startswith("no difference")
    assert g.loc["vs B1 (FLOPs)", "seeds"] == 2
    one = dict(_report(), gains={"vs_B1": {"average": 2.0, "peak": 2.2, "n": 1}})
    assert R.gains_display(one).loc["vs B1 (FLOPs)", "verdict (average)"] == "one seed: no CI"


def test_config_lines_floor_misses_and_quick_titles():
    lines = " ".join(R.config_lines(_report()))
    for want in ("rank `published`", "floor `original`", "profile `default`", "alpha 0.5 bits",
                 "conv1=0.1", "both_picked `share`", "MI profile `default`", "seeds [0, 1]", "quick run"):
        assert want in lines, want
    assert R.floor_misses(_report()) == [
        "B2 misses the accuracy floor (original - delta) in some seed: worst A -6.00, B -5.00 points"]
    assert R.fig_flops_bars(_report()).layout.title.text.endswith("quick run")
    assert R.fig_gains(_report()).layout.title.text.endswith("quick run")


def test_unstructured_reports_label_effective_flops():
    rep = _report()
    for s in rep["schemes"].values():
        s["sparse_flops"], s["dense_flops"] = dict(s["flops"]), {k: 10 * v for k, v in s["flops"].items()}
    assert R.flops_label(rep) == "effective FLOPs"
    assert "effective FLOPs A+B" in R.table1_display(rep).columns
    assert "dense FLOPs A+B (unpruned structure)" in G.sparse_table(rep).columns
    assert "vs B1 (effective FLOPs)" in R.gains_display(rep).index


def test_prune_log_plots_accepted_steps_only():
    """A VIB run with every step rejected (its tried widths go up and down) plots nothing but a
    note; with some accepted, exactly those steps are plotted."""
    def row(step, accepted, n):
        return {"step": step, "task": "AB"[step % 2], "accepted": accepted,
                "widths": {"conv1": {"A": 2, "B": 1, "A+B": n}}}
    rejected = G.log_frame([row(i, False, n) for i, n in enumerate((359, 354, 404, 398))])
    fig = G.fig_prune_log(rejected)
    assert not fig.data and "No prune step was accepted" in fig.layout.annotations[0].text
    assert G.accepted_steps(rejected) == (0, 4)
    mixed = G.log_frame([row(0, True, 350), row(1, False, 300), row(2, True, 340)])
    fig = G.fig_prune_log(mixed)
    shared = next(t for t in fig.data if t.name == "A+B")
    assert list(shared.x) == [0, 2] and list(shared.y) == [350, 340]
    assert G.accepted_steps(mixed) == (2, 3)


# --------------------------------------------------------------------------- labels, run jobs
def test_labels():
    assert L.dash(None) == L.DASH and L.dash(float("nan")) == L.DASH and L.dash(3, "{:.1f}") == "3.0"
    text = L.preset_description("A: digits 0-4, B: digits 5-9 (I(Y^A;Y^B) ~ 0.62 bits)", 0.6581)
    assert "0.62" not in text and "0.658 bits (measured" in text
    p = {"stage": "PAM seed 0", "message": "PAM: joint finetuning, epoch 1/3", "stage_number": 3,
         "stages": 3, "stage_fraction": 0.15}
    assert L.progress_text(p) == "PAM seed 0 (stage 3 of 3, 15% of it): joint finetuning, epoch 1/3"
    assert L.is_quick({"job": {"args": {"quick": True}}}) and L.is_quick({"quick": True})
    assert not L.is_quick({"job": {"args": {}}})
    assert L.run_label({"run_id": "r1", "state": "done", "quick": True}) == "r1 (done, quick)"
    assert L.model_stage({"stage": "merged, not finetuned"}) == "merged, not finetuned"
    assert L.model_stage({"scheme": "PAM", "prune": "taylor"}).endswith("pruned (taylor)")
    assert L.accuracy_text({"accuracy": {"A": 85.0}, "reference_accuracy": {"A": 96.0}}) == \
        "test accuracy A 85.0 % (original networks: A 96.0 %)"
    assert "profile default" in L.mi_text(MIConfig()) and "both_picked drop" in L.regroup_text(
        RegroupConfig(alpha=0.1, both_picked="drop"))


def test_run_jobs():
    assert A.parse_seeds("0, 1,2") == (0, 1, 2)
    for bad in ("", "a", "1,1", "-1"):
        with pytest.raises(ValueError):
            A.parse_seeds(bad)
    assert A.parse_overrides("conv1=0.1; fc1 = 0.2") == {"conv1": 0.1, "fc1": 0.2}
    for bad in ("conv1", "conv1=-1", "=0.1", "conv1=x", "conv1=inf"):
        with pytest.raises(ValueError):
            A.parse_overrides(bad)
    job = A.experiment_job("digits-2task", "taylor", A.MODES[0], 0.3, False, overrides={"conv1": 0.1},
                           seeds=(0, 1), floor="own", rank="published", regroup="paper")
    assert job == {"command": "experiment", "args": {
        "preset": "digits-2task", "prune": "taylor", "device": "auto", "alpha": 0.3,
        "overrides": {"conv1": 0.1}, "seeds": [0, 1], "floor": "own", "rank": "published",
        "regroup": "paper"}}  # the default rank (flops-aware) is left out
    assert A.regroup_profile(MIConfig()) == "default" and A.regroup_profile(MIConfig(n_samples=24)) is None
    assert A.run_differences(MIConfig(), RegroupConfig(), "pretrained", "default", "share") == []
    assert len(A.run_differences(MIConfig(n_samples=24), RegroupConfig(), "upload-x", "default", "drop")) == 3
    ft = A.finetune_export_job("digits-2task", RegroupConfig(alpha=0.2, overrides=(("fc1", 0.3),)),
                               MIConfig(), 2)
    assert ft["command"] == "merge" and ft["args"]["overrides"] == {"fc1": 0.3}
    assert ft["args"]["finetune_epochs"] == 2


def test_no_none_text_in_any_display_table():
    for df in (R.table1_display(_report()), R.gains_display(_report())):
        assert isinstance(df, pd.DataFrame)
        assert not any(isinstance(v, float) and math.isnan(v) for v in df.to_numpy().ravel())
        assert "None" not in df.to_string() and "nan" not in df.to_string()


def test_the_runs_page_plan_derives_config_and_command_from_the_job(tmp_path):
    """Issue 27: one call gives the job and, derived from it, the config and the command; the
    config equals the one written out field by field (what the page used to build beside the job)."""
    from pam_explorer.runs import job_spec
    from pam_explorer.runs.experiment import ExperimentConfig

    plan = A.experiment_plan("digits-2task", "adapmtl", A.MODES[1], 0.3, "fc1=0.2, conv1=0.1", "0,2", True,
                             "cpu", 0.8, "own", "flops-aware", "paper", [tmp_path])
    assert plan.job == A.experiment_job("digits-2task", "adapmtl", A.MODES[1], 0.3, True, "cpu", 0.8,
                                        {"conv1": 0.1, "fc1": 0.2}, (0, 2), "own", "flops-aware", "paper")
    assert plan.config == ExperimentConfig(preset="digits-2task", prune="adapmtl", alpha=0.3,
                                           overrides=(("conv1", 0.1), ("fc1", 0.2)), schemes=("PAM",),
                                           quick=True, seeds=(0, 2), device="cpu", target_sparsity=0.8,
                                           floor="own", rank="flops-aware", regroup="paper")
    assert plan.command == job_spec.describe(plan.job) and "--target-sparsity 0.8" in plan.command
    assert plan.duration.seconds is None  # nothing measured under tmp_path
    for bad in ("0,x", "-1"):
        with pytest.raises(ValueError, match="seeds"):
            A.experiment_plan("digits-2task", "taylor", A.MODES[0], 0.3, "", bad, False, "cpu", 0.9,
                              "original", "published", "default")
    with pytest.raises(ValueError, match="ExperimentConfig.target_sparsity|AdapMTLConfig"):
        A.experiment_plan("digits-2task", "adapmtl", A.MODES[0], 0.3, "", "0", False, "cpu", 1.5,
                          "original", "published", "default")
