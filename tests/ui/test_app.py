"""The dashboard through streamlit.testing.v1.AppTest: pages render; the slider drives the figures
and numbers exactly as the backend computes them; export; bad uploads; runs and results."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pam_explorer import export
from pam_explorer.core import paths
from pam_explorer.core.config import MIConfig, RegroupConfig
from pam_explorer.data import get_preset
from pam_explorer.regroup.explorer import Explorer
from pam_explorer.runs import jobs
from ui import figures as F
from ui import labels as L
from ui import results_view as R

DEFAULT_ALPHA = get_preset("digits-2task").default_alpha

APP = str(Path(__file__).resolve().parents[2] / "app.py")
FIXTURES = Path(__file__).resolve().parent / "fixtures"
PAGES = ["ui/page_setup.py", "ui/page_export.py", "ui/page_runs.py", "ui/page_results.py",
         "ui/page_explorer.py"]


@pytest.fixture(scope="module")
def explorer() -> Explorer:
    return Explorer.open("digits-2task", MIConfig())  # the app's default setup (cache hit)


@pytest.fixture()
def runs_root(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("PAM_RUNS_ROOT", str(root))
    monkeypatch.setenv("PAM_JOBS_SELFTEST", "1")  # tiny `selftest` jobs stand in for experiments
    return root


def fresh() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, at.exception
    return at


def plotly_specs(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def echarts(at: AppTest) -> list[dict]:
    """The ECharts options on the page (the explorer's charts)."""
    return [json.loads(el.proto.spec) for el in at.get("echarts_chart")]


def view(at: AppTest, name: str) -> AppTest:
    """Show one of the explorer's views (one at a time below the key figures)."""
    return at.radio(key="explorer_view").set_value(name).run()


def test_every_page_renders(runs_root):
    at = fresh()
    assert at.select_slider[0].value == pytest.approx(DEFAULT_ALPHA)  # the preset's default alpha
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        assert not at.error, (page, [e.value for e in at.error])
    assert at.select_slider[0].value == pytest.approx(DEFAULT_ALPHA)  # alpha survives page changes


def test_slider_drives_groups_and_flops(explorer, runs_root):
    at = fresh()
    options = F.alpha_grid(F.max_mi(explorer.trajs.trajectories), extra=[DEFAULT_ALPHA])
    seen = set()
    for alpha in (options[30], options[45], options[-1], DEFAULT_ALPHA):
        at.select_slider[0].set_value(alpha).run()
        assert not at.exception
        groups = explorer.groups(RegroupConfig(alpha=alpha))
        shown = at.table[0].value
        for layer, g in groups.items():
            for key, ids in g.groups.items():
                assert shown.loc[layer, "+".join(key)] == len(ids)
            assert shown.loc[layer, "sharing ratio"] == pytest.approx(g.sharing_ratio(), abs=1e-4)
        chart = echarts(at)[0]
        shared = next(x for x in chart["series"] if x["name"] == "A+B")["data"]
        assert shared == [len(g.groups[("A", "B")]) for g in groups.values()]
        seen.add(tuple(shared))
        view(at, "Predicted FLOPs")
        flops = at.table[0].value
        for scheme, per in explorer.predicted_flops(RegroupConfig(alpha=alpha)).items():
            assert flops[scheme].to_dict() == per
        view(at, "Groups and sharing")
    assert len(seen) >= 2, "moving alpha must change the sharing figure"


def test_expected_flops_validation(explorer, runs_root):
    at = view(fresh(), "Expected FLOPs")
    probs = [n for n in at.number_input if n.key and n.key.startswith("prob_")]
    assert len(probs) == 3 and not at.error
    metrics = {m.label: m.value for m in at.metric}
    pred = explorer.predicted_flops(RegroupConfig(alpha=DEFAULT_ALPHA))
    want = sum(pred["PAM"].values()) / 3
    assert float(metrics["E[FLOPs] PAM"].replace(",", "")) == pytest.approx(want, abs=1)
    probs[0].set_value(0.9).run()
    assert any("sum to 1" in e.value for e in at.error)
    at.number_input(key=probs[0].key).set_value(0.2).run()
    at.number_input(key=probs[1].key).set_value(0.3).run()
    at.number_input(key=probs[2].key).set_value(0.5).run()
    assert not at.error
    metrics = {m.label: m.value for m in at.metric}
    want = 0.2 * pred["PAM"]["A"] + 0.3 * pred["PAM"]["B"] + 0.5 * pred["PAM"]["A+B"]
    assert float(metrics["E[FLOPs] PAM"].replace(",", "")) == pytest.approx(want, abs=1)
    # the gains are labelled "before pruning", with one line on why PAM is larger then
    b1 = 0.2 * pred["B1"]["A"] + 0.3 * pred["B1"]["B"] + 0.5 * pred["B1"]["A+B"]
    assert metrics["PAM gain vs B1 (before pruning)"] == f"{b1 / want:.3f}x"
    gain = next(m for m in at.metric if m.label == "PAM gain vs B1 (before pruning)")
    assert gain.help == L.BEFORE_PRUNING_WHY and L.BEFORE_PRUNING_WHY in " ".join(c.value for c in at.caption)
    # the slider's help says why sharing is not monotone in alpha
    rule = L.BOTH_PICKED_TEXT[RegroupConfig().both_picked]
    assert L.NOT_MONOTONE.format(rule=rule) in at.select_slider[0].help


def test_export_bytes_load(explorer, runs_root):
    at = fresh()
    options = F.alpha_grid(F.max_mi(explorer.trajs.trajectories), extra=[DEFAULT_ALPHA])
    alpha = options[40]
    at.select_slider[0].set_value(alpha).run()
    at.switch_page("ui/page_export.py").run()
    assert not at.exception and not at.error
    assert any("before finetuning" in w.value and "test accuracy A" in w.value for w in at.warning)
    data = at.session_state["export_bytes"]
    net = export.load(data)
    manifest = export.read_manifest(data)
    assert manifest["alpha"] == pytest.approx(alpha) and manifest["preset"] == "digits-2task"
    groups = explorer.groups(RegroupConfig(alpha=alpha))
    nonempty = {l: {k: n for k, n in w.items() if n} for l, w in net.group_widths().items()}
    assert nonempty == {l: {"+".join(k): len(v) for k, v in g.groups.items() if v}
                        for l, g in groups.items()}
    assert len(at.get("download_button")) >= 1
    at.button(key="measure_latency").click().run()
    assert not at.exception
    lat = at.dataframe[-1].value
    assert list(lat.index) == ["A", "B", "A+B"] and (lat.iloc[:, 0] > 0).all()
    at.switch_page("ui/page_explorer.py").run()
    at.select_slider[0].set_value(options[10]).run()
    at.switch_page("ui/page_export.py").run()  # another model: its old latency is not shown
    assert not any("ms (cpu" in str(list(d.value.columns)) for d in at.dataframe)


def test_bad_upload_shows_error_and_keeps_setup(runs_root):
    at = fresh()
    at.switch_page("ui/page_setup.py").run()
    at.radio[0].set_value("Upload .safetensors per task").run()
    assert len(at.file_uploader) == 2
    at.file_uploader[0].upload("A.safetensors", b"this is not a checkpoint")
    at.file_uploader[1].upload("B.safetensors", b"\x00" * 64)
    at.button[0].click().run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "not applied" in errors and "safetensors" in errors
    assert at.session_state["setup"].checkpoints == "pretrained"
    at.switch_page("ui/page_explorer.py").run()
    assert not at.exception and at.table[0].value.shape[0] == 4


def test_wrong_shape_upload(tmp_path, runs_root):
    from safetensors.torch import save

    from pam_explorer.zoo import build_model
    good = build_model("lenet5", 5, 1, 32).state_dict()
    wrong = build_model("lenet5", 3, 1, 32).state_dict()  # head for 3 labels, task has 5
    at = fresh()
    at.switch_page("ui/page_setup.py").run()
    at.radio[0].set_value("Upload .safetensors per task").run()
    at.file_uploader[0].upload("A.safetensors", save(dict(good)))
    at.file_uploader[1].upload("B.safetensors", save(dict(wrong)))
    at.button[0].click().run()
    errors = " ".join(e.value for e in at.error)
    assert "task B" in errors and "shape" in errors
    assert at.session_state["setup"].checkpoints == "pretrained"


def _wait(root, rid, timeout=20):
    deadline = time.time() + timeout
    while jobs.read_status(rid, root)["state"] not in jobs.FINAL and time.time() < deadline:
        time.sleep(0.05)
        jobs.poll(root)


def test_runs_and_results_pages(runs_root):
    """A finished run keeps its panel (progress, log, a link to its results); the results of a
    quick multi-seed report show mean ± CI, the verdict, the seeds, the configuration, a quick
    banner and dashes (never "None") in the original networks' row."""
    report = json.loads((FIXTURES / "report_two_seeds_quick.json").read_text())
    progress = {"stage": "done", "fraction": 1.0, "message": "report written", "stage_number": 6,
                "stages": 6, "stage_fraction": 1.0}
    ok = jobs.submit({"command": "selftest", "args": {"report": report, "progress": progress,
                                                      "print": "all fine"}}, runs_root, name="fake")
    jobs.start_next(runs_root)
    _wait(runs_root, ok)
    bad = jobs.submit({"command": "selftest", "args": {"print": "exploded here", "exit": 4}}, runs_root,
                      name="bad")
    jobs.start_next(runs_root)
    _wait(runs_root, bad)
    at = fresh()
    at.switch_page("ui/page_runs.py").run()
    assert not at.exception
    runs_df = at.dataframe[0].value
    assert set(runs_df["state"]) == {"done", "failed"}
    assert any("exploded here" in c.value for c in at.code) and any("all fine" in c.value for c in at.code)
    assert any("stage 6 of 6" in str(p.proto.text) for p in at.get("progress"))  # the done run's panel
    assert at.button(key=f"resume_{bad}") is not None  # failed: resumable
    at.button(key=f"results_{ok}").click().run()  # the finished run's link
    assert not at.exception and at.selectbox(key="res_run").value == ok
    assert any("Quick run" in w.value for w in at.warning)
    table = at.dataframe[0].value
    assert list(table.index) == ["original", "B1", "B2", "PAM"]
    assert table.loc["original", "FLOPs A+B"] == "—" and "None" not in table.to_string()
    b1 = report["schemes"]["B1"]
    lo, hi = b1["flops_ci95"]["B"]
    assert table.loc["B1", "FLOPs B"] == f"{b1['flops']['B']:,.0f} ± {(hi - lo) / 2:,.0f}" and hi > lo
    assert table.equals(R.table1_display(report))
    gains = at.dataframe[1].value
    verdict = report["gains"]["vs_B1"]["average_verdict"]
    assert gains.loc["vs B1 (FLOPs)", "seeds"] == 2
    assert gains.loc["vs B1 (FLOPs)", "verdict (average)"] == R.VERDICT_TEXT[verdict]
    captions = " ".join(c.value for c in at.caption)
    for want in ("seeds [0, 1]", "both_picked `share`", "MI profile `default`", "quick run",
                 "rank `published`"):
        assert want in captions, want
    assert len(at.get("plotly_chart")) >= 3  # gains, flops, sharing after pruning, log
    at.switch_page("ui/page_results.py")  # AppTest reruns the page the test last switched to
    at.selectbox(key="res_run").set_value(bad).run()
    assert any("Run failed" in e.value for e in at.error) and at.toggle
    assert any("exploded here" in c.value for c in at.code)
    at.toggle[0].set_value(True).run()
    assert not at.exception and len(at.selectbox) >= 2


def test_runs_page_defaults_to_the_explorers_alpha_and_shows_the_job(explorer, runs_root, monkeypatch):
    """The launch form takes the explorer's alpha and overrides, says what the run will use,
    offers taylor first and cuda only with a GPU; Launch submits exactly that job; the banner
    about it follows the run's real state; resume queues a failed run again."""
    import torch
    submitted = []
    real_submit = jobs.submit

    def submit(job, root=None, name="run", **kw):
        submitted.append(job)
        return real_submit({"command": "selftest", "args": {"sleep": 0.2}}, root, name=name)
    monkeypatch.setattr(jobs, "submit", submit)
    at = fresh()
    alpha = F.alpha_grid(F.max_mi(explorer.trajs.trajectories), extra=[DEFAULT_ALPHA])[40]
    at.select_slider[0].set_value(alpha).run()
    at.number_input(key="ovr_fc1").set_value(0.2).run()
    at.switch_page("ui/page_runs.py").run()
    assert not at.exception
    assert at.number_input(key="run_alpha_digits-2task").value == pytest.approx(alpha)
    assert at.text_input(key="run_overrides_digits-2task").value == "fc1=0.2"
    assert at.selectbox(key="run_prune").value == "taylor"
    assert ("cuda" in at.selectbox(key="run_device").options) == torch.cuda.is_available()
    info = " ".join(i.value for i in at.info)
    assert f"--alpha {alpha!r}" in info and "--override fc1=0.2" in info and "MI profile default" in info
    assert not any("will differ" in w.value for w in at.warning)
    at.text_input(key="run_seeds").set_value("0,1").run()
    at.checkbox(key="run_quick").check().run()
    at.button(key="launch").click().run()
    assert not at.exception
    assert submitted == [{"command": "experiment", "args": {
        "preset": "digits-2task", "prune": "taylor", "device": "auto", "alpha": alpha,
        "overrides": {"fc1": 0.2}, "seeds": [0, 1], "quick": True}}]
    rid = next(r["run_id"] for r in jobs.list_runs(runs_root))
    _wait(runs_root, rid)
    at.run()
    assert any(f"Run {rid} finished" in s.value for s in at.success)  # not a stale "queued"
    at.text_input(key="run_seeds").set_value("0,x").run()
    assert any("seeds must be" in e.value for e in at.error)


def test_resume_button_queues_a_failed_run_again(runs_root):
    bad = jobs.submit({"command": "selftest", "args": {"report": {"partial": 1}, "exit": 3}}, runs_root,
                      name="half")
    jobs.start_next(runs_root)
    _wait(runs_root, bad)
    at = fresh()
    at.switch_page("ui/page_runs.py").run()
    at.button(key=f"resume_{bad}").click().run()
    assert not at.exception
    new = [r for r in jobs.list_runs(runs_root) if r.get("resumed_from") == bad]
    assert len(new) == 1 and (Path(new[0]["dir"]) / "report.json").is_file()
    assert jobs.read_status(bad, runs_root)["state"] == "failed"


def test_five_tasks_full_algorithm_on_request(runs_root):
    """K = 5 (small MI sample and the fixed kernel without a chance level, for speed: this tests
    the page, not the estimator): 31 subsets; the full Algorithm 3 runs on a click."""
    from ui.state import Setup
    mi = MIConfig(n_samples=24, kernel="fixed", null_perms=0)
    exp = Explorer.open("digits-5task", mi)
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["setup"] = Setup("digits-5task", mi)
    at.run()
    assert not at.exception
    alpha = get_preset("digits-5task").default_alpha
    simplified = exp.groups(RegroupConfig(alpha=alpha))
    assert at.table[0].value.loc["conv2", "T1+T2+T3+T4+T5"] == len(simplified["conv2"].groups[exp.tasks])
    view(at, "Expected FLOPs")
    assert len([n for n in at.number_input if n.key and n.key.startswith("prob_")]) == 31
    view(at, "Groups and sharing")
    at.radio(key="algorithm_w").set_value("full").run()
    assert any("full Algorithm 3" in i.value for i in at.info)
    at.button[0].click().run()
    assert not at.exception
    full = exp.groups(RegroupConfig(alpha=alpha, algorithm="full"))
    shown = at.table[0].value
    for layer, g in full.items():
        for key, ids in g.groups.items():
            assert shown.loc[layer, "+".join(key)] == len(ids)


def test_unbuildable_grouping_warns_and_keeps_figures(explorer, runs_root, monkeypatch):
    """No alpha of digits-2task gives an unbuildable grouping, so the backend's check is made
    to fail: the explorer warns and still shows the sharing figures; export warns too."""
    import pam_explorer.export.archive as archive
    import pam_explorer.regroup.explorer as explorer_module
    from pam_explorer.core.errors import StructureError

    def no_path(*a, **k):
        raise StructureError("layer 'conv2', group 'A': has 3 neuron(s) but no non-empty input group")

    monkeypatch.setattr(explorer_module, "check_structure", no_path)
    monkeypatch.setattr(archive, "merge_networks", no_path)
    at = fresh()
    assert any("cannot be built" in w.value and "no non-empty input group" in w.value for w in at.warning)
    assert at.table[0].value.shape[0] == 4 and len(at.get("echarts_chart")) == 1
    options = F.alpha_grid(F.max_mi(explorer.trajs.trajectories), extra=[DEFAULT_ALPHA])
    at.select_slider[0].set_value(options[17]).run()  # an alpha no other test exports
    at.switch_page("ui/page_export.py").run()
    assert not at.exception
    assert any("cannot be built" in w.value for w in at.warning)
    assert "export_bytes" not in at.session_state


def test_layer_override_and_range_notice(explorer, runs_root):
    at = fresh()
    top_conv1 = max(max(t.running_max) for t in explorer.trajs.trajectories["conv1"].values())
    at.number_input(key="ovr_conv1").set_value(round(top_conv1 * 2, 4)).run()
    assert not at.exception
    assert any("conv1" in i.value and "clamped" in i.value for i in at.info)
    cfg = RegroupConfig(alpha=DEFAULT_ALPHA, overrides=(("conv1", round(top_conv1 * 2, 4)),))
    shown = at.table[0].value
    for layer, g in explorer.groups(cfg).items():
        assert shown.loc[layer, "A+B"] == len(g.groups[("A", "B")])
        assert shown.loc[layer, "alpha"] == pytest.approx(cfg.alpha_for(layer))
    view(at, "MI phase curves")  # the huge override does not stretch the phase chart's axis
    at.selectbox(key="phase_layer").set_value("conv1").run()
    chart = echarts(at)[0]
    assert chart["yAxis"]["max"] < 1 and "above the chart" in chart["title"]["subtext"]
    view(at, "Groups and sharing")
    at.number_input(key="ovr_conv1").set_value(None).run()
    assert at.table[0].value.loc["conv1", "alpha"] == pytest.approx(DEFAULT_ALPHA)


def test_valid_upload_and_mi_settings_apply(runs_root):
    assets = Path(__file__).resolve().parents[2] / "assets" / "digits-2task"
    at = fresh()
    at.switch_page("ui/page_setup.py").run()
    at.radio[0].set_value("Upload .safetensors per task").run()
    for i, t in enumerate("AB"):
        at.file_uploader[i].upload(f"{t}.safetensors", (assets / f"{t}.safetensors").read_bytes())
    at.number_input[0].set_value(24).run()  # N samples: small, so the trajectories are quick
    at.button[0].click().run()
    assert not at.exception and not at.error
    setup = at.session_state["setup"]
    assert setup.checkpoints.startswith("upload-") and setup.arch == "lenet5" and setup.mi.n_samples == 24
    assert any("applied" in s.value for s in at.success)
    at.switch_page("ui/page_explorer.py").run()
    assert not at.exception
    exp = Explorer.open("digits-2task", MIConfig(n_samples=24))
    alpha = at.select_slider[0].value
    shown = at.table[0].value
    for layer, g in exp.groups(RegroupConfig(alpha=alpha)).items():
        assert shown.loc[layer, "A+B"] == len(g.groups[("A", "B")])


def test_cancel_from_runs_page(runs_root):
    rid = jobs.submit({"command": "selftest", "args": {"sleep": 60}}, runs_root, name="sleeper")
    jobs.start_next(runs_root)
    at = fresh()
    at.switch_page("ui/page_runs.py").run()
    assert jobs.read_status(rid, runs_root)["state"] == "running"
    at.button(key=f"cancel_{rid}").click().run()
    assert not at.exception
    assert jobs.read_status(rid, runs_root)["state"] == "cancelled"


def test_preset_without_networks_offers_training(runs_root, tmp_path, monkeypatch):
    """A preset without networks: "Pre-trained" cannot be chosen, the page gives a command that
    works (tests/runs/test_dashboard_jobs.py runs it) and a "Train networks for this preset"
    button, which submits the train job (installing under a temporary assets root here)."""
    monkeypatch.setenv("PAM_ASSETS_ROOT", str(tmp_path / "assets"))
    monkeypatch.setenv("PAM_CACHE_ROOT", str(paths.cache_root()))
    shutil.copytree(paths.REPO / "assets" / "digits-2task", tmp_path / "assets" / "digits-2task")
    at = fresh()
    at.switch_page("ui/page_setup.py").run()
    at.selectbox(key="setup_preset").set_value("digits-inclusion").run()
    assert not at.exception
    assert at.radio(key="checkpoints_digits-inclusion").options == ["Upload .safetensors per task"]
    assert any("python -m pam_explorer train --preset digits-inclusion" in c.value for c in at.code)
    assert "none trained yet" in " ".join(m.value for m in at.markdown)
    at.button(key="train_digits-inclusion").click().run()
    assert not at.exception
    (run,) = [r for r in jobs.list_runs(runs_root)]
    assert run["job"] == {"command": "train", "args": {"preset": "digits-inclusion", "epochs": 15,
                                                       "device": "auto", "install": True}}
    assert any("Training" in str(p.proto.text) for p in at.get("progress"))
    jobs.cancel(run["run_id"], runs_root)
    at.button(key="apply_setup").click().run()  # uploads chosen, none given: refused, setup kept
    assert any("not applied" in e.value for e in at.error)
    assert at.session_state["setup"].preset == "digits-2task"
    at.selectbox(key="setup_preset").set_value("digits-2task").run()
    assert "0.658 bits (measured" in " ".join(m.value for m in at.markdown)  # measured, not "~0.62"


def test_adapmtl_run_results_show_sparsity_breakdown(runs_root):
    """The results of a real quick AdapMTL experiment (its report.json, recorded as a fixture: the
    run takes a minute) in a finished run's folder: the sparsity breakdown of every scheme."""
    report = json.loads((FIXTURES / "report_adapmtl_quick.json").read_text())
    rid = jobs.submit({"command": "selftest", "args": {"report": report}}, runs_root, name="adapmtl-quick")
    jobs.start_next(runs_root)
    _wait(runs_root, rid)
    assert jobs.read_status(rid, runs_root)["state"] == "done", jobs.log_tail(rid, 30, runs_root)
    at = fresh()
    at.switch_page("ui/page_results.py").run()
    assert not at.exception, at.exception
    assert any("Quick run" in w.value for w in at.warning)
    assert "effective FLOPs A+B" in at.dataframe[0].value.columns  # Table 1: the cost after pruning
    sparse = next(d.value for d in at.dataframe if "Delta_T (%)" in d.value.columns)
    for name in ("B1", "B2", "PAM"):
        s = report["schemes"][name]
        assert sparse.loc[name, "Delta_T (%)"] == pytest.approx(s["delta_t"])
        assert sparse.loc[name, "sparse FLOPs A+B"] == s["sparse_flops"]["A+B"]
        assert sparse.loc[name, "overall sparsity"] == pytest.approx(s["overall_sparsity"])
        assert s["overall_sparsity"] >= report["target_sparsity"] == 0.8
    titles = [spec["layout"]["title"]["text"] for spec in plotly_specs(at)]
    assert "Final sparsity per component" in titles
    assert "AdapMTL sparsity per component (B1 A)" in titles
    curve = next(spec for spec in plotly_specs(at) if spec["layout"]["title"]["text"].endswith("(B1 A)"))
    overall = next(tr for tr in curve["data"] if tr["name"] == "overall")
    assert overall["y"] == [r["overall"] for r in report["schemes"]["B1"]["sparsity_series"]["A"]]
    at.selectbox(key="sparsity_of_single").set_value("PAM")
    at.run()
    assert not at.exception and at.selectbox(key="sparsity_of_single").value == "PAM"
    titles = [spec["layout"]["title"]["text"] for spec in plotly_specs(at)]
    assert "AdapMTL sparsity per component (PAM)" in titles, titles


def test_finetune_then_export_runs_the_explorers_merge_and_offers_its_model_first(explorer, runs_root,
                                                                                  tmp_path, monkeypatch):
    """Export page: "Finetune, then export" runs the real `merge` job at the explorer's alpha and
    overrides (1 epoch); its model then comes first, finetuned, with the explorer's groups; the
    job's log holds no CUDA-probe line (CUDA_HOME set so torch would print it)."""
    (tmp_path / "cuda" / "bin").mkdir(parents=True)
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "cuda"))
    at = fresh()
    alpha = F.alpha_grid(F.max_mi(explorer.trajs.trajectories), extra=[DEFAULT_ALPHA])[30]
    at.select_slider[0].set_value(alpha).run()
    at.number_input(key="ovr_fc2").set_value(0.3).run()
    at.switch_page("ui/page_export.py").run()
    assert any("No finished run holds a model" in i.value for i in at.info)
    at.number_input(key="ft_epochs").set_value(1).run()
    at.button(key="finetune_export").click().run()
    assert not at.exception and not at.error
    (run,) = jobs.list_runs(runs_root)
    assert run["job"]["command"] == "merge" and run["job"]["args"]["overrides"] == {"fc2": 0.3}
    rid = run["run_id"]
    _wait(runs_root, rid, timeout=300)
    assert jobs.read_status(rid, runs_root)["state"] == "done", jobs.log_tail(rid, 30, runs_root)
    log = (Path(run["dir"]) / "log.txt").read_text()
    assert "No CUDA runtime" not in log and "CUDA_HOME" not in log
    at.run()
    assert not at.exception and at.selectbox(key="export_run").value == rid
    assert at.get("download_button")[0].proto.label == "Download the run's model (.zip)"
    manifest = export.read_manifest(Path(run["dir"]) / "model.zip")
    cfg = RegroupConfig(alpha=alpha, overrides=(("fc2", 0.3),))
    assert manifest["alpha"] == alpha and manifest["finetune_epochs"] == 1
    assert manifest["groups"] == {layer: {"+".join(k): len(v) for k, v in g.groups.items()}
                                  for layer, g in explorer.groups(cfg).items()}
    assert "merged and finetuned 1 epoch(s), not pruned" in " ".join(m.value for m in at.markdown)
