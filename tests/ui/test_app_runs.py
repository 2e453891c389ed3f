"""The Runs, Results and Export pages through AppTest: launching at the explorer's settings, live
banners, kept panels, resume and cancel; results of real (recorded) reports; the "finetune, then
export" job and a finished run's model first on the Export page."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pam_explorer import export
from pam_explorer.core.config import RegroupConfig
from pam_explorer.runs import jobs
from pam_explorer.runs.merge_run import merged_model_bytes
from tests.ui.apptest import DEFAULT_ALPHA, FIXTURES, fresh, plotly_specs, wait_run
from ui import figures as F
from ui import results_view as R


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
    wait_run(runs_root, ok)
    bad = jobs.submit({"command": "selftest", "args": {"print": "exploded here", "exit": 4}}, runs_root,
                      name="bad")
    jobs.start_next(runs_root)
    wait_run(runs_root, bad)
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
    table = at.table[0].value  # st.table: cells wrap, no column hidden off the page
    assert list(table.index) == ["original", "B1", "B2", "PAM"]
    assert table.loc["original", "FLOPs A+B"] == "—" and "None" not in table.to_string()
    b1 = report["schemes"]["B1"]
    lo, hi = b1["flops_ci95"]["B"]
    assert table.loc["B1", "FLOPs B"] == f"{b1['flops']['B']:,.0f} ± {(hi - lo) / 2:,.0f}" and hi > lo
    assert table.equals(R.table1_display(report))
    gains = at.table[2].value  # after Table 1 and the latency table
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
    alpha = F.alpha_grid(explorer.max_mi(), extra=[DEFAULT_ALPHA])[40]
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
    wait_run(runs_root, rid)
    at.run()
    assert any(f"Run {rid} finished" in s.value for s in at.success)  # not a stale "queued"
    at.text_input(key="run_seeds").set_value("0,x").run()
    assert any("seeds must be" in e.value for e in at.error)


def test_resume_button_queues_a_failed_run_again(runs_root):
    bad = jobs.submit({"command": "selftest", "args": {"report": {"partial": 1}, "exit": 3}}, runs_root,
                      name="half")
    jobs.start_next(runs_root)
    wait_run(runs_root, bad)
    at = fresh()
    at.switch_page("ui/page_runs.py").run()
    at.button(key=f"resume_{bad}").click().run()
    assert not at.exception
    new = [r for r in jobs.list_runs(runs_root) if r.get("resumed_from") == bad]
    assert len(new) == 1 and (Path(new[0]["dir"]) / "report.json").is_file()
    assert jobs.read_status(bad, runs_root)["state"] == "failed"


def test_cancel_from_runs_page(runs_root):
    rid = jobs.submit({"command": "selftest", "args": {"sleep": 60}}, runs_root, name="sleeper")
    jobs.start_next(runs_root)
    at = fresh()
    at.switch_page("ui/page_runs.py").run()
    assert jobs.read_status(rid, runs_root)["state"] == "running"
    at.button(key=f"cancel_{rid}").click().run()
    assert not at.exception
    assert jobs.read_status(rid, runs_root)["state"] == "cancelled"


def test_adapmtl_run_results_show_sparsity_breakdown(runs_root):
    """The results of a real quick AdapMTL experiment (its report.json, recorded as a fixture: the
    run takes a minute) in a finished run's folder: the sparsity breakdown of every scheme."""
    report = json.loads((FIXTURES / "report_adapmtl_quick.json").read_text())
    rid = jobs.submit({"command": "selftest", "args": {"report": report}}, runs_root, name="adapmtl-quick")
    jobs.start_next(runs_root)
    wait_run(runs_root, rid)
    assert jobs.read_status(rid, runs_root)["state"] == "done", jobs.log_tail(rid, 30, runs_root)
    at = fresh()
    at.switch_page("ui/page_results.py").run()
    assert not at.exception, at.exception
    assert any("Quick run" in w.value for w in at.warning)
    assert "effective FLOPs A+B" in at.table[0].value.columns  # Table 1: the cost after pruning
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
    alpha = F.alpha_grid(explorer.max_mi(), extra=[DEFAULT_ALPHA])[30]
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
    wait_run(runs_root, rid, timeout=300)
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
    shown = " ".join(re.sub(r"\\(.)", r"\1", m.value) for m in at.markdown)  # as displayed (unescaped)
    assert "merged and finetuned 1 epoch(s), not pruned" in shown


def test_a_quick_run_is_marked_quick_on_every_page(explorer, runs_root):
    """A finished quick experiment (its folder as the job wrapper leaves it: status with the job,
    report.json, model.zip): marked quick in the Runs table and panel, on the Results page and on
    the Export page, where its model is not offered as one to deploy."""
    rid = "20270101-000000-digits-2task-taylor-quick"
    folder = runs_root / rid
    folder.mkdir(parents=True)
    report = json.loads((FIXTURES / "report_two_seeds_quick.json").read_text())
    (folder / "report.json").write_text(json.dumps(report))
    model = merged_model_bytes(explorer, RegroupConfig(alpha=DEFAULT_ALPHA))
    (folder / "model.zip").write_bytes(model)
    (folder / "status.json").write_text(json.dumps({
        "state": "done", "created": 1.8e9, "started": 1.8e9, "ended": 1.8e9 + 60, "exit_code": 0,
        "job": {"command": "experiment", "args": {"preset": "digits-2task", "quick": True}}}))
    at = fresh()
    at.switch_page("ui/page_runs.py").run()
    assert not at.exception
    assert at.dataframe[0].value.set_index("run").loc[rid, "quick"] == "yes"
    assert any(rid in m.value and "**quick**" in m.value for m in at.markdown)
    at.switch_page("ui/page_results.py").run()
    assert not at.exception and at.selectbox(key="res_run").value == rid
    assert any("Quick run" in w.value for w in at.warning)
    assert any(rid in m.value and "quick run" in m.value for m in at.markdown)
    at.switch_page("ui/page_export.py").run()
    assert not at.exception and at.selectbox(key="export_run").value == rid
    assert "quick" in at.selectbox(key="export_run").options[0]
    assert any("Quick run" in w.value and "not a model to deploy" in w.value for w in at.warning)
