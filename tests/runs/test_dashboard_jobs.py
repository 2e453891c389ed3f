"""Issue 14, backend side of the dashboard's runs: a run regroups exactly as the explorer predicts,
it reports real progress, finished wrappers are reaped, failed runs resume, the train job installs
networks for a preset that has none, the CLI's advice works, and logs carry no CUDA-probe noise."""
from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

import pytest

from pam_explorer.cli import main
from pam_explorer.core.config import MIConfig, RegroupConfig
from pam_explorer.core.errors import ConfigError, DataMissing
from pam_explorer.data import get_preset
from pam_explorer.regroup.explorer import Explorer
from pam_explorer.runs import job_spec, jobs
from pam_explorer.zoo.pretrained import has_pretrained, load_pretrained
from tests.helpers import wait_for
from ui.run_args import MODES, experiment_job, train_job

REPO = Path(__file__).resolve().parents[2]




def test_a_runs_merged_structure_is_the_explorers_prediction(tmp_path, capsys, monkeypatch):
    """The Runs page's job at the explorer's alpha and overrides (a quick PAM-only run, which
    shrinks finetuning and pruning, never the regrouping), run through the command it becomes:
    the merged network's groups and FLOPs before pruning equal the explorer's prediction at the
    same alpha, overrides and MI settings; its progress is reported per stage and step."""
    monkeypatch.setenv("PAM_CACHE_ROOT", str(tmp_path / "cache"))  # no stage cache hit; shipped trajectories
    alpha, overrides = 0.0849, {"conv2": 0.02}
    spec = experiment_job("digits-2task", "taylor", MODES[1], alpha, True, "cpu", overrides=overrides)
    argv = job_spec.argv(spec, tmp_path / "run")
    assert argv[argv.index("--alpha") + 1] == "0.0849" and "conv2=0.02" in argv
    assert main(argv[3:]) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    cfg = RegroupConfig(alpha=alpha, overrides=tuple(overrides.items()))
    explorer = Explorer.open("digits-2task", MIConfig())  # the dashboard's default setup
    assert explorer.trajs.cache_hit
    pam = report["schemes"]["PAM"]
    assert pam["groups_before_pruning"] == {layer: {"+".join(k): len(v) for k, v in g.groups.items()}
                                            for layer, g in explorer.groups(cfg).items()}
    assert pam["flops_before_pruning"] == explorer.predicted_flops(cfg)["PAM"]
    assert report["quick"] and report["config"]["overrides"] == [["conv2", 0.02]]
    assert report["config"]["mi"] == {**MIConfig().__dict__, "profile": "default"}
    # progress: one line per step, fractions never go back, the last is 100 %
    fractions = [float(m) / 100 for m in re.findall(r"\[(\d+)%\]", capsys.readouterr().err)]
    assert len(fractions) >= 8 and fractions == sorted(fractions) and fractions[-1] == 1.0, fractions
    assert len({f for f in fractions if 0 < f < 1}) >= 4  # not stuck at one value through the stage
    progress = json.loads((tmp_path / "run" / "progress.json").read_text())
    assert progress["fraction"] == 1.0 and progress["stages"] == 1


def test_experiment_override_flag_and_config_round_trip(tmp_path):
    from pam_explorer.runs.experiment import ExperimentConfig
    cfg = ExperimentConfig(alpha=0.3, overrides=(("conv1", 0.1),), regroup="paper")
    stored = json.loads(json.dumps({**cfg.__dict__, "overrides": [["conv1", 0.1]]}))  # as config.json has it
    assert ExperimentConfig.from_dict(stored) == cfg
    assert ExperimentConfig.from_dict({"preset": "digits-2task", "prune": "taylor"}).overrides == ()
    layers = [("conv1", "conv"), ("conv2", "conv"), ("fc1", "fc")]
    r = cfg.regroup_config(layers)  # explicit alpha: the profile adds no conv defaults; drop rule kept
    assert r.overrides == (("conv1", 0.1),) and r.both_picked == "drop"
    r = ExperimentConfig(overrides=(("conv1", 0.2),), regroup="paper").regroup_config(layers)
    assert dict(r.overrides) == {"conv1": 0.2, "conv2": 0.01}  # the user's override wins
    assert ExperimentConfig().regroup_config().both_picked == RegroupConfig().both_picked
    with pytest.raises(ConfigError, match="overrides"):
        ExperimentConfig(overrides=(("conv1", -1.0),))
    assert main(["experiment", "--override", "nosuchlayer=0.1", "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_regroup_and_merge_use_the_dashboards_mi_settings(capsys):
    """``regroup`` without MI flags gives the dashboard's groups (MIConfig(), RegroupConfig's rule);
    the Export page's "finetune, then export" job carries every MI setting and the both-picked
    rule through its command line, the paper's included."""
    from pam_explorer.cli.commands import mi_config, regroup_config
    from pam_explorer.cli.parser import build_parser
    from ui.run_args import finetune_export_job

    preset = get_preset("digits-2task")
    assert main(["regroup", "--json"]) == 0
    cfg = RegroupConfig(alpha=preset.default_alpha)
    want = Explorer.open(preset.name, MIConfig()).regroup_report(cfg)
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(want))
    paper = (MIConfig.paper(n_samples=64), RegroupConfig(0.02, (("fc1", 0.1),), both_picked="drop"))
    for mi, regroup in ((MIConfig(), cfg), paper):
        argv = job_spec.argv(finetune_export_job(preset.name, regroup, mi, 2), "RUN")
        args = build_parser().parse_args(argv[3:])
        assert mi_config(args) == mi and regroup_config(args, preset.default_alpha) == regroup


def test_finished_wrappers_are_reaped(tmp_path, monkeypatch):
    """A wrapper the dashboard process started is waited for once it ended: no <defunct> child."""
    monkeypatch.setenv("PAM_JOBS_SELFTEST", "1")
    rid = jobs.submit({"command": "selftest", "args": {"print": "hi"}}, tmp_path)
    jobs.start_next(tmp_path)
    pid = jobs.read_status(rid, tmp_path)["pid"]
    wait_for(tmp_path, rid)
    deadline = time.time() + 10
    while time.time() < deadline:
        jobs.poll(tmp_path)
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            break  # gone: reaped
        assert state != "Z" or time.time() < deadline - 8, "the finished wrapper is a zombie"
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists()


def test_resume_a_failed_run_in_a_new_folder_with_its_results(tmp_path, monkeypatch):
    monkeypatch.setenv("PAM_JOBS_SELFTEST", "1")
    spec = {"command": "selftest", "args": {"report": {"stage": "half done"}, "exit": 3}}
    rid = jobs.submit(spec, tmp_path, name="half")
    jobs.start_next(tmp_path)
    assert wait_for(tmp_path, rid)["state"] == "failed"
    (Path(jobs.read_status(rid, tmp_path)["dir"]) / "stages").mkdir()
    (Path(jobs.read_status(rid, tmp_path)["dir"]) / "stages" / "B1_s0.json").write_text("{}")
    new = jobs.resume(rid, tmp_path)
    st = jobs.read_status(new, tmp_path)
    assert new != rid and st["resumed_from"] == rid and st["job"] == jobs.read_status(rid, tmp_path)["job"]
    assert st["name"] == "half-resumed"
    d = Path(st["dir"])
    assert (d / "stages" / "B1_s0.json").is_file() and json.loads((d / "report.json").read_text())
    assert "resuming run" in jobs.log_tail(new, 5, tmp_path)
    assert jobs.read_status(rid, tmp_path)["state"] == "failed"  # the old run is left as it was
    done = jobs.submit({"command": "selftest", "args": {}}, tmp_path)
    jobs.cancel(new, tmp_path)
    jobs.start_next(tmp_path)
    wait_for(tmp_path, done)
    with pytest.raises(ConfigError, match="only a failed or cancelled run"):
        jobs.resume(done, tmp_path)


def test_train_job_spec_is_allowed_and_never_takes_a_path():
    spec = train_job("digits-inclusion", epochs=3)
    argv = job_spec.argv(spec, "/runs/r1")
    assert argv[3:] == ["train", "--preset", "digits-inclusion", "--epochs", "3", "--device", "auto",
                        "--install", "--out", "/runs/r1"]
    for bad in ({"out": "/etc"}, {"install": "yes"}, {"force": True}, {"preset": "../x"}):
        with pytest.raises(ConfigError):
            job_spec.check({"command": "train", "args": {"preset": "digits-inclusion", **bad}})


def test_train_install_and_the_advice_of_a_missing_preset(tmp_path, monkeypatch, capsys):
    """The error for a preset without networks names a command; that command works (here with
    one short epoch) and so does the dashboard's train job, which installs only where none are."""
    monkeypatch.setenv("PAM_ASSETS_ROOT", str(tmp_path / "assets"))
    preset = get_preset("digits-inclusion")
    with pytest.raises(DataMissing) as missing:
        load_pretrained(preset.name, preset.task_names)
    advice = re.search(r"python -m pam_explorer (train [^;\n]*)", str(missing.value)).group(1).split()
    quick = ["--epochs", "1", "--n-train", "64"]
    assert main([*advice, *quick]) == 0  # the advised command, shortened
    assert has_pretrained(preset.name, preset.task_names)
    # the dashboard's job: into its own folder, installed only where the preset has none
    other = get_preset("digits-related-0")
    assert main(["train", "--preset", other.name, *quick, "--install", "--out", str(tmp_path / "run")]) == 0
    assert has_pretrained(other.name, other.task_names) and (tmp_path / "run" / "A.safetensors").is_file()
    assert json.loads((tmp_path / "run" / "progress.json").read_text())["fraction"] == 1.0
    before = (tmp_path / "assets" / other.name / "A.safetensors").read_bytes()
    capsys.readouterr()
    assert main(["train", "--preset", other.name, *quick, "--install", "--out", str(tmp_path / "run2")]) == 2
    assert "never replaces" in capsys.readouterr().err and not (tmp_path / "run2").exists()
    assert (tmp_path / "assets" / other.name / "A.safetensors").read_bytes() == before


def test_the_cuda_probe_warning_is_not_logged(tmp_path):
    """torch's "No CUDA runtime is found, using CUDA_HOME=..." (machines with a CUDA toolkit and
    no GPU) is dropped; other warnings of that logger are kept."""
    from pam_explorer.core.device import quiet_cuda_probe
    quiet_cuda_probe()
    logger = logging.getLogger("torch.utils.cpp_extension")
    assert not all(f(logging.makeLogRecord({"msg": "No CUDA runtime is found, using CUDA_HOME='/x'"}))
                   for f in logger.filters)
    assert all(f(logging.makeLogRecord({"msg": "something else"})) for f in logger.filters)
    # a real job's log without it: tests/ui/test_app.py (the "finetune, then export" merge job)
