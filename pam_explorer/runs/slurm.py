"""The submitit executors and the cluster's resources (STYLE §9): ``submitit-local`` and ``slurm``.

:class:`SubmititExecutor` is submitit's ``AutoExecutor`` with ``cluster="local"`` (each task a local
process, started through submitit's own code path) or ``cluster="slurm"`` (tasks go to ``sbatch``;
several at once as one job array named ``pam-sweep``, at most ``workers`` running, logs and pickles
under the submitit folder). submitit is imported only here. Its handles give the same
:class:`Outcome` as the local executor's (runs/executors.py).

A job's result comes back as JSON (``<job folder>/result.json``, written by :func:`run_task_json`
in the job), never by loading submitit's result pickle: a pickle in a folder someone else can
write could run code in the driver. On Slurm a job is done when that file exists; one that Slurm
reports ended without one
(cancelled, timed out, killed) fails with that state and its log (:mod:`.slurm_queue` asks
squeue, which needs no accounting database). Every job id is recorded in the folder's jobs.json,
and a driver started again on the same folder re-attaches to its jobs still queued or running.
Any command runs its tasks here the same way: ``@task``-registered functions, a
``SubmititExecutor("slurm", DIR / "submitit", resources, workers, threads)``, then
``scheduler.run_all(executor, tasks, ...)``; re-attaching needs only the same folder and labels.

:func:`check_executor` says what is missing (submitit, ``sbatch``, the partition) before anything
is computed.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pam_explorer.core import validate
from pam_explorer.core.errors import ConfigError
from pam_explorer.runs import slurm_queue
from pam_explorer.runs.executors import EXECUTORS, Handle, Outcome, Task, one_line, run_task

JOB_NAME = "pam-sweep"  # the sweep's jobs' Slurm name (scancel --name pam-sweep)
GRACE_S = 15.0  # how long a job Slurm reports ended may take to show its result file (submitit's wait)


@dataclass(frozen=True)
class Resources:
    """What one job asks a cluster for (Slurm); ``time_min`` also bounds submitit-local jobs."""

    partition: str | None = None  # Slurm partition (None: the cluster's default)
    gpus_per_job: int = 0
    cpus_per_job: int = 1
    mem_gb: float = 8.0
    time_min: int = 120  # wall-clock limit per job, minutes

    def __post_init__(self) -> None:
        if self.partition is not None and not (isinstance(self.partition, str) and self.partition):
            validate.fail(self, "partition", f"must be a partition name, got {self.partition!r}")
        validate.non_negative_int(self, "gpus_per_job")
        validate.positive_int(self, "cpus_per_job")
        validate.finite_positive(self, "mem_gb")
        validate.positive_int(self, "time_min")

    def slurm_parameters(self) -> dict:
        """submitit AutoExecutor parameters for Slurm."""
        params = {"timeout_min": self.time_min, "gpus_per_node": self.gpus_per_job, "nodes": 1,
                  "tasks_per_node": 1, "cpus_per_task": self.cpus_per_job, "mem_gb": self.mem_gb}
        if self.partition:
            params["slurm_partition"] = self.partition
        return params


class _SubmititHandle:
    """A submitit-local job: submitit's own ``done()`` (the process has ended)."""

    def __init__(self, job: Any, t: Task) -> None:
        self.job, self.task = job, t

    def poll(self) -> Outcome | None:
        if not self.job.done():
            return None
        return _result(self.job)

    def cancel(self) -> None:
        with contextlib.suppress(Exception):
            self.job.cancel(check=False)


RESULT_FILE = "result.json"


def run_task_json(t: Task, threads: int | None = None) -> dict:
    """:func:`run_task` inside a submitit job, its result (or its failure, one line) written as
    JSON into the job's folder for the driver to read (:func:`_result`); re-raises a failure."""
    import submitit

    out = Path(submitit.JobEnvironment().paths.folder) / RESULT_FILE
    try:
        result = run_task(t, threads)
    except BaseException as exc:
        out.write_text(json.dumps({"ok": False, "message": one_line(exc)}))
        raise
    out.write_text(json.dumps({"ok": True, "result": result}))
    return result


def _result_path(job: Any) -> Path:
    return Path(job.paths.folder) / RESULT_FILE


def _result(job: Any) -> Outcome:
    """The job's Outcome from its result JSON (plain data: nothing in it can run)."""
    log = str(job.paths.stderr)
    try:
        data = json.loads(_result_path(job).read_text())
    except (OSError, ValueError) as exc:
        return Outcome(False, f"job {job.job_id} ended without a readable result ({one_line(exc)})", log=log)
    if not isinstance(data, dict) or not isinstance(data.get("result", {}), dict):
        return Outcome(False, f"job {job.job_id}: {RESULT_FILE} holds no result object", log=log)
    if not data.get("ok"):
        return Outcome(False, str(data.get("message", "failed")), log=log)
    result = data["result"]
    seconds = result.get("seconds")
    return Outcome(True, "", result, seconds if isinstance(seconds, (int, float)) else None, log)


class _SlurmHandle:
    """A Slurm job: done when its result JSON exists (no Slurm call), failed when Slurm says it
    ended without one (after ``GRACE_S`` for a shared filesystem to show the file; at once when
    it was cancelled)."""

    def __init__(self, job: Any, t: Task, queue: slurm_queue.SlurmQueue) -> None:
        self.job, self.task, self.queue = job, t, queue
        self.ended: float | None = None

    @property
    def job_id(self) -> str:
        return str(self.job.job_id)

    def poll(self) -> Outcome | None:
        if _result_path(self.job).exists():
            return _result(self.job)
        info = self.queue.info(self.job_id)
        if info is None or info.active:
            return None
        self.ended = self.ended or time.monotonic()
        if info.state != "CANCELLED" and time.monotonic() - self.ended < GRACE_S:
            return None
        if info.state == slurm_queue.GONE:
            what = f"Slurm job {self.job_id} is no longer listed by squeue and left no result"
        else:
            reason = f" ({info.reason})" if info.reason not in ("", "None") else ""
            what = f"Slurm job {self.job_id} ended {info.state}{reason} without a result"
        return Outcome(False, what, log=self._log(what))

    def _log(self, what: str) -> str:
        """The job's stderr file; when the job never wrote one (it never started), a note there."""
        path = Path(self.job.paths.stderr)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"== {self.task.label}: {what}; the job never started (no output).\n")
        return str(path)

    def cancel(self) -> None:
        with contextlib.suppress(Exception):
            self.job.cancel(check=False)


class SubmititExecutor:
    """submitit's AutoExecutor; ``cluster`` "local" or "slurm".

    On Slurm, every job's id is recorded in ``folder``/jobs.json (:class:`slurm_queue.Journal`),
    and a task whose latest recorded job is still queued or running is re-attached to it, not
    submitted again (a driver restarted on the same folder); ``say`` reports re-attached jobs.
    ``name``: the jobs' Slurm name (``scancel --name``)."""

    def __init__(self, cluster: str, folder: Path, resources: Resources, workers: int | None,
                 threads: int, say: Callable[[str], None] | None = None, name: str = JOB_NAME) -> None:
        check_executor("slurm" if cluster == "slurm" else "submitit-local")
        import submitit

        self.kind = "slurm" if cluster == "slurm" else "submitit-local"
        self.threads, self.say = threads, say or (lambda _: None)
        self._folder = Path(folder) / "%j"
        self._ex = submitit.AutoExecutor(folder=str(self._folder), cluster=cluster)
        if cluster == "slurm":
            self.journal = slurm_queue.Journal(folder)
            self.queue = slurm_queue.SlurmQueue()
            self._ex.update_parameters(name=name, slurm_array_parallelism=workers or 256,
                                       slurm_comment=self.journal.tag, **resources.slurm_parameters())
            self.capacity = None  # every ready task goes in at once, as one array
        else:
            self._ex.update_parameters(name=name, timeout_min=resources.time_min)
            self.capacity = workers  # submitit's local executor starts whatever it is given

    def submit(self, tasks: Sequence[Task]) -> list[Handle]:
        if not tasks:
            return []
        if self.kind != "slurm":
            return [_SubmititHandle(j, t) for j, t in zip(self._submit(tasks), tasks)]
        found = slurm_queue.attachable(self.journal, [t.label for t in tasks])
        fresh = [t for t in tasks if t.label not in found]
        jobs = dict(zip((t.label for t in fresh), self._submit(fresh)))
        self.journal.add([(label, str(j.job_id)) for label, j in jobs.items()])
        if found:
            self.say("re-attached to " + ", ".join(f"{label} (Slurm job {i.job_id}, {i.state.lower()})"
                                                   for label, i in found.items()))
        import submitit

        handles: list[Handle] = []
        for t in tasks:
            info = found.get(t.label)
            job = jobs[t.label] if info is None else submitit.SlurmJob(str(self._folder), info.job_id)
            self.queue.watch(str(job.job_id), info)
            handles.append(_SlurmHandle(job, t, self.queue))
        return handles

    def _submit(self, tasks: Sequence[Task]) -> list[Any]:
        if not tasks:
            return []
        if self.kind != "slurm":
            return [self._ex.submit(run_task_json, t, self.threads) for t in tasks]
        try:
            with self._ex.batch() if len(tasks) > 1 else contextlib.nullcontext():
                jobs = [self._ex.submit(run_task_json, t, self.threads) for t in tasks]
        except Exception as exc:  # sbatch's refusal, as submitit raises it
            raise ConfigError(f"sbatch refused {len(tasks)} job(s): {one_line(exc)}; finished stages are "
                              "kept: fix the resources and rerun the same command") from None
        return jobs

    def close(self) -> None:
        pass


def check_executor(kind: str, partition: str | None = None) -> None:
    """ConfigError naming what ``kind`` needs and this machine lacks (submitit, sbatch, on Slurm
    the ``partition`` when sinfo answers and does not list it)."""
    if kind not in EXECUTORS:
        raise ConfigError(f"--executor must be one of {list(EXECUTORS)}, got {kind!r}")
    if kind == "local":
        return
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise ConfigError(f"--executor {kind} needs submitit, which is not installed: "
                          "pip install submitit (nothing was computed)") from None
    if kind == "slurm" and shutil.which("sbatch") is None:
        raise ConfigError("--executor slurm needs Slurm's sbatch, which is not on PATH: run the sweep on "
                          "a node that submits Slurm jobs (a login node), or use --executor local "
                          "(nothing was computed)")
    known = slurm_queue.partitions() if kind == "slurm" and partition else []
    if known and partition not in known:
        raise ConfigError(f"--slurm-partition {partition!r} is not a partition of this cluster; sinfo "
                          f"lists {known} (nothing was computed)")


__all__ = ["Resources", "SubmititExecutor", "check_executor", "JOB_NAME"]
