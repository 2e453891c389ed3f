"""The Results and Export pages tell the truth (issue 26 points 1 and 4, issue 25 points 15-16):
malformed report.json / manifest.json give a one-line notice, not a traceback; strings from run
folders are shown as text (a markdown image never becomes an <img>); latency figures come with
their spread and reliability, unreliable ones are flagged and not charted as gains, older
reports' latency is "not checked for reliability"; a guide says what to try when PAM does not pay.
"""
from __future__ import annotations

import copy
import io
import json
import re
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pam_explorer.core.errors import DataError, ExportError
from pam_explorer.export import read_manifest
from pam_explorer.runs.report_schema import check_report
from tests.ui.apptest import FIXTURES, plotly_specs
from ui import advice
from ui import labels as L
from ui import results_latency as T
from ui import results_view as R

REPO = Path(__file__).resolve().parents[2]
RESULTS, EXPORT = str(REPO / "ui" / "page_results.py"), str(REPO / "ui" / "page_export.py")
IMAGE = "![x](http://127.0.0.1:9/pixel.png)"


def fixture_report() -> dict:
    return json.loads((FIXTURES / "report_two_seeds_quick.json").read_text())


def plant_run(root: Path, name: str, report: dict | None, **status) -> str:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "status.json").write_text(json.dumps({"state": "done", "created": 1.8e9, "exit_code": 0,
                                                    "job": {"command": "experiment", "args": {}}, **status}))
    if report is not None:
        (folder / "report.json").write_text(json.dumps(report))
    return name


def markdown_texts(at: AppTest) -> list[str]:
    return [e.value for kind in ("markdown", "caption", "warning", "error", "info", "success")
            for e in at.get(kind)]


def measured(report: dict) -> dict:
    """The fixture report with an interleaved measurement in which B1's A+B is unreliable (as
    cost.latency_compare writes it) and latency gains from the reliable subsets only."""
    rep = copy.deepcopy(report)
    cells = {s: {k: {"median_ms": v, "iqr_ms": 0.01 * v, "reliable": True, "why": None}
                 for k, v in rep["schemes"][s]["latency_ms"].items()} for s in ("B1", "B2", "PAM")}
    cells["B1"]["A+B"].update(median_ms=105.6, iqr_ms=80.0, reliable=False,
                              why="spread: IQR 80 ms > 0.5 x median 106 ms")
    rep["latency_measurement"] = {"threads": 1, "rounds": 21, "rule": "interleaved ...", "schemes": cells}
    rep["latency_gains"] = {"vs_B1": {"average": 1.25, "peak": 1.5, "n": 1, "subsets": ["A", "B"]},
                            "vs_B2": {"average": 0.9, "peak": 1.1, "n": 1, "subsets": ["A", "B", "A+B"]}}
    return rep


# --------------------------------------------------------------------------- malformed files
MALFORMED = [({"seeds": 5}, "seeds"), ({"config": "str"}, "config"),
             ({"floor_check": {"PAM": {"meets": False, "worst": "zz"}}}, "floor_check.PAM.worst"),
             ({"schemes": {"PAM": {"flops": {"A": "zz"}}}}, "schemes.PAM.flops.A")]


@pytest.mark.parametrize("bad, where", MALFORMED)
def test_a_malformed_report_is_a_one_line_notice(runs_root, bad, where):
    with pytest.raises(DataError, match=re.escape(f"report.json: {where}: ")):
        check_report({**fixture_report(), **bad})
    rid = plant_run(runs_root, "20270101-000000-bad", {**fixture_report(), **bad})
    at = AppTest.from_file(RESULTS, default_timeout=60).run()
    assert not at.exception, at.exception
    notice = [w.value for w in at.warning if "Cannot show this run's results" in w.value]
    assert len(notice) == 1 and "\n" not in notice[0] and L.plain(f"{rid}/report.json: {where}:") in notice[0]
    assert not at.dataframe and not at.table  # nothing half-drawn


def test_a_report_that_is_not_an_object_or_not_json_is_a_notice(runs_root):
    plant_run(runs_root, "20270101-000000-list", [1, 2])
    at = AppTest.from_file(RESULTS, default_timeout=60).run()
    assert not at.exception and any("not an object" in w.value for w in at.warning)


def _with_manifest(data: bytes, **changes) -> bytes:
    src, out = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            body = src.read(name)
            if name == "manifest.json":
                body = json.dumps({**json.loads(body), **changes}).encode()
            dst.writestr(name, body)
    return out.getvalue()


def test_a_malformed_export_manifest_is_a_one_line_notice(runs_root, explorer):
    from pam_explorer.core.config import RegroupConfig
    from pam_explorer.runs.merge_run import merged_model_bytes

    good = merged_model_bytes(explorer, RegroupConfig(alpha=0.05), accuracy=False)
    assert read_manifest(good)["tasks"] == ["A", "B"]
    bad = _with_manifest(good, tasks=5)
    with pytest.raises(ExportError, match=r"manifest\.json: tasks: 5 is not of type 'array'"):
        read_manifest(bad)
    with pytest.raises(ExportError, match=r"manifest\.json: flops\.A: 'x' is not of type 'number'"):
        read_manifest(_with_manifest(good, flops={"A": "x"}))
    rid = plant_run(runs_root, "20270101-000000-model", None)
    (runs_root / rid / "model.zip").write_bytes(bad)
    at = AppTest.from_file(EXPORT, default_timeout=120).run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error if "tasks" in e.value] and all("\n" not in e.value for e in at.error)


# --------------------------------------------------------------------------- text, not markdown
def test_plain_and_code_escape_every_markdown_construct():
    text = f"{IMAGE} *b* _i_ `c` :red[x] $x$ <img src=y> [l](http://z) # h"
    esc = L.plain(text)
    assert re.sub(r"\\(.)", r"\1", esc) == text  # unescaping gives the text back
    assert not re.search(r"(?<!\\)[!\[\]()*_`:$<>#]", esc)  # no markdown character left bare
    assert L.code("a``b") == "```a``b```" and L.code("rank") == "`rank`"
    assert "\n" not in L.plain("two\nlines")


def test_strings_from_run_folders_are_shown_as_text(runs_root):
    report = fixture_report()
    report["prune"] = IMAGE
    report["schemes"]["PAM"]["log"] = report["schemes"]["B2"]["log"]
    rid = plant_run(runs_root, "20270101-000000-md", report, state="failed", exit_code=1,
                    message=f"it broke {IMAGE}")
    at = AppTest.from_file(RESULTS, default_timeout=60).run()
    assert not at.exception, at.exception
    texts = markdown_texts(at)
    outside_code = [re.sub(r"(`+).+?\1", "", t) for t in texts]  # a code span shows its text literally
    assert not [t for t in outside_code if "![" in t or "](" in t], texts  # never a bare image or link
    assert any(L.plain(f"it broke {IMAGE}") in t for t in texts)
    assert any(L.code(IMAGE) in t for t in texts)  # the report's string, inside a code span
    assert rid in " ".join(texts).replace("\\", "")


# --------------------------------------------------------------------------- latency
def test_unreliable_latency_is_flagged_and_not_charted_as_a_gain(runs_root):
    rep = measured(fixture_report())
    table = R.latency_display(rep)
    assert "ms A (CPU)" not in R.table1_display(rep).columns  # its own table: each fits the page
    assert table.loc["B1", "ms A+B (CPU)"] == "105.600 ⚠"
    pam_a = rep["schemes"]["PAM"]["latency_ms"]["A"]
    assert table.loc["PAM", "ms A (CPU)"] == f"{pam_a:.3f}"
    details = T.details(rep)
    assert details.loc[("B1", "A+B")].to_dict() == {
        "median ms": "105.600", "IQR ms": "80.000", "reliable": "no ⚠",
        "why not": "spread: IQR 80 ms > 0.5 x median 106 ms"}
    assert details.loc[("PAM", "A"), "IQR ms"] == f"{0.01 * pam_a:.3f}" and len(details) == 9
    assert T.unreliable_lines(rep) == ["B1 A+B: 105.600 ms (spread: IQR 80 ms > 0.5 x median 106 ms)"]
    gains = R.gains_display(rep)
    assert "vs B1 (CPU latency, reliable figures: A, B)" in gains.index
    fig = R.fig_gains(rep)
    assert (fig.layout.xaxis.title.text, fig.layout.xaxis2.title.text) == (
        "FLOPs gain", "CPU latency gain (reliable figures only)")
    by_axis = {}
    for trace in fig.data:
        by_axis.setdefault(trace.yaxis, []).extend(trace.y)
    assert by_axis["y2"] == [1.25, 0.9, 1.5, 1.1]  # latency gains on their own axis
    flops = rep["gains"]
    assert by_axis["y"] == [flops["vs_B1"]["average"], flops["vs_B2"]["average"],
                            flops["vs_B1"]["peak"], flops["vs_B2"]["peak"]]

    plant_run(runs_root, "20270101-000000-lat", rep)
    at = AppTest.from_file(RESULTS, default_timeout=60).run()
    assert not at.exception, at.exception
    assert any("Unreliable latency, not used for gains" in w.value and "B1 A\\+B" in w.value
               for w in at.warning)
    assert any("interleaved rounds" in c.value for c in at.caption)
    spec = next(s for s in plotly_specs(at) if "yaxis2" in s["layout"])
    assert [t["y"] for t in spec["data"] if t.get("yaxis") == "y2"] == [[1.25, 0.9], [1.5, 1.1]]


def test_older_reports_latency_is_not_checked_and_not_charted(runs_root):
    rep = fixture_report()
    assert T.measurement(rep) is None and rep["latency_gains"]
    gains = R.gains_display(rep)
    assert f"vs B1 (CPU latency, {T.UNCHECKED})" in gains.index
    fig = R.fig_gains(rep)
    assert fig.layout.xaxis.title.text == "FLOPs gain" and {t.yaxis for t in fig.data} == {"y"}
    assert "xaxis2" not in fig.to_dict()["layout"]  # one panel
    plant_run(runs_root, "20270101-000000-old", rep)
    at = AppTest.from_file(RESULTS, default_timeout=60).run()
    assert not at.exception
    assert any(T.UNCHECKED in c.value.replace("\\", "") for c in at.caption)
    assert at.table[1].value.loc["PAM", "ms A (CPU)"] == R.pm(
        rep["schemes"]["PAM"]["latency_ms"]["A"], rep["schemes"]["PAM"]["latency_ms_ci95"]["A"], "{:.3f}")


# --------------------------------------------------------------------------- a guide
def test_a_guide_when_pam_does_not_pay(runs_root):
    rep = fixture_report()  # quick; PAM 0.38x vs B1, 0.30x vs B2; pruning did not shrink PAM
    text = advice.next_steps(rep)
    assert text.startswith("PAM does not pay here (0.381x vs B1, 0.298x vs B2). To try next: ")
    for want in ("a full run instead of this quick one", "shrank PAM only 1.0x on A+B",
                 "a looser accuracy tolerance than delta = 0.5 points", "another alpha than 0.5 bits"):
        assert want in text, want
    assert text.count(". ") == 1  # two sentences
    paying = copy.deepcopy(rep)
    paying["gains"]["vs_B1"]["average"] = paying["gains"]["vs_B2"]["average"] = 1.2
    assert advice.next_steps(paying) is None
    plant_run(runs_root, "20270101-000000-guide", rep)
    at = AppTest.from_file(RESULTS, default_timeout=60).run()
    assert any(i.value == L.plain(text) for i in at.info)


def test_a_guide_when_no_swept_alpha_meets_the_floor():
    sweep = {"delta": 0.5, "config": {"quick": True},
             "baselines": {"B1": {"meets_floor": False}, "B2": {"meets_floor": True}},
             "points": [{"alpha": 0.01, "flops": {}, "meets_floor": False, "worst": {"A": -0.9, "B": -2.0}},
                        {"alpha": 0.1, "flops": {}, "meets_floor": False, "worst": {"A": -0.7, "B": 0.1}}]}
    text = advice.sweep_next_steps(sweep)
    assert "the closest alpha, 0.1, would meet the floor with a tolerance of delta = 0.70 points" in text
    for want in ("high end of the swept alphas", "B1 miss the floor too", "quick sweep"):
        assert want in text, want
    sweep["points"][1]["meets_floor"] = True
    assert advice.sweep_next_steps(sweep) is None
