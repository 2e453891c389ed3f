"""Small truths of the Runs page and the report schema: a run's message and progress text from
files are shown as text (issue 25 item 16); the sweep form offers the 'slurm' executor only where
Slurm answers; report.json of the published schedule (curves, tolerances, missing) is accepted
and a malformed curve is a one-line notice."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pam_explorer.core.errors import DataError
from pam_explorer.runs import slurm_queue
from pam_explorer.runs.report_schema import check_report
from tests.runs import curve_fixtures as F
from tests.ui.test_results_truth import IMAGE, RESULTS, plant_run
from ui import labels as L
from ui import state
from ui import sweep_view as V

REPO = Path(__file__).resolve().parents[2]
RUNS = str(REPO / "ui" / "page_runs.py")


def runs_page() -> AppTest:
    at = AppTest.from_file(RUNS, default_timeout=60).run()
    assert not at.exception, at.exception
    return at


def test_run_messages_and_progress_are_text_on_the_runs_page(runs_root, monkeypatch):
    monkeypatch.setattr(slurm_queue, "unavailable", lambda: "Slurm's sbatch is not on PATH")
    state.slurm_unavailable.clear()
    plant_run(runs_root, "20270101-000000-failed", None, state="failed", exit_code=1,
              message=f"broke {IMAGE}")
    rid = plant_run(runs_root, "20270101-000001-done", None)
    (runs_root / rid / "progress.json").write_text(json.dumps({"fraction": 1.0, "stage": "PAM",
                                                               "message": f"done {IMAGE} *x*"}))
    at = runs_page()
    errors = [e.value for e in at.error]
    assert any(L.plain(f"broke {IMAGE}") in e for e in errors), errors
    texts = [str(p.proto.text) for p in at.get("progress")]
    assert L.plain(f"PAM: done {IMAGE} *x*") in texts, texts
    for t in errors + texts:  # no bare image or link left for markdown to render
        assert "![" not in t and "](" not in t and "*x*" not in t, t


@pytest.mark.parametrize("why, offered", [("Slurm's sbatch is not on PATH", ["local", "submitit-local"]),
                                          (None, ["local", "submitit-local", "slurm"])])
def test_the_sweep_form_offers_slurm_only_where_slurm_answers(runs_root, monkeypatch, why, offered):
    monkeypatch.setattr(slurm_queue, "unavailable", lambda: why)
    monkeypatch.setattr(slurm_queue, "partitions", lambda run=None: ["cpu"])
    state.slurm_unavailable.clear()  # cached 30 s across reruns
    assert V.offered_executors(why) == offered
    at = runs_page()
    assert at.selectbox(key="sweep_executor").options == offered
    state.slurm_unavailable.clear()


def test_reports_of_the_published_schedule_pass_the_schema():
    report = F.published_report()
    assert check_report(report) is report
    assert report["schemes"]["B2"]["flops"] is None and report["missing"] == {"B2": ["0", "1"]}
    assert check_report({**report, "alpha": "inf"})["alpha"] == "inf"
    with pytest.raises(DataError, match="alpha"):
        check_report({**report, "alpha": "many"})


@pytest.mark.parametrize("where, change", [
    ("per_seed.0.schemes.PAM.curve.1.flops.A", lambda r: r["per_seed"]["0"]["schemes"]["PAM"]["curve"][1]
     ["flops"].update(A="x")),
    ("per_seed.1.schemes.B1.curve.B.0.val_accuracy",
     lambda r: r["per_seed"]["1"]["schemes"]["B1"]["curve"]["B"][0].update(val_accuracy=None)),
    ("tolerances.1.0.missing.B2", lambda r: r["tolerances"]["1.0"]["missing"].update(B2="0"))])
def test_a_malformed_curve_is_a_one_line_notice(runs_root, where, change):
    bad = copy.deepcopy(F.published_report())
    change(bad)
    with pytest.raises(DataError, match=re.escape(f"report.json: {where}: ")):
        check_report(bad)
    rid = plant_run(runs_root, "20270101-000000-bad", bad)
    at = AppTest.from_file(RESULTS, default_timeout=60).run()
    assert not at.exception, at.exception
    notice = [w.value for w in at.warning if "Cannot show this run's results" in w.value]
    assert len(notice) == 1 and L.plain(f"{rid}/report.json: {where}:") in notice[0]
