"""The explorer's headroom figure: B1's compression read off stage records of these networks, or
a quick estimate with its cost.

Independent references: FLOPs of the networks counted by torch's FlopCounterMode (what a record
of these networks starts at), and compression ratios computed by hand from hand-made curves.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from pam_explorer.core.io import write_json_atomic
from pam_explorer.cost.estimate import forward_flops
from pam_explorer.runs import headroom as hr
from pam_explorer.runs.experiment_config import ExperimentConfig
from pam_explorer.zoo import build_model

PRESET = "mnist28-overlap-0"


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return [build_model("lenet5", 5, 1, 28, width=0.5) for _ in range(2)]


def _point(task: str, flops: float, acc: float) -> dict:
    return {"flops": {task: int(flops)}, "params": {task: 1}, "val_accuracy": {task: acc},
            "test_accuracy": {task: acc}, "val_se": {task: 0.1}, "test_se": {task: 0.1}}


def _b1(start: dict[str, int], accs: dict[str, list[float]]) -> dict:
    """A B1 record: FLOPs fall to 1 - 0.2 i of the start at checkpoint i."""
    curves = {t: [_point(t, start[t] * (1 - 0.2 * i), a) for i, a in enumerate(v)] for t, v in accs.items()}
    return {"curve": curves, "reference_val_accuracy": {"A": 95.0, "B": 92.0},
            "flops": {"A": 1, "B": 1, "A+B": 2}, "accuracy": {"A": 1.0, "B": 1.0}}


def _folder(root, name: str, record: dict, **cfg) -> None:
    config = dataclasses.asdict(ExperimentConfig(preset=PRESET, **cfg))
    (root / name / "stages").mkdir(parents=True)
    write_json_atomic(root / name / "config.json", config)
    write_json_atomic(root / name / "stages" / "B1_s0.json", record)


def test_measured_headroom_reads_b1_records_of_these_networks_only(tmp_path, nets):
    flops = {t: forward_flops(n, 1, 28) for n, t in zip(nets, ("A", "B"))}
    # A passes 0.5 points below 95 at checkpoint 2 (60 % of the FLOPs), B at 3 (40 %)
    _folder(tmp_path, "good", _b1(flops, {"A": [95.0, 94.8, 94.6, 93.0], "B": [92.0, 91.9, 91.7, 91.6]}))
    _folder(tmp_path, "retrained", _b1({t: f + 2 for t, f in flops.items()},
                                       {"A": [95.0, 95.0, 95.0, 95.0], "B": [92.0] * 4}))
    _folder(tmp_path, "p1", _b1(flops, {"A": [95.0] * 4, "B": [92.0] * 4}), prune="vib")
    got = hr.measured_headroom(PRESET, nets=nets, roots=[tmp_path])
    assert got["measured"] and got["records"] == 1 and got["sources"][0].endswith("good/stages/B1_s0.json")
    assert got["compression"] == pytest.approx({"A": 1 / 0.6, "B": 1 / 0.4}, rel=1e-4)  # FLOPs are integers
    assert hr.measured_headroom(PRESET, nets=nets, delta=2.0, roots=[tmp_path])["compression"]["A"] \
        == pytest.approx(1 / 0.4, rel=1e-4)
    assert hr.measured_headroom("mnist28-overlap-2", roots=[tmp_path]) is None
    fig = hr.headroom_figure(PRESET, nets, roots=[tmp_path])
    assert fig["measured"] and fig["compression"] == got["compression"] and "B2" in fig["meaning"]


def test_one_stage_resumed_into_several_folders_counts_once(tmp_path, nets):
    flops = {t: forward_flops(n, 1, 28) for n, t in zip(nets, ("A", "B"))}
    curves = {"A": [95.0, 94.8, 94.6, 93.0], "B": [92.0, 91.9, 91.7, 91.6]}
    same = {**_b1(flops, curves), "_stage": {"key": "k0", "version": "stage-v4"}}
    _folder(tmp_path, "run", same)
    _folder(tmp_path, "copy", same)  # the same record resumed into another run folder
    _folder(tmp_path, "other", {**_b1(flops, curves), "_stage": {"key": "k1", "version": "stage-v4"}})
    assert hr.measured_headroom(PRESET, nets=nets, roots=[tmp_path])["records"] == 2


def test_without_records_the_figure_states_the_estimates_cost(tmp_path, nets):
    fig = hr.headroom_figure(PRESET, nets, roots=[tmp_path])
    assert not fig["measured"] and fig["compression"] is None
    assert fig["estimate_seconds"] > 0 and "quick estimate takes about" in fig["estimate_text"]
    wider = [build_model("lenet5", 5, 1, 28, width=2.0) for _ in range(2)]
    assert hr.estimate_seconds(wider, 1, 28) > 2 * hr.estimate_seconds(nets, 1, 28)


def test_the_quick_estimate_reads_its_own_curve(monkeypatch, nets):
    from pam_explorer.core.config import DataConfig
    from pam_explorer.prune.config import ScheduleConfig

    plan = ScheduleConfig(warmup_batches=2, every=2, events=4, checkpoint_epochs=1, grid_step=0.5)
    monkeypatch.setattr(hr, "QUICK_PLAN", plan)
    monkeypatch.setattr(hr, "QUICK_DATA", DataConfig(n_train=64, n_val=64, n_test=32))
    out = hr.estimate_headroom(PRESET, nets, delta=100.0)  # every checkpoint passes: the last is read
    assert not out["measured"] and out["seconds"] > 0 and out["plan"]["events"] == 4
    assert set(out["compression"]) == {"A", "B"} and all(c > 1.2 for c in out["compression"].values())


def _committed_lenet5_presets() -> list[str]:
    from pam_explorer.core.paths import assets_root

    return sorted({p.parent.name for p in assets_root().glob("*/*.safetensors")})


@pytest.mark.parametrize("preset", _committed_lenet5_presets())
def test_every_committed_lenet5_preset_shows_a_measured_headroom_on_a_fresh_clone(preset):
    """The explorer's figure is B1's measured compression for every committed LeNet-5 preset:
    the committed results hold B1 records of exactly these networks (results/regime_map,
    results/headroom), each read off at a compression >= 1."""
    from pam_explorer.core.paths import results_root
    from pam_explorer.data import get_preset
    from pam_explorer.zoo.pretrained import load_pretrained

    nets = load_pretrained(preset, tuple(get_preset(preset).task_names))
    found = hr.measured_headroom(preset, "lenet5", 0.5, nets, roots=[results_root()])
    assert found is not None and found["measured"] and found["records"] >= 1
    assert all(c >= 1.0 for c in found["min"].values())


def test_the_measuring_run_is_an_allowed_b1_experiment_of_the_defaults(nets):
    from pam_explorer.runs import job_spec

    job = job_spec.check(hr.measure_job(PRESET, "lenet5"))
    argv = job_spec.argv(job, "/tmp/run")
    assert argv[argv.index("experiment") + 1:] == [
        "--preset", PRESET, "--arch", "lenet5", "--prune", "taylor", "--schemes", "B1", "--seeds", "0",
        "--out", "/tmp/run"]
    # B1 of one seed: the experiment's own estimate of that stage (the published budget, both nets)
    from pam_explorer.data import get_preset
    from pam_explorer.runs.estimates import experiment_seconds, split_sizes

    cfg = ExperimentConfig(preset=PRESET, schemes=("B1",), seeds=(0,))
    spec = get_preset(PRESET)
    want = experiment_seconds(cfg, [forward_flops(n, spec.in_channels, spec.image_size) for n in nets],
                              split_sizes(spec, cfg.data()), 1)
    assert hr.measure_seconds(PRESET, nets) == pytest.approx(want)
    assert hr.measure_seconds(PRESET, nets) > hr.estimate_seconds(nets, spec.in_channels, spec.image_size)
