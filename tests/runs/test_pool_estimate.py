"""The experiment's time estimate counts only the stages still to run, spread over the workers."""
from __future__ import annotations

import pytest

from pam_explorer.cli.commands import _run_estimate
from pam_explorer.runs.estimates import experiment_seconds, experiment_stage_seconds, pool_seconds
from pam_explorer.runs.experiment import ExperimentConfig

FLOPS, SIZES = [1_000_000, 1_000_000], {"train": 8000, "val": 1000, "test": 1000}


@pytest.mark.parametrize("stages, workers, wall", [
    ([3, 3, 2, 2, 2], 2, 7),   # longest first onto the least loaded: 3+2+2 | 3+2
    ([5, 1, 1, 1], 2, 5),      # one long stage bounds the wall time
    ([2, 2, 2], 1, 6),
    ([2, 2], 4, 2),            # more workers than stages
    ([], 2, 0),
])
def test_pool_seconds_by_hand(stages, workers, wall):
    assert pool_seconds(stages, workers) == wall


def test_stage_seconds_add_up_to_the_whole_experiment_and_skip_recorded_stages():
    cfg = ExperimentConfig(seeds=(0, 1, 2))
    every = experiment_stage_seconds(cfg, FLOPS, SIZES, 1)
    assert len(every) == 9 and sum(every) == pytest.approx(experiment_seconds(cfg, FLOPS, SIZES, 1))
    left = experiment_stage_seconds(cfg, FLOPS, SIZES, 1, skip=[("PAM", 1), ("B1", 0), ("B1", 7)])
    per = {s: experiment_seconds(ExperimentConfig(schemes=(s,)), FLOPS, SIZES, 1) for s in ("B1", "PAM")}
    assert len(left) == 7 and sum(left) == pytest.approx(sum(every) - per["B1"] - per["PAM"])


def test_the_command_line_estimate_names_workers_and_resumed_stages(tmp_path):
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "B2_s1.json").write_text("{}")
    line = _run_estimate(ExperimentConfig(seeds=(0, 1)), tmp_path, 2, None).line
    assert "5 of 6 stages to run (1 already recorded" in line and "2 workers of 1 thread(s)" in line
    one = _run_estimate(ExperimentConfig(seeds=(0, 1)), tmp_path / "new", 1, None).line
    assert "6 of 6 stages to run" in one and "workers" not in one
