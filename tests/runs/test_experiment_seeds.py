"""The fair multi-seed experiment: determinism, seeds and CIs, the shared stage cache, legacy
configs, and the statistics it reports (against plain recomputation)."""
from __future__ import annotations

import dataclasses
import json
import math
import statistics

import pytest
import torch
from scipy import stats as scipy_stats

from pam_explorer.core.config import MIConfig
from pam_explorer.core.errors import ConfigError
from pam_explorer.runs import stats
from pam_explorer.runs.experiment import TIMING_FIELDS, ExperimentConfig, run_experiment

# delta 100: every checkpoint is within the floor, so the quick (tiny) runs have figures to compare
QUICK = dict(quick=True, schemes=("B1", "PAM"), device="cpu", delta=100.0)


def _strip(obj):
    """The report without wall-clock figures (latency, seconds, progress times)."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items()
                if k not in TIMING_FIELDS and not k.startswith("latency_ms")}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def test_same_config_seed_and_threads_give_the_same_report_on_one_machine(tmp_path):
    """Determinism, bit for bit, of two runs on ONE machine (same CPU, torch build and thread
    count): another machine's BLAS may sum in another order, and a report recorded there would
    differ in the last bits (compare across machines with tolerances, as tests/test_legacy.py)."""
    cfg = ExperimentConfig(seeds=(3,), **QUICK)
    first = run_experiment(cfg, tmp_path / "a", cache=None)
    second = run_experiment(cfg, tmp_path / "b", cache=None)
    assert first["torch_threads"] == second["torch_threads"] == torch.get_num_threads()
    assert _strip(first) == _strip(second)
    assert first["per_seed"]["3"]["schemes"]["PAM"]["widths"]  # a real run, not an empty report


def test_seeds_are_summarised_and_stages_shared_through_the_cache(tmp_path):
    cache = tmp_path / "cache"
    cfg = ExperimentConfig(seeds=(0, 1), **QUICK)
    rows: list[dict] = []
    report = run_experiment(cfg, tmp_path / "one", progress=rows.append, cache=cache)
    assert report["seeds"] == [0, 1] and set(report["per_seed"]) == {"0", "1"}
    per = [report["per_seed"][s]["schemes"] for s in ("0", "1")]
    for name in ("B1", "PAM"):  # the summary is the mean over seeds, with a CI around it
        for subset, mean in report["schemes"][name]["flops"].items():
            vals = [p[name]["flops"][subset] for p in per]
            assert mean == pytest.approx(statistics.fmean(vals))
            lo, hi = report["schemes"][name]["flops_ci95"][subset]  # two seeds: a t-interval
            half = scipy_stats.t.ppf(0.975, 1) * statistics.stdev(vals) / math.sqrt(2)
            assert (lo, hi) == pytest.approx((mean - half, mean + half))
    g = report["gains"]["vs_B1"]
    paired = [report["per_seed"][s]["gains"]["vs_B1"]["average"] for s in ("0", "1")]
    assert g["average"] == pytest.approx(statistics.fmean(paired)) and g["n"] == 2
    assert g["per_seed"]["average"] == pytest.approx(paired)
    assert g["average_verdict"] in ("above", "below", "no difference")
    table = (tmp_path / "one" / "table.md").read_text()
    assert "seeds [0, 1]" in table and "Quick run" in table and "95 % CI" in table
    # another alpha: B1 of both seeds comes from the stage cache, PAM is computed
    rows.clear()
    other = run_experiment(ExperimentConfig(seeds=(0, 1), alpha=0.2, **QUICK), tmp_path / "two",
                           progress=rows.append, cache=cache)
    messages = [r["message"] for r in rows]
    assert "B1 seed 0: reused from the stage cache" in messages
    assert "B1 seed 1: reused from the stage cache" in messages
    assert "PAM seed 0: started" in messages
    assert other["per_seed"]["1"]["schemes"]["B1"] == report["per_seed"]["1"]["schemes"]["B1"]
    assert (tmp_path / "two" / "stages" / "B1_A_s1.zip").is_file()  # the run folder has its copy


def test_floor_rank_and_profile_reach_the_stages():
    cfg = ExperimentConfig(seeds=(2,), floor="original", rank="flops-aware", regroup="paper")
    pc = cfg.prune_config(2, {"A": 90.0, "B": 80.0})
    assert pc.flops_weight == 1.0 and pc.reference_accuracy == {"A": 90.0, "B": 80.0} and pc.seed == 2
    assert cfg.mi(2).profile == "paper" and cfg.mi(2).seed == 2
    rc = cfg.regroup_config([("conv1", "conv"), ("fc1", "fc")])
    assert rc.both_picked == "drop" and rc.alpha == 0.05 and rc.overrides == (("conv1", 0.01),)
    default = ExperimentConfig()
    # the default rank is flops-aware (measured: docs/pruning.md section 4); "published" is the named option
    assert default.prune_config(0, None).flops_weight == 1.0 and default.mi(0).profile == "default"
    assert ExperimentConfig(rank="published").prune_config(0, None).flops_weight == 0.0
    with pytest.raises(ConfigError, match="ExperimentConfig.seeds"):
        ExperimentConfig(seeds=(1, 1))
    with pytest.raises(ConfigError, match="ExperimentConfig.floor"):
        ExperimentConfig(floor="mine")


def test_a_config_from_before_seeds_reads_as_the_code_that_wrote_it():
    old = {"preset": "digits-2task", "prune": "vib", "alpha": None, "schemes": ["B1", "PAM"],
           "finetune_epochs": 3, "quick": True, "seed": 4, "device": "cpu", "target_sparsity": 0.9}
    cfg = ExperimentConfig.from_dict(json.loads(json.dumps(old)))
    assert cfg.seeds == (4,) and (cfg.floor, cfg.rank, cfg.regroup) == ("own", "flops-aware", "legacy")
    assert cfg.resolved_alpha() == 0.5  # the legacy profile's alpha (not a preset default)
    # quick never shrinks PAM's regrouping (issue 14: a run's groups are the explorer's): the
    # legacy profile's N, where the code that wrote this config took 64 pictures when quick
    assert cfg.mi(4) == MIConfig(n_samples=256, kernel="fixed", null_perms=0, seed=4)
    with pytest.raises(ConfigError, match="unknown field"):
        ExperimentConfig.from_dict({**old, "colour": "red"})


def test_the_pace_reaches_every_stage_and_old_configs_read_as_linear():
    published = {"preset": "digits-2task", "prune": "taylor", "seeds": [0], "schedule": "published"}
    assert ExperimentConfig.from_dict(published).pace == "flops"  # written before the pace was a setting
    cfg = ExperimentConfig.from_dict({**published, "pace": "geometric"})
    assert cfg.prune_config(0, None).plan.pace == "geometric"
    assert dataclasses.replace(cfg, quick=True).prune_config(0, None).plan.pace == "geometric"
    with pytest.raises(ConfigError, match="ExperimentConfig.pace"):
        ExperimentConfig(pace="exponential")


def test_bootstrap_ci_against_a_plain_resampling():
    """Independent reference: the percentile interval of means of explicit resamples drawn with
    the same seeded generator, computed with the standard library."""
    xs = [1.02, 1.31, 0.97, 1.18, 1.25]
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(len(xs), (stats.N_BOOT, len(xs)), generator=gen).tolist()
    means = sorted(statistics.fmean(xs[i] for i in row) for row in idx)

    def pct(q: float) -> float:  # linear interpolation, as torch.quantile
        pos = q * (len(means) - 1)
        lo = math.floor(pos)
        return means[lo] + (means[min(lo + 1, len(means) - 1)] - means[lo]) * (pos - lo)
    assert stats.bootstrap_ci(xs) == pytest.approx((pct(0.025), pct(0.975)))
    assert stats.std(xs) == pytest.approx(statistics.stdev(xs))
    assert stats.bootstrap_ci([1.3]) == (1.3, 1.3)
    assert stats.verdict((1.01, 1.2)) == "above" and stats.verdict((0.9, 1.1)) == "no difference"
    assert stats.verdict((0.7, 0.95)) == "below"
    # one seed: its "interval" is the value itself, which excludes 1 without showing anything
    assert stats.verdict((0.32, 0.32), n=1) == stats.SINGLE and stats.verdict((0.32, 0.32)) == "below"


def test_max_steps_bounds_the_pruning_turns_and_reports_it(tmp_path):
    report = run_experiment(ExperimentConfig(max_steps=2, prune_lr=3e-4, **{**QUICK, "delta": 0.5},
                                             schedule="floor-greedy"), tmp_path / "r", cache=None)
    per = report["per_seed"]["0"]["schemes"]
    assert len(per["PAM"]["log"]) == 2 and per["PAM"]["stopped_at_max_steps"] is True
    assert all(len(log) == 2 for log in per["B1"]["log"].values())
    assert per["B1"]["stopped_at_max_steps"] == {"A": True, "B": True}
    assert json.loads((tmp_path / "r" / "config.json").read_text())["max_steps"] == 2
    with pytest.raises(ConfigError, match="max_steps"):
        ExperimentConfig(max_steps=0)
    # the pruning lr reaches every scheme's PruneConfig (quick or not) and the report names both budgets
    assert report["config"]["prune_config"]["lr"] == 3e-4
    assert ExperimentConfig(prune_lr=2e-5).prune_config(0, None).lr == 2e-5
    assert ExperimentConfig().prune_config(0, None).lr == 1e-3  # PruneConfig's default when unset
    head = (tmp_path / "r" / "table.md").read_text().splitlines()[0]
    assert "at most 2 pruning turns per scheme" in head and "pruning finetune lr 0.0003" in head
    for bad in (0.0, -1e-3, float("nan")):
        with pytest.raises(ConfigError, match="ExperimentConfig.prune_lr"):
            ExperimentConfig(prune_lr=bad)
