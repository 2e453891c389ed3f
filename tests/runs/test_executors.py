"""Executors and the scheduler (runs/executors.py, runs/slurm.py, runs/scheduler.py) on tiny tasks
defined here: one retry then a report with the log, a killed worker failing only its own task, tasks added as
others finish, the ETA, and what is missing for Slurm."""
from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from pam_explorer.core.errors import ConfigError
from pam_explorer.runs import executors as ex
from pam_explorer.runs import scheduler, slurm


@dataclass(frozen=True)
class Work:
    name: str
    fail_times: int = 0  # raise on the first N attempts (counted in a file, so across processes)
    kill: bool = False  # SIGKILL its own process on every attempt
    sleep: float = 0.0


@ex.task("test-work")
def work(cfg: Work, out: Path) -> dict:
    marker = out / f"{cfg.name}.attempts"
    n = int(marker.read_text()) + 1 if marker.exists() else 1
    marker.write_text(str(n))
    print(f"work {cfg.name} attempt {n}", flush=True)
    if cfg.kill:
        os.kill(os.getpid(), signal.SIGKILL)
    if n <= cfg.fail_times:
        raise RuntimeError(f"{cfg.name} fails on attempt {n}")
    time.sleep(cfg.sleep)
    return {"name": cfg.name, "pid": os.getpid()}


def tasks(out: Path, *works: Work) -> list[ex.Task]:
    return [ex.Task.make("test-work", w, out, w.name, kind="w") for w in works]


def by_label(jobs):
    return {j.task.label: j for j in jobs}


def test_a_failed_task_is_retried_once_then_reported_with_its_log(tmp_path):
    jobs = scheduler.run_all(ex.InlineExecutor(tmp_path / "logs"), tasks(
        tmp_path, Work("ok"), Work("flaky", fail_times=1), Work("broken", fail_times=9)), poll_s=0)
    j = by_label(jobs)
    assert (j["ok"].state, j["ok"].attempts) == ("done", 1)
    assert (j["flaky"].state, j["flaky"].attempts) == ("done", 2)
    assert (j["broken"].state, j["broken"].attempts) == ("failed", 2)
    assert "broken fails on attempt 2" in j["broken"].message
    assert "RuntimeError" in Path(j["broken"].log).read_text()
    assert (tmp_path / "broken.attempts").read_text() == "2"  # never a third attempt
    assert j["ok"].result["name"] == "ok" and j["ok"].seconds >= 0


def test_on_done_adds_tasks_in_order(tmp_path):
    seen = []

    def more(job):
        seen.append(job.task.label)
        return tasks(tmp_path, Work("later")) if job.task.label == "first" else []

    start = tasks(tmp_path, Work("first"), Work("second"))
    jobs = scheduler.run_all(ex.InlineExecutor(tmp_path / "logs"), start, on_done=more, poll_s=0)
    assert [j.task.label for j in jobs] == ["first", "second", "later"]
    assert seen == ["first", "second", "later"] and all(j.state == "done" for j in jobs)


def test_eta_per_kind_over_the_workers(tmp_path):
    def job(kind, state, seconds=None, started=None):
        j = scheduler.Job(ex.Task("test-work", __name__, Work("x"), str(tmp_path), "x", kind))
        j.state, j.seconds, j.started = state, seconds, started
        return j

    jobs = [job("B", "done", 10.0), job("P", "done", 2.0), job("P", "done", 4.0),
            job("B", "pending"), job("P", "pending"), job("P", "running", started=100.0)]
    # left: B 10 + P 3 + running P max(0, 3 - 1) = 15 s of work over 2 workers
    assert scheduler.eta_seconds(jobs, capacity=2, now=101.0) == pytest.approx(7.5)
    assert scheduler.eta_seconds(jobs[3:], capacity=2) is None  # nothing finished yet
    assert scheduler.eta_seconds(jobs[:3], capacity=2) == 0.0
    assert scheduler.progress_line(jobs, 2).startswith("3/6 done, 1 running, 0 failed; ETA")


def test_local_pool_a_killed_worker_fails_only_its_task(tmp_path):
    """Real worker processes: the killer's process dies by SIGKILL on both attempts; the other
    tasks finish in the pool (a fresh worker replaces the dead one) with their output in logs."""
    pool = ex.LocalExecutor(workers=2, threads=1, log_dir=tmp_path / "logs")
    try:
        jobs = scheduler.run_all(pool, tasks(tmp_path, Work("killer", kill=True), Work("a"),
                                             Work("c", fail_times=1)), poll_s=0.05)
    finally:
        pool.close()
    j = by_label(jobs)
    assert j["killer"].state == "failed" and j["killer"].attempts == 2
    assert "killed by signal 9 (SIGKILL)" in j["killer"].message
    assert "work killer attempt 2" in Path(j["killer"].log).read_text()
    assert all(j[n].state == "done" for n in "ac") and j["c"].attempts == 2
    assert "work a attempt 1" in (tmp_path / "logs" / "a.log").read_text()
    assert j["a"].result["pid"] != os.getpid()  # ran in a worker process
    assert not pool._busy and not pool._idle  # closed


def test_submitit_local_reports_success_and_failure(tmp_path):
    runner = slurm.SubmititExecutor("local", tmp_path / "submitit", slurm.Resources(time_min=5), workers=2,
                                 threads=1)
    jobs = scheduler.run_all(runner, tasks(tmp_path, Work("ok"), Work("broken", fail_times=9)),
                             max_attempts=1, poll_s=0.1)
    j = by_label(jobs)
    assert j["ok"].state == "done" and j["ok"].result["name"] == "ok" and j["ok"].result["pid"] != os.getpid()
    assert j["broken"].state == "failed" and "broken fails on attempt 1" in j["broken"].message
    assert Path(j["broken"].log).is_file()


def test_missing_submitit_or_sbatch_is_named(monkeypatch):
    monkeypatch.setattr(slurm.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="sbatch"):
        slurm.check_executor("slurm")
    slurm.check_executor("submitit-local")  # needs no sbatch
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit -> ImportError
    for kind in ("slurm", "submitit-local"):
        with pytest.raises(ConfigError, match="pip install submitit"):
            slurm.check_executor(kind)
    with pytest.raises(ConfigError, match="--executor"):
        slurm.check_executor("mpi")


def test_slurm_resources_reach_the_sbatch_script(monkeypatch, tmp_path):
    monkeypatch.setattr(slurm.shutil, "which", lambda name: f"/usr/bin/{name}")
    res = slurm.Resources(partition="gpu", gpus_per_job=1, cpus_per_job=4, mem_gb=16, time_min=30)
    runner = slurm.SubmititExecutor("slurm", tmp_path / "submitit", res, workers=3, threads=4)
    script = runner._ex._executor._make_submission_file_text("CMD", "uid")
    for line in ("--partition=gpu", "--gpus-per-node=1", "--cpus-per-task=4", "--mem=16GB", "--time=30"):
        assert f"#SBATCH {line}" in script
    assert runner._ex._executor.parameters["array_parallelism"] == 3 and runner.capacity is None
    with pytest.raises(ConfigError, match="Resources.gpus_per_job"):
        slurm.Resources(gpus_per_job=-1)


class _StepExecutor:
    """Two slots; one scheduler pass finishes at most the oldest running task (no processes)."""

    capacity = 2

    def __init__(self) -> None:
        self.live: list = []
        self.armed = False

    def submit(self, batch):
        handles = []
        for t in batch:
            handle = _StepHandle(self, t)
            self.live.append(handle)
            handles.append(handle)
        return handles


class _StepHandle:
    def __init__(self, pool: _StepExecutor, t) -> None:
        self.pool, self.t = pool, t

    def poll(self):
        if not self.pool.live or self.pool.live[0] is not self:
            return None
        if not self.pool.armed:  # the oldest finishes at its second poll: one per scheduler pass
            self.pool.armed = True
            return None
        self.pool.armed = False
        self.pool.live.pop(0)
        return ex.Outcome(True, "", {}, 1.0, "")

    def cancel(self) -> None:
        pass


def test_progress_is_reported_after_the_free_slot_is_refilled(tmp_path):
    """Each report after a finished job counts the job that took its slot as running."""
    seen = []
    scheduler.run_all(_StepExecutor(), tasks(tmp_path, *(Work(str(i)) for i in range(5))),
                      on_change=lambda jobs: seen.append(sum(j.state == "running" for j in jobs)), poll_s=0)
    assert seen == [2, 2, 2, 2, 1, 0]
