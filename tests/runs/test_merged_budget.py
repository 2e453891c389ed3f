"""The merged nets' training budget (ExperimentConfig.merged_budget): "per-network" leaves every
setting and stage key as it was; "total" trains a merged net of K networks K times as long inside
the schedule, and only the merged stages' keys change."""
from __future__ import annotations

import json

import pytest

from pam_explorer.core.errors import ConfigError
from pam_explorer.runs.experiment import ExperimentConfig, run_experiment
from pam_explorer.runs.schemes import merged_settings
from pam_explorer.runs.stage_run import stage_inputs

LAYERS = (("conv1", "conv"), ("fc1", "fc"))


def _settings(budget: str):
    return ExperimentConfig(seeds=(0,), merged_budget=budget).scheme_settings(0, None, LAYERS)


@pytest.mark.parametrize("k", [2, 3])
def test_total_budget_multiplies_the_warmup_and_the_minibatches_between_events(k):
    s = _settings("total")
    plan, merged = s.prune.plan, merged_settings(s, k).prune.plan
    assert (merged.warmup_batches, merged.every) == (500 * k, 10 * k)  # the default plan: 500, 10
    assert merged.total_batches == k * plan.total_batches == k * (500 + 60 * 10)
    # the events, the checkpoint grid and each checkpoint's finetune stay as they are
    for field in ("events", "end_fraction", "grid", "grid_step", "pace", "checkpoint_epochs", "lr_end"):
        assert getattr(merged, field) == getattr(plan, field), field


def test_per_network_budget_leaves_the_settings_alone():
    s = _settings("per-network")
    assert merged_settings(s, 2) is s
    assert ExperimentConfig().merged_budget == "per-network"


def test_only_the_merged_stages_keys_change_and_default_keys_stay_as_before():
    default, total = _settings("per-network"), _settings("total")
    assert stage_inputs("B1", default) == stage_inputs("B1", total)
    for name in ("B2", "PAM"):
        assert "merged_budget" not in stage_inputs(name, default)  # keys of earlier versions
        assert stage_inputs(name, total)["merged_budget"] == "total"


def test_an_unknown_budget_names_the_field():
    with pytest.raises(ConfigError, match="ExperimentConfig.merged_budget"):
        ExperimentConfig(merged_budget="double")


def test_a_total_budget_run_trains_pam_twice_as_long_as_each_b1_network(tmp_path):
    cfg = ExperimentConfig(quick=True, schemes=("B1", "PAM"), device="cpu", delta=100.0, seeds=(0,),
                           merged_budget="total")
    report = run_experiment(cfg, tmp_path / "run", cache=None)
    assert "merged budget `total`" in (tmp_path / "run" / "table.md").read_text()
    stages = tmp_path / "run" / "stages"
    b1 = json.loads((stages / "B1_s0.json").read_text())["budget_batches"]
    pam = json.loads((stages / "PAM_s0.json").read_text())["budget_batches"]
    assert set(b1.values()) == {cfg.prune_config(0, None).plan.total_batches}
    assert pam == 2 * cfg.prune_config(0, None).plan.total_batches
    assert report["config"]["merged_budget"] == "total"


def test_the_time_estimate_counts_the_merged_nets_longer_training():
    from pam_explorer.runs.estimates import budget_text, experiment_seconds

    sizes, flops = {"train": 8000, "val": 1000, "test": 1000}, [1_000_000, 1_000_000]
    for scheme, longer in (("B1", False), ("B2", True), ("PAM", True)):
        one, total = (ExperimentConfig(schemes=(scheme,), merged_budget=b) for b in ("per-network", "total"))
        per_network, merged = (experiment_seconds(c, flops, sizes, 1) for c in (one, total))
        assert (merged > per_network) == longer, scheme
    assert "times the number of networks" in budget_text(ExperimentConfig(merged_budget="total"))
