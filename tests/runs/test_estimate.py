"""Duration estimates from this machine's stage records (issue 26, point 5). References: sums of
the planted seconds, worked out by hand."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pam_explorer.runs.estimate import estimate, human, stage_times


def plant(root: Path, name: str, command: str, config: dict, stages: dict[str, float]) -> None:
    folder = root / name
    (folder / "stages").mkdir(parents=True)
    (folder / ".pam-run.json").write_text(json.dumps({"command": command, "config": config}))
    for file, sec in stages.items():
        (folder / "stages" / file).write_text(json.dumps({"flops": {}, "seconds": sec}))


FULL = {"preset": "digits-2task", "prune": "taylor", "quick": False, "arch": "lenet5"}


def test_experiment_and_sweep_estimates_add_up_median_stage_times(tmp_path):
    plant(tmp_path, "e1", "experiment", FULL,
          {"B1_s0.json": 300.0, "B2_s0.json": 200.0, "PAM_s0.json": 100.0})
    plant(tmp_path, "s1", "sweep", {**FULL, "alphas": [0.01, 0.1]},
          {"B1_s0.json": 340.0, "B2_s0.json": 220.0, "PAM_a0.01_s0.json": 140.0, "PAM_a0.1_s0.json": 120.0,
           "PAM.json": 80.0, "notes.json": 5.0})
    plant(tmp_path, "q1", "experiment", {**FULL, "quick": True}, {"B1_s0.json": 3.0})
    (tmp_path / "junk").mkdir()  # no marker: ignored
    times = stage_times([tmp_path, tmp_path / "missing"])
    assert sorted(times[("digits-2task", "taylor", False, "lenet5", "PAM")]) == [80.0, 100.0, 120.0, 140.0]
    medians = {"B1": 320.0, "B2": 210.0, "PAM": 110.0}
    job = {"command": "experiment", "args": {"preset": "digits-2task", "prune": "taylor", "seeds": [0, 1, 2]}}
    e = estimate(job, [tmp_path])
    assert e.seconds == pytest.approx(3 * sum(medians.values()))
    assert "8 stage(s) measured on this machine" in e.basis and e.text.startswith("about 32 min (")
    sweep = {"command": "sweep", "args": {"preset": "digits-2task", "prune": "taylor", "alphas": "auto",
                                          "seeds": [0, 1, 2], "workers": 2}}
    e = estimate(sweep, [tmp_path])
    assert e.seconds == pytest.approx(3 * (320 + 210 + 8 * 110) / 2) and "at most 8" in e.basis
    typed = {**sweep, "args": {**sweep["args"], "alphas": [0.1], "workers": None}}
    assert estimate(typed, [tmp_path], cores=4).seconds == pytest.approx(3 * (320 + 210 + 110) / 4)
    # a finished stage changes the next estimate
    plant(tmp_path, "e2", "experiment", FULL, {"PAM_s0.json": 1000.0, "PAM_s1.json": 1000.0})
    assert estimate(job, [tmp_path]).seconds == pytest.approx(3 * (320 + 210 + 130))  # PAM: median of 6 now


def test_unknown_until_measured_and_merge_from_finished_runs(tmp_path):
    plant(tmp_path, "q1", "experiment", {**FULL, "quick": True}, {"B1_s0.json": 3.0})
    job = {"command": "experiment", "args": {"preset": "digits-2task", "prune": "vib", "quick": True}}
    e = estimate(job, [tmp_path])
    assert e.seconds is None and "no B1/B2/PAM stage of digits-2task with vib (quick)" in e.text
    merge = {"command": "merge", "args": {"preset": "digits-2task", "finetune_epochs": 3}}
    runs = [{"state": "done", "started": 10.0, "ended": 70.0, "job": merge},
            {"state": "done", "started": 0.0, "ended": 100.0, "job": merge},
            {"state": "failed", "started": 0.0, "ended": 1.0, "job": merge},
            {"state": "done", "started": 0.0, "ended": 5.0,
             "job": {"command": "merge", "args": {"preset": "x"}}}]
    assert estimate(merge, [], runs).seconds == pytest.approx(80.0)
    assert estimate(merge, [], []).seconds is None
    assert (human(45), human(720), human(6785)) == ("45 s", "12 min", "1 h 53 min")
