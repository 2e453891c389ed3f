"""THE SLURM TESTS (issue 29; marker ``slurm``): sweeps submitted, run and collected through sbatch on
a real scheduler, the one-node cluster of ``scripts/slurm_local.sh`` (``start`` brings it up).

Each test runs ``python -m pam_explorer sweep --executor slurm`` as a user would, in a fresh process,
and asks Slurm itself (squeue, scontrol) what it ran: a quick sweep through job arrays equals the
same sweep with ``--executor local``; ``--dry-run`` lists exactly the jobs then submitted; the
resources asked for are what scontrol shows; a job held and cancelled is retried once, then
reported with its log while the sweep goes on; a driver killed mid-sweep and rerun re-attaches to
its queued jobs and submits only the missing ones; an unknown partition or a submission sbatch
refuses is an error before anything runs. A "blocker" job holding every CPU keeps the
sweep's jobs queued while a test acts on them.

Without a cluster the tests skip with the script's reason; with ``PAM_REQUIRE_SLURM=1`` (CI, which
starts the cluster) that is a failure. Select them with ``pytest -m slurm`` (about 3.5 minutes on 2
shared cores; BENCHMARKS.md).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pam_explorer.runs.experiment import TIMING_FIELDS
from pam_explorer.runs.slurm_queue import folder_tag
from pam_explorer.runs.sweep_report import TIMING

pytestmark = pytest.mark.slurm
REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "slurm_local.sh"
PARTITION = "cpu"  # the script's one partition
RESOURCES = ["--cpus-per-job", "1", "--mem-gb", "1.5", "--time-min", "7"]


@pytest.fixture(scope="module")
def env() -> dict:
    """The environment that reaches the local cluster; skip (CI: fail) with the script's reason."""
    proc = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        reason = (proc.stdout or proc.stderr).strip()
        if os.environ.get("PAM_REQUIRE_SLURM") == "1":
            pytest.fail(f"PAM_REQUIRE_SLURM=1 but there is no Slurm cluster: {reason}")
        pytest.skip(f"no local Slurm cluster: {reason}")
    conf = Path(os.environ.get("PAM_SLURM_DIR", "/tmp/pam-slurm")) / "slurm.conf"
    return {**os.environ, "SLURM_CONF": str(conf), "OMP_NUM_THREADS": "1"}


def slurm(env: dict, *cmd: str) -> str:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, timeout=60).stdout


def sweep_cmd(out: Path, alphas: str, seeds: str, executor: str = "slurm", *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "pam_explorer", "sweep", "--quick", "--alphas", alphas, "--seeds", seeds,
           "--threads", "1", "--executor", executor, "--out", str(out), *extra]
    return cmd + (["--slurm-partition", PARTITION, *RESOURCES] if executor == "slurm" else ["--workers", "2"])


def run(cmd: list[str], env: dict, cache: Path) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env={**env, "PAM_CACHE_ROOT": str(cache)}, capture_output=True,
                          text=True, timeout=900)
    return proc, time.monotonic() - start


def start(cmd: list[str], env: dict, cache: Path, log: Path) -> subprocess.Popen:
    with open(log, "w") as fh:
        return subprocess.Popen(cmd, cwd=REPO, env={**env, "PAM_CACHE_ROOT": str(cache)}, stdout=fh,
                                stderr=subprocess.STDOUT)


def journal(out: Path) -> list[tuple[str, str]]:
    """(label, Slurm job id) of every job the driver recorded, in order."""
    try:
        raw = json.loads((out / "submitit" / "jobs.json").read_text())
    except (OSError, ValueError):
        return []
    return [(e["label"], e["job_id"]) for e in raw["jobs"]]


def slurm_jobs(env: dict, out: Path) -> dict[str, dict]:
    """{job id: scontrol's fields} of every job Slurm knows with this sweep's comment."""
    tag = folder_tag(out / "submitit")
    found = {}
    for line in slurm(env, "scontrol", "show", "job", "--oneliner").splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if fields.get("Comment") == tag:
            job_id = f"{fields['ArrayJobId']}_{fields['ArrayTaskId']}" if "ArrayTaskId" in fields \
                else fields["JobId"]
            found[job_id] = fields
    return found


def settled(env: dict, out: Path) -> dict[str, dict]:
    """:func:`slurm_jobs` once none is queued or running any more (a job's result can be read
    while Slurm still completes it)."""
    def ended():
        jobs = slurm_jobs(env, out)
        busy = [j for j, f in jobs.items() if f["JobState"] in ("PENDING", "RUNNING", "COMPLETING")]
        return jobs if jobs and not busy else None

    return wait_for("the jobs to end", ended, 60)


def wait_for(what: str, condition, timeout: float = 180.0, proc: subprocess.Popen | None = None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        assert proc is None or proc.poll() is None, f"the driver ended (exit {proc.returncode}) before {what}"
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Blocker:
    """A job holding every CPU of the node, so that the sweep's jobs stay queued until it is released."""

    def __init__(self, env: dict) -> None:
        self.env = env
        cpus = slurm(env, "sinfo", "--noheader", "--Node", "--format=%c").split()[0]
        self.job_id = slurm(env, "sbatch", "--parsable", f"--partition={PARTITION}",
                            f"--cpus-per-task={cpus}", "--mem=100M", "--job-name=pam-test-blocker",
                            "--output=/dev/null", "--wrap=sleep 600").strip()
        wait_for("the blocker to run", lambda: self.state() == "RUNNING", 60)

    def state(self) -> str:
        return slurm(self.env, "squeue", "--noheader", "--states=all", f"--jobs={self.job_id}",
                     "--format=%T").strip()

    def release(self) -> None:
        subprocess.run(["scancel", self.job_id], env=self.env, timeout=60)


@pytest.fixture()
def blocker(env):
    b = Blocker(env)
    yield b
    b.release()


def untimed(obj):
    if isinstance(obj, dict):
        return {k: untimed(v) for k, v in obj.items() if k not in TIMING_FIELDS and k not in TIMING}
    if isinstance(obj, list):
        return [untimed(v) for v in obj]
    return obj


# --------------------------------------------------------------------------- the quick sweep
@pytest.fixture(scope="module")
def quick(env, tmp_path_factory):
    """A quick sweep (2 alphas x 2 seeds) on Slurm from an empty cache, its dry run first; then the
    same sweep with the local executor, from the Slurm run's MI trajectories but no stage."""
    root = tmp_path_factory.mktemp("slurm-quick")
    out = root / "slurm"
    dry, _ = run(sweep_cmd(out, "0.01,0.5", "0,1", "slurm", "--dry-run", "--json"), env, root / "cache")
    proc, seconds = run(sweep_cmd(out, "0.01,0.5", "0,1"), env, root / "cache")
    shutil.copytree(root / "cache" / "trajectories", root / "cache2" / "trajectories")
    local, local_seconds = run(sweep_cmd(root / "local", "0.01,0.5", "0,1", "local"), env, root / "cache2")
    print(f"quick sweep: slurm {seconds:.1f} s (9 jobs), local {local_seconds:.1f} s (8 jobs)")
    return {"root": root, "out": out, "dry": dry, "proc": proc, "local": local}


def test_quick_sweep_through_sbatch_arrays_equals_local(quick, env):
    proc, local = quick["proc"], quick["local"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert local.returncode == 0, local.stderr[-3000:]
    a = json.loads((quick["out"] / "sweep.json").read_text())
    b = json.loads((quick["root"] / "local" / "sweep.json").read_text())
    assert a["complete"] and a["execution"]["executor"] == "slurm" and b["execution"]["executor"] == "local"
    assert [p["alpha"] for p in a["points"]] == [0.01, 0.5] and a["seeds"] == [0, 1]
    assert untimed(a["points"]) == untimed(b["points"])
    assert untimed(a["baselines"]) == untimed(b["baselines"])
    assert (a["frontier"], a["recommended"]) == (b["frontier"], b["recommended"])
    jobs = settled(env, quick["out"])
    ids = [j for _, j in journal(quick["out"])]
    assert sorted(jobs) == sorted(ids) and len(ids) == 9
    assert all(jobs[j]["JobState"] == "COMPLETED" and jobs[j]["JobName"] == "pam-sweep" for j in ids)
    # job arrays: the trajectories and baselines in one, the points (after the trajectories) in another
    assert len({j.split("_")[0] for j in ids}) == 2 and all("_" in j for j in ids)


def test_dry_run_lists_exactly_the_jobs_then_submitted(quick, env):
    dry = quick["dry"]
    assert dry.returncode == 0, dry.stderr[-3000:]
    plan = json.loads(dry.stdout)
    assert plan["missing"] is None and plan["resources"]["partition"] == PARTITION
    planned = sorted(r["job"] for r in plan["jobs"])
    submitted = sorted(label for label, _ in journal(quick["out"]))
    assert planned == submitted and len(set(submitted)) == len(submitted)
    assert len(slurm_jobs(env, quick["out"])) == len(planned)  # Slurm ran these and no others


def megabytes(text: str) -> float:
    """scontrol's memory ("1536M", "1.50G") in MB."""
    return float(text[:-1]) * {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 ** 2}[text[-1]]


def test_resources_asked_for_appear_in_scontrol(quick, env):
    jobs = slurm_jobs(env, quick["out"])
    assert jobs
    for fields in jobs.values():
        assert fields["NumCPUs"] == "1" and fields["CPUs/Task"] == "1"
        assert megabytes(fields["MinMemoryNode"]) == 1536  # --mem-gb 1.5 (scontrol writes "1.50G")
        assert fields["TimeLimit"] == "00:07:00"  # --time-min 7
        assert fields["Partition"] == PARTITION


# --------------------------------------------------------------------------- failures and restarts
def test_held_then_cancelled_job_is_retried_once_then_reported(env, tmp_path, blocker):
    out, target = tmp_path / "sweep", "PAM_a0.1_s0"
    driver = start(sweep_cmd(out, "0.1", "0"), env, tmp_path / "cache", tmp_path / "driver.log")
    cancelled = []
    for attempt in (1, 2):
        job_id = wait_for(f"attempt {attempt} of {target}", lambda: next(
            (j for label, j in journal(out) if label == target and j not in cancelled), None), proc=driver)
        slurm(env, "scontrol", "hold", job_id)
        assert "JobHeldAdmin" in slurm(env, "squeue", "--noheader", f"--jobs={job_id.split('_')[0]}",
                                       "--array", "--format=%i %r")
        slurm(env, "scancel", job_id)
        cancelled.append(job_id)
    blocker.release()
    assert driver.wait(300) == 2
    log = (tmp_path / "driver.log").read_text()
    assert f"1 job(s) failed twice: {target} (Slurm job {cancelled[1]} ended CANCELLED (JobHeldAdmin)" in log
    note = out / "submitit" / cancelled[1] / f"{cancelled[1]}_0_log.err"
    assert f"; log {note})" in log and "CANCELLED" in note.read_text()
    points = {p["label"]: p for p in json.loads((out / "points.json").read_text())["points"]}
    assert (points[target]["state"], points[target]["attempts"]) == ("failed", 2)
    assert all(points[b]["state"] == "done" for b in ("B1_s0", "B2_s0"))  # the sweep went on
    sweep = json.loads((out / "sweep.json").read_text())
    assert set(sweep["baselines"]) == {"B1", "B2"} and [f["label"] for f in sweep["failed"]] == [target]
    jobs = settled(env, out)
    assert [jobs[j]["JobState"] for j in cancelled] == ["CANCELLED", "CANCELLED"]
    assert sorted(label for label, _ in journal(out)) == ["B1_s0", "B2_s0", target, target]


def test_killed_driver_rerun_reattaches_and_submits_only_the_missing_jobs(env, tmp_path, blocker):
    """Killed while its first array waits (the points are submitted after the trajectories): the
    rerun's dry run and the rerun itself re-attach to those jobs and submit only the points."""
    out, cache = tmp_path / "sweep", tmp_path / "cache"
    cmd = sweep_cmd(out, "0.1", "1")  # seed 1: its MI trajectories are computed by a job first
    first = start(cmd, env, cache, tmp_path / "first.log")
    queued = wait_for("the first array", lambda: len(journal(out)) == 3, proc=first)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    before = journal(out)
    assert queued and sorted(label for label, _ in before) == ["B1_s1", "B2_s1", "traj_s1"]

    dry, _ = run(cmd + ["--dry-run", "--json"], env, cache)
    rows = {r["job"]: r for r in json.loads(dry.stdout)["jobs"]}
    assert {k: r.get("slurm_job") for k, r in rows.items() if r.get("slurm_job")} == dict(before)
    assert [k for k, r in rows.items() if not r.get("slurm_job")] == ["PAM_a0.1_s1"]

    second = start(cmd, env, cache, tmp_path / "second.log")
    wait_for("the re-attach", lambda: "re-attached to" in (tmp_path / "second.log").read_text(), proc=second)
    blocker.release()
    assert second.wait(300) == 0, (tmp_path / "second.log").read_text()[-3000:]
    after = journal(out)
    assert after[:3] == before and [label for label, _ in after[3:]] == ["PAM_a0.1_s1"]
    jobs = settled(env, out)
    assert sorted(jobs) == sorted(j for _, j in after)  # each job submitted once, none twice
    assert all(f["JobState"] == "COMPLETED" for f in jobs.values())
    sweep = json.loads((out / "sweep.json").read_text())
    assert sweep["complete"] and sweep["points"][0]["seeds"] == [1]


def test_an_unknown_partition_or_a_refused_submission_is_an_error_and_nothing_runs(env, tmp_path):
    """sinfo's partitions are checked before anything is computed; sbatch refusing the resources
    (more memory than the node has) stops the driver with sbatch's reason."""
    proc, _ = run(sweep_cmd(tmp_path / "a", "0.1", "0") + ["--slurm-partition", "nosuch"], env,
                  tmp_path / "cache")  # the last --slurm-partition counts
    assert proc.returncode == 2 and "error: --slurm-partition 'nosuch' is not a partition of this cluster; " \
        f"sinfo lists ['{PARTITION}'] (nothing was computed)" in proc.stderr
    proc, _ = run(sweep_cmd(tmp_path / "b", "0.1", "0") + ["--mem-gb", "100000"], env, tmp_path / "cache")
    assert proc.returncode == 2 and "error: sbatch refused 3 job(s): " in proc.stderr
    assert "Memory specification can not be satisfied" in proc.stderr
    assert journal(tmp_path / "b") == []
    refused = slurm_jobs(env, tmp_path / "b").values()  # Slurm keeps a record of the refused array
    assert [(f["JobState"], f["Reason"], f["RunTime"]) for f in refused] == [("FAILED", "BadConstraints",
                                                                              "00:00:00")]
