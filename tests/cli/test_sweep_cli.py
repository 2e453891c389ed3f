"""`sweep` bad input through the CLI: exit 2, a one-line error naming the problem, before any
computing (the sweep driver is replaced by a function that fails the test if called), nothing
created or changed. And the dry run: jobs with alpha, seed and resources, nothing written."""
from __future__ import annotations

import dataclasses
import json
import sys

import pytest

from pam_explorer.cli import main
from pam_explorer.runs import outdir, slurm, sweep
from pam_explorer.runs.sweep import SweepConfig


@pytest.fixture()
def no_compute(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("the sweep started computing")

    monkeypatch.setattr(sweep, "_Sweep", boom)


def run(args, capsys) -> tuple[int, str]:
    code = main(["sweep", "--quick", *args])
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize("alphas, says", [("0.1,-0.2", "-0.2"), ("0.1,nan", "nan"), ("inf", "inf"),
                                          ("0.1,x", "--alphas expects"), (",", "at least one")])
def test_bad_alphas(no_compute, tmp_path, capsys, alphas, says):
    code, err = run(["--alphas", alphas, "--out", str(tmp_path / "s")], capsys)
    assert code == 2 and err.startswith("error:") and says in err and len(err.splitlines()) == 1
    assert "finite numbers >= 0" in err or "--alphas" in err
    assert not (tmp_path / "s").exists()


def test_missing_sbatch_or_submitit_is_named(no_compute, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(slurm.shutil, "which", lambda name: None)
    code, err = run(["--executor", "slurm", "--out", str(tmp_path / "s")], capsys)
    assert code == 2 and "sbatch" in err and "not on PATH" in err
    monkeypatch.setitem(sys.modules, "submitit", None)
    for kind in ("slurm", "submitit-local"):
        code, err = run(["--executor", kind, "--out", str(tmp_path / "s")], capsys)
        assert code == 2 and "needs submitit" in err and "pip install submitit" in err
    assert not (tmp_path / "s").exists()


def test_a_folder_of_another_configuration(no_compute, tmp_path, capsys):
    out = tmp_path / "s"
    out.mkdir()
    stored = dataclasses.asdict(SweepConfig(quick=True, alphas=(0.1,)))
    (out / outdir.MARKER).write_text(json.dumps({"command": "sweep", "config": stored}))
    before = (out / outdir.MARKER).read_text()
    code, err = run(["--alphas", "0.2", "--out", str(out)], capsys)
    assert code == 2 and "another configuration" in err and "alphas" in err
    assert (out / outdir.MARKER).read_text() == before and sorted(p.name for p in out.iterdir()) == [
        outdir.MARKER]
    exp = tmp_path / "e"
    exp.mkdir()
    (exp / outdir.MARKER).write_text(json.dumps({"command": "experiment", "config": {}}))
    code, err = run(["--out", str(exp)], capsys)
    assert code == 2 and "results of `experiment`" in err


@pytest.mark.parametrize("mix, says", [("A=0.5,C=0.5", "unknown task"), ("A=0.7,B=0.7", "sum to 1"),
                                       ("A=-1,B=2", ">= 0"), ("A", "SUBSET=PROBABILITY")])
def test_bad_mix(no_compute, tmp_path, capsys, mix, says):
    code, err = run(["--mix", mix, "--out", str(tmp_path / "s")], capsys)
    assert code == 2 and says in err and not (tmp_path / "s").exists()


def test_dry_run_lists_jobs_and_resources_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PAM_CACHE_ROOT", str(tmp_path / "cache"))  # nothing cached, but the shipped
    # trajectories (seed 0 of the default MI profile, on the networks' own data) are read
    monkeypatch.setattr(slurm.shutil, "which", lambda name: None)
    out = tmp_path / "s"
    code = main(["sweep", "--quick", "--alphas", "0.05,0.5", "--seeds", "0,1", "--executor", "slurm",
                 "--slurm-partition", "gpu", "--gpus-per-job", "1", "--mem-gb", "4", "--dry-run",
                 "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0 and not out.exists() and not (tmp_path / "cache").exists()
    assert "partition gpu" in text and "gpus_per_job 1" in text and "mem_gb 4.0" in text
    assert "note: --executor slurm needs Slurm's sbatch" in text
    for job in ("traj_s1", "B1_s1", "B2_s0", "PAM_a0.05_s1", "PAM_a0.5_s0"):
        assert job in text
    assert "traj_s0" not in text  # seed 0's trajectories ship with the committed networks
    assert "seed 1 alpha 0.05" in text and "after the trajectory jobs" in text
    assert "9 job(s) would be submitted:" in text  # 1 trajectory job + 2 x (B1, B2) + 2 x 2 points
    code = main(["sweep", "--quick", "--alphas", "auto", "--seeds", "0,1", "--dry-run", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0 and not out.exists() and "alpha auto" in text
    assert "5 job(s) would be submitted (+ the PAM points, planned after the trajectories):" in text
