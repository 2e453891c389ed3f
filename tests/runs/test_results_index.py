"""Which runs the Results page opens on (runs/results_index.py): the newest with results that was
not cancelled; comparing, the two newest such runs."""
from __future__ import annotations

from pam_explorer.runs import results_index as RI


def runs(tmp_path, spec) -> list[dict]:
    """Run dicts newest first from (name, state, results file or None)."""
    out = []
    for name, state, result in spec:
        folder = tmp_path / name
        folder.mkdir()
        if result:
            (folder / result).write_text("{}")
        out.append({"run_id": name, "state": state, "dir": str(folder)})
    return out


def test_the_page_opens_on_runs_with_results_not_cancelled(tmp_path):
    rs = runs(tmp_path, [("e-cancelled", "cancelled", "report.json"), ("d-failed", "failed", None),
                         ("c-sweep", "done", "sweep.json"), ("b-merge", "done", None),
                         ("a-report", "done", "report.json")])
    assert [RI.result_file(r) for r in rs] == ["report.json", None, "sweep.json", None, "report.json"]
    assert RI.default_picks(rs, 1) == [2]  # the sweep: newest with results, not cancelled
    assert RI.default_picks(rs, 2) == [2, 4]
    assert RI.default_picks(rs, 3) == [2, 4, 0]  # then a cancelled one with results
    assert RI.default_picks(rs[1:2], 2) == [0]  # nothing with results: the newest
    assert RI.default_picks([], 1) == []
    assert not RI.has_results({"run_id": "x"})  # no folder recorded
