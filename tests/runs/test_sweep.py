"""The sweep driver (runs/sweep.py) in this process (inline executor) with stand-in stages, so the
flow is fast: points per (alpha, seed), resume, a failed point retried once then reported and
rerun later, the stage cache shared with the experiment both ways, dry runs, folder refusals.
The real stages run in tests/runs/test_sweep_ci.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pam_explorer.core.errors import JobsFailed, RunConflict
from pam_explorer.runs import schemes
from pam_explorer.runs.experiment import ExperimentConfig, run_experiment
from pam_explorer.runs.sweep import SweepConfig, SweepOptions, dry_run, run_sweep

SEEDS = (0, 1)


@pytest.fixture(scope="module")
def traj_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")  # quick trajectories, computed once for the module


@pytest.fixture()
def fake(monkeypatch, traj_cache):
    """Stand-in stages recording their calls; ``fake.fail`` holds (alpha, seed) that raise."""
    monkeypatch.setenv("PAM_CACHE_ROOT", str(traj_cache))
    calls: list[tuple] = []
    fail: set = set()

    def stage(name):
        def fn(s, nets, tasks, data, say, folder, tag):
            alpha, seed = s.regroup.alpha if name == "PAM" else None, s.prune.seed
            calls.append((name, alpha, seed))
            if (alpha, seed) in fail:
                raise RuntimeError(f"stand-in failure at alpha {alpha}, seed {seed}")
            base = {"B1": 20.0, "B2": 15.0}.get(name) or (12.0 - 10 * alpha)
            rec = {"flops": {"A": base + seed, "B": base, "A+B": 2 * base},
                   "params": {"A": 1, "B": 1, "A+B": 1}, "accuracy": {"A": 99.0, "B": 99.0},
                   "val_accuracy": {"A": 99.0, "B": 99.0}, "seconds": 0.0}
            if name == "PAM":
                rec["groups_before_pruning"] = {"fc1": {"A": int(100 * alpha)}}
            return rec, {}
        return fn

    for name in ("B1", "B2", "PAM"):
        monkeypatch.setitem(schemes.SCHEME_FNS, name, stage(name))
    fake.calls, fake.fail = calls, fail
    return fake


def sweep_cfg(alphas=(0.05, 0.5), seeds=SEEDS) -> SweepConfig:
    return SweepConfig(quick=True, alphas=alphas, seeds=seeds)


def opts(tmp_path) -> SweepOptions:
    return SweepOptions(executor="inline", cache=str(tmp_path / "stage-cache"), poll_s=0)


def untimed(sweep: dict) -> dict:
    return {k: v for k, v in sweep.items() if k != "execution"}


def test_points_failure_retry_and_resume(fake, tmp_path):
    out = tmp_path / "sweep"
    fake.fail.add((0.5, 1))
    with pytest.raises(JobsFailed, match="PAM_a0.5_s1") as err:
        run_sweep(sweep_cfg(), out, opts(tmp_path))
    assert "rerun the same command" in str(err.value)
    assert fake.calls.count(("PAM", 0.5, 1)) == 2  # retried once, not more
    sweep = json.loads((out / "sweep.json").read_text())
    assert not sweep["complete"] and [f["label"] for f in sweep["failed"]] == ["PAM_a0.5_s1"]
    assert Path(sweep["failed"][0]["log"]).read_text().count("RuntimeError: stand-in failure") == 2
    assert sweep["points"][1]["seeds"] == [0] and sweep["points"][0]["complete"]
    assert (out / "stages" / "PAM_a0.05_s1.json").is_file() and (out / "stages" / "B2_s0.json").is_file()

    fake.fail.clear()
    fake.calls.clear()
    sweep = run_sweep(sweep_cfg(), out, opts(tmp_path))
    assert fake.calls == [("PAM", 0.5, 1)]  # only the missing point runs
    assert sweep["complete"] and sweep["alphas"] == [0.05, 0.5] and not sweep["failed"]
    p = {pt["alpha"]: pt for pt in sweep["points"]}
    assert p[0.5]["per_seed"]["1"]["flops"]["A"] == pytest.approx(12.0 - 5 + 1)
    assert p[0.5]["flops"]["A+B"] == pytest.approx(14.0) and p[0.05]["flops"]["A+B"] == pytest.approx(23.0)
    assert sweep["frontier"] == [0.5] and sweep["recommended"]["alpha"] == 0.5
    assert p[0.5]["gains"]["vs_B1"]["n"] == 2
    assert p[0.05]["per_seed"]["0"]["groups_before_pruning"] == {"fc1": {"A": 5}}

    fake.calls.clear()
    again = run_sweep(sweep_cfg(), out, opts(tmp_path))
    assert fake.calls == [] and untimed(again) == untimed(sweep)  # a finished point never reruns
    md = (out / "sweep.md").read_text()
    assert "0.5 (recommended)" in md
    points = json.loads((out / "points.json").read_text())["points"]
    assert {r["source"] for r in points} == {"resumed"}


def test_stage_cache_is_shared_with_the_experiment_both_ways(fake, tmp_path):
    cache = opts(tmp_path).cache
    run_experiment(ExperimentConfig(quick=True, seeds=(0,), alpha=0.05), tmp_path / "exp", cache=cache)
    assert len(fake.calls) == 3
    plan = dry_run(sweep_cfg(alphas=(0.05, 0.5), seeds=(0,)), tmp_path / "sweep", opts(tmp_path))
    assert {r["label"]: r["source"] for r in plan["done"]} == {"B1_s0": "cached", "B2_s0": "cached",
                                                               "PAM_a0.05_s0": "cached"}
    assert [(j["job"], j["alpha"], j["seed"]) for j in plan["jobs"]] == [("PAM_a0.5_s0", 0.5, 0)]
    assert not (tmp_path / "sweep").exists()  # a dry run writes nothing
    fake.calls.clear()
    run_sweep(sweep_cfg(alphas=(0.05, 0.5), seeds=(0,)), tmp_path / "sweep", opts(tmp_path))
    assert fake.calls == [("PAM", 0.5, 0)]  # B1, B2 and PAM at 0.05 come from the experiment
    assert (tmp_path / "sweep" / "stages" / "B2_s0.zip").exists() is False  # stand-ins write no zips
    fake.calls.clear()
    cfg = ExperimentConfig(quick=True, seeds=(0,), alpha=0.5)
    report = run_experiment(cfg, tmp_path / "exp2", cache=cache)
    assert fake.calls == [] and report["schemes"]["PAM"]["flops"]["A"] == pytest.approx(7.0)


def test_a_folder_of_another_configuration_is_refused_unchanged(fake, tmp_path):
    out = tmp_path / "sweep"
    run_sweep(sweep_cfg(alphas=(0.5,), seeds=(0,)), out, opts(tmp_path))
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    for other in (sweep_cfg(alphas=(0.1,), seeds=(0,)), sweep_cfg(alphas=(0.5,), seeds=(0, 1))):
        with pytest.raises(RunConflict, match="another configuration"):
            run_sweep(other, out, opts(tmp_path))
        with pytest.raises(RunConflict):
            dry_run(other, out, opts(tmp_path))
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    with pytest.raises(RunConflict, match="experiment"):
        run_experiment(ExperimentConfig(quick=True, seeds=(0,)), out, cache=opts(tmp_path).cache)


def test_sweep_config_is_the_experiments_config_plus_alphas_and_seeds():
    """Every experiment setting is a sweep setting with the same default, so a sweep's stages have
    the experiment's keys (B1/B2 and PAM shared through the stage cache)."""
    import dataclasses

    sweep_fields = {f.name for f in dataclasses.fields(SweepConfig)} - {"alphas", "seeds"}
    assert sweep_fields == {f.name for f in dataclasses.fields(ExperimentConfig)} - {"alpha", "schemes",
                                                                                     "seeds"}
    assert SweepConfig(seeds=(0,)).experiment() == ExperimentConfig(seeds=(0,))
    assert SweepConfig(seeds=(0,)).experiment().finetune_epochs == ExperimentConfig().finetune_epochs
    assert SweepConfig(arch="lenet5", seeds=(1,)).experiment(0.2) == ExperimentConfig(
        arch="lenet5", seeds=(1,), alpha=0.2)


def test_flops_aware_stage_keys_name_the_tie_order_published_keys_do_not_change():
    """A published-rank stage's cache inputs are those of earlier versions (caches stay valid); a
    flops-aware stage's name the savings tie order, so stages ranked before it are recomputed."""
    from pam_explorer.runs.stage_run import stage_inputs

    layers = (("conv1", "conv"), ("fc1", "fc"))
    published = ExperimentConfig(seeds=(0,), rank="published").scheme_settings(0, None, layers)
    aware = ExperimentConfig(seeds=(0,), rank="flops-aware").scheme_settings(0, None, layers)
    for name in ("B1", "B2", "PAM"):
        assert "rank_ties" not in stage_inputs(name, published)
        assert stage_inputs(name, aware)["rank_ties"] == "savings"
