"""The checkpoint grid's step as a setting (ExperimentConfig.grid_step): None keeps the pace plan
and every stage key as they were; a value changes only the grid, and the key of every stage."""
from __future__ import annotations

import json
import math

import pytest

from pam_explorer.cli.parser import build_parser
from pam_explorer.core.errors import ConfigError
from pam_explorer.runs.estimates import checkpoints
from pam_explorer.runs.experiment import ExperimentConfig, run_experiment
from pam_explorer.runs.experiment_config import PACE_PLANS
from pam_explorer.runs.stage_run import stage_inputs
from pam_explorer.runs.sweep import SweepConfig

LAYERS = (("conv1", "conv"), ("fc1", "fc"))


def _plan(**kw):
    return ExperimentConfig(seeds=(0,), **kw).prune_config(0, None).plan


def test_no_step_keeps_the_pace_plan_and_every_stage_key():
    for pace in PACE_PLANS:
        assert _plan(pace=pace) == PACE_PLANS[pace]
    cfg = ExperimentConfig(seeds=(0,))
    s = cfg.scheme_settings(0, None, LAYERS)
    assert "grid_step" not in {k for name in ("B1", "B2", "PAM") for k in stage_inputs(name, s)}


@pytest.mark.parametrize("pace", ["geometric", "flops"])
def test_a_step_changes_only_the_grid_and_every_key(pace):
    plan, fine = _plan(pace=pace), _plan(pace=pace, grid_step=0.075)
    assert fine.grid_step == 0.075
    for field in ("events", "end_fraction", "grid", "pace", "warmup_batches", "every", "checkpoint_epochs"):
        assert getattr(fine, field) == getattr(plan, field), field
    s, f = (ExperimentConfig(seeds=(0,), pace=pace, grid_step=g).scheme_settings(0, None, LAYERS)
            for g in (None, 0.075))
    for name in ("B1", "B2", "PAM"):
        assert stage_inputs(name, s) != stage_inputs(name, f), name


def test_checkpoint_count_of_the_time_estimate_follows_the_step():
    # geometric to 3 %: ceil-free count of 0.85^k >= 0.03 (21.6 -> 22) and 0.925^k (44.9 -> 45), +2
    assert round(math.log(0.03) / math.log(0.85)) == 22 and round(math.log(0.03) / math.log(0.925)) == 45
    assert checkpoints(ExperimentConfig().prune_config(0, None)) == 24
    assert checkpoints(ExperimentConfig(grid_step=0.075).prune_config(0, None)) == 47


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, float("nan"), "0.1"])
def test_a_step_outside_0_1_names_the_field(bad):
    with pytest.raises(ConfigError, match="ExperimentConfig.grid_step"):
        ExperimentConfig(grid_step=bad)


def test_the_command_line_and_the_sweep_carry_it():
    args = build_parser().parse_args(["experiment", "--grid-step", "0.075", "--out", "x"])
    assert args.grid_step == 0.075
    assert build_parser().parse_args(["experiment", "--out", "x"]).grid_step is None
    assert SweepConfig(seeds=(0,), grid_step=0.075).experiment(0.05).grid_step == 0.075


def test_a_run_records_and_labels_its_step(tmp_path):
    cfg = ExperimentConfig(quick=True, schemes=("B1",), device="cpu", delta=100.0, seeds=(0,), grid_step=0.1)
    report = run_experiment(cfg, tmp_path / "run", cache=None)
    assert report["config"]["grid_step"] == 0.1
    assert json.loads((tmp_path / "run" / "config.json").read_text())["grid_step"] == 0.1
    assert "checkpoint grid step 0.1" in (tmp_path / "run" / "table.md").read_text()


def test_the_time_estimate_grows_with_a_finer_grid_as_measured():
    """Checkpoint finetunes: GEOMETRIC_CHECKPOINT_WORK unpruned-size finetunes at the 15 % step,
    times the square root of the grid's density (7.5 % measured 1.3-1.6x the work of 15 %)."""
    from pam_explorer.runs.estimates import GEOMETRIC_CHECKPOINT_WORK, _schedule

    sizes = {"train": 8000, "val": 1000, "test": 1000}
    for step, factor in ((0.15, 1.0), (0.075, math.sqrt(2)), (0.3, math.sqrt(0.5))):
        prune = ExperimentConfig(grid_step=step).prune_config(0, None)
        training, finetunes = _schedule(1e6, prune, sizes)
        assert training.trained == prune.plan.total_batches * prune.batch_size
        assert finetunes.flops == 1e6
        assert finetunes.trained == pytest.approx(GEOMETRIC_CHECKPOINT_WORK * factor * 2 * 8000)
