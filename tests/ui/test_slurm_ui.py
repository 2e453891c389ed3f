"""Sweeps on Slurm on the Runs page (issue 29), through AppTest with Slurm's answers given: the
launch form only where this machine submits Slurm jobs, its job spec, and each job's Slurm state
and log. The real scheduler runs in tests/runs/test_slurm_cluster.py."""
from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from pam_explorer.core.errors import ConfigError
from pam_explorer.runs import jobs, slurm_queue
from pam_explorer.runs.slurm_queue import JobInfo, Journal
from ui.run_args import slurm_sweep_job
from ui.sweep_view import sweep_job

APP = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture()
def runs_root(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("PAM_RUNS_ROOT", str(root))
    monkeypatch.setattr(jobs, "start_next", lambda *a, **k: None)  # queue runs, never start them
    st.cache_data.clear()  # the page keeps whether Slurm answers for 30 s
    return root


def runs_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("ui/page_runs.py").run()
    assert not at.exception, at.exception
    return at


def test_slurm_sweep_job_spec():
    base = sweep_job("digits-2task", "taylor", "0.1,0.5", "0,1", "slurm", None, True)
    job = slurm_sweep_job(base, "gpu", 4, 16.0, 30)
    assert job == {"command": "sweep", "args": {
        "preset": "digits-2task", "prune": "taylor", "alphas": [0.1, 0.5], "seeds": [0, 1],
        "executor": "slurm", "quick": True, "cpus_per_job": 4, "mem_gb": 16.0, "time_min": 30, "threads": 4,
        "slurm_partition": "gpu"}}
    assert "slurm_partition" not in slurm_sweep_job(base, None, 1, 8.0, 120)["args"]  # the default one
    with pytest.raises(ConfigError, match="slurm_partition"):
        slurm_sweep_job(base, "-bad", 1, 8.0, 120)


def test_without_sbatch_the_page_says_why_and_offers_no_slurm_launch(runs_root, monkeypatch):
    monkeypatch.setattr(slurm_queue, "unavailable", lambda: "Slurm's sbatch is not on PATH")
    at = runs_page()
    assert "Sweeps on Slurm" in [s.value for s in at.subheader]
    assert any("Slurm's sbatch is not on PATH" in c.value for c in at.caption)
    assert not [b for b in at.button if "on Slurm" in b.label]


def test_launch_on_slurm_and_each_jobs_state_and_log(runs_root, monkeypatch):
    monkeypatch.setattr(slurm_queue, "unavailable", lambda: None)
    monkeypatch.setattr(slurm_queue, "partitions", lambda run=None: ["cpu", "gpu"])
    at = runs_page()
    at.selectbox(key="slurm_partition").set_value("gpu")
    at.number_input(key="slurm_cpus").set_value(2)
    at.number_input(key="slurm_mem").set_value(4.0)
    at.text_input(key="slurm_alphas").set_value("0.05,0.5")
    at.checkbox(key="slurm_quick").check()
    next(b for b in at.button if b.label == "Launch sweep on Slurm").click().run()
    assert not at.exception and any("submitted" in s.value for s in at.success)
    (run,) = jobs.list_runs(runs_root)
    args = run["job"]["args"]
    assert (args["executor"], args["slurm_partition"]) == ("slurm", "gpu")
    assert (args["cpus_per_job"], args["threads"]) == (2, 2)
    assert (args["mem_gb"], args["time_min"], args["alphas"], args["quick"]) == (4.0, 120, [0.05, 0.5], True)

    # its driver recorded three jobs; Slurm says one runs, one was cancelled, one is unknown to it
    folder = Path(run["dir"]) / "submitit"
    Journal(folder).add([("B1_s0", "12_0"), ("B2_s0", "12_1"), ("PAM_a0.05_s0", "12_2")])
    (folder / "12_0").mkdir()
    (folder / "12_0" / "12_0_0_log.out").write_text("B1 A: prune step 3 (at most 4, task A) rejected\n")
    answer = {"12_0": JobInfo("12_0", "RUNNING", "None", "t"),
              "12_1": JobInfo("12_1", "CANCELLED", "JobHeldAdmin", "t")}
    monkeypatch.setattr(slurm_queue, "query", lambda ids, run=None: answer)
    cancelled = []
    monkeypatch.setattr(slurm_queue, "cancel_jobs", lambda folder: cancelled.append(folder))
    at.run()
    table = next(df.value for df in at.dataframe if "slurm" in getattr(df.value, "columns", []))
    assert list(table["label"]) == ["B1_s0", "B2_s0", "PAM_a0.05_s0"]
    assert list(table["slurm"]) == ["running", "failed", "unknown"]
    assert list(table["reason"]) == ["None", "JobHeldAdmin", ""]
    assert any("prune step 3 (at most 4, task A) rejected" in c.value for c in at.code)
    next(b for b in at.button if b.label.startswith("Cancel its queued and running Slurm jobs")).click().run()
    assert cancelled == [folder] and not at.exception
