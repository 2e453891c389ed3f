"""The study driver: cells run as experiments through one executor, resume from their stage
records, stop starting stages after the time budget, and write the map of what finished."""
from __future__ import annotations

import json
import time

import pytest

from pam_explorer.core.errors import ConfigError, RunConflict
from pam_explorer.data.catalogue import HEADROOM_WIDTHS, OVERLAPS
from pam_explorer.runs import study as st

QUICK_CELL = st.Cell("digits-2task", "taylor", (0,))


def test_the_regime_cells_are_the_issues_seeds_and_order():
    cells = st.regime_cells()
    assert [(c.preset, c.prune, len(c.seeds)) for c in cells[:2]] == [
        ("mnist28-wide-overlap-0", "taylor", 5), ("mnist28-wide-overlap-0", "vib", 5)]
    rest = cells[2:]
    assert all(c.prune == "taylor" and c.seeds == (0, 1, 2) for c in rest)
    assert len(rest) == len(HEADROOM_WIDTHS) * len(OVERLAPS) - 1  # every other cell of the grid
    cfg = st.StudyConfig(rank="flops-aware")
    exp = cfg.experiment(cells[0])
    assert (exp.rank, exp.delta, exp.schedule) == ("flops-aware", 0.5, "published")
    assert exp.seeds == (0, 1, 2, 3, 4)
    assert [c.folder for c in cfg.select(["*-overlap-4_*"]).cells] == [
        "mnist28-overlap-4_taylor", "mnist28-wide-overlap-4_taylor"]
    with pytest.raises(ConfigError, match="matches no cell"):
        cfg.select(["nothing*"])
    with pytest.raises(ConfigError, match="share a folder"):
        st.StudyConfig(cells=(QUICK_CELL, QUICK_CELL))


def test_missing_networks_are_named_with_their_command(monkeypatch, tmp_path):
    monkeypatch.setenv("PAM_ASSETS_ROOT", str(tmp_path))
    with pytest.raises(ConfigError, match="python -m pam_explorer train --preset digits-2task"):
        st.check_networks(st.StudyConfig(cells=(QUICK_CELL,)))


def test_a_budget_that_ran_out_starts_nothing(tmp_path):
    cfg = st.StudyConfig(cells=(QUICK_CELL,), quick=True)
    opts = st.StudyOptions(executor="inline", budget_hours=1e-9, cache=None)
    time.sleep(0.01)
    rmap = st.run_study(cfg, tmp_path, opts, say=lambda _: None)
    labels = [f"digits-2task_taylor.{n}_s0" for n in ("B1", "B2", "PAM")]
    assert sorted(rmap["execution"]["not_started"]) == labels
    assert rmap["cells"][0]["seeds"] == []
    assert not list((tmp_path / QUICK_CELL.folder / "stages").glob("*.json"))


def test_a_cell_runs_resumes_and_its_map_is_its_report(tmp_path):
    """One quick cell, inline: the map's gains are the report's (run_experiment on the same stage
    records); a rerun recomputes nothing; a folder of another configuration is refused."""
    cfg = st.StudyConfig(cells=(QUICK_CELL,), quick=True, delta=100.0)
    opts = st.StudyOptions(executor="inline", cache=None)
    rmap = st.run_study(cfg, tmp_path, opts, say=lambda _: None)
    folder = tmp_path / QUICK_CELL.folder
    report = json.loads((folder / "report.json").read_text())
    cell = rmap["cells"][0]
    assert cell["complete"] and cell["seeds"] == [0]
    for vs in ("vs_B1", "vs_B2"):
        assert cell["gains"][vs]["average"] == pytest.approx(report["gains"][vs]["average"])
        assert cell["gains"][vs]["peak"] == pytest.approx(report["gains"][vs]["peak"])
    assert json.loads((tmp_path / "map.json").read_text())["cells"][0]["gains"] == cell["gains"]
    stamps = {p.name: p.stat().st_mtime_ns for p in (folder / "stages").glob("*.json")}
    assert len(stamps) == 3
    assert st.dry_run(cfg, tmp_path)["cells"][0]["left"] == []
    again = st.run_study(cfg, tmp_path, opts, say=lambda _: None)
    assert {p.name: p.stat().st_mtime_ns for p in (folder / "stages").glob("*.json")} == stamps
    assert again["cells"][0]["gains"] == cell["gains"] and again["execution"]["jobs"] == []
    with pytest.raises(RunConflict):  # the same folder under another rank
        st.run_study(st.StudyConfig(cells=(QUICK_CELL,), quick=True, delta=100.0, rank="flops-aware"),
                     tmp_path, opts, say=lambda _: None)
