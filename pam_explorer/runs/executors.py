"""Executors: run tasks in other processes, here or on a Slurm cluster (STYLE §9).

A :class:`Task` is (registered function name, frozen config, out dir): picklable, it ships names,
paths and configs, never tensors. A function becomes a task with ``@task("name")``; it takes
``(config, out: Path)`` and returns a small JSON-able dict. :func:`run_task` is what every
executor calls in the worker: it sets the torch thread count, runs the function and times it.

Executors submit tasks and hand back handles whose ``poll()`` gives None while the task runs,
then an :class:`Outcome` (ok or not, message, the function's result, seconds, log file):

* :class:`LocalExecutor` (``local``): a pool of ``workers`` long-lived worker processes, forked
  from multiprocessing's fork server (nothing of the driver's state is inherited; the server has
  imported the package once). A worker runs one task at a time, its stdout/stderr going to the
  task's log file, with the driver's ``PAM_*`` environment. A worker that dies (killed, out of
  memory) fails only its own task; the next task gets a fresh worker.
* :class:`SubmititExecutor` (``submitit-local`` / ``slurm``): submitit's ``AutoExecutor`` with
  ``cluster="local"`` (each task a local process, started through submitit's own code path) or
  ``cluster="slurm"`` (tasks go to ``sbatch``; several at once as one job array, at most
  ``workers`` running, logs and pickles under the submitit folder). submitit is imported only here.
* :class:`InlineExecutor`: in this process, one at a time (tests and debugging).

:func:`check_executor` says what is missing (submitit, ``sbatch``) before anything is computed.
"""
from __future__ import annotations

import contextlib
import importlib
import multiprocessing as mp
import os
import re
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pam_explorer.core import validate
from pam_explorer.core.errors import ConfigError

EXECUTORS = ("local", "submitit-local", "slurm")
ENV_PREFIX = "PAM_"  # environment variables a local worker takes from the driver with each task
TaskFn = Callable[[Any, Path], dict]
_TASKS: dict[str, TaskFn] = {}


def task(name: str) -> Callable[[TaskFn], TaskFn]:
    """Register ``fn(config, out) -> dict`` as the task ``name``."""
    def register(fn: TaskFn) -> TaskFn:
        if _TASKS.get(name, fn) is not fn:
            raise ConfigError(f"task {name!r} is already registered")
        _TASKS[name] = fn
        return fn
    return register


@dataclass(frozen=True)
class Task:
    """One unit of work: the registered function ``fn`` (defined in ``module``) on ``config``,
    writing into ``out``. ``label`` names it in logs and progress, ``kind`` groups it for the ETA."""

    fn: str
    module: str
    config: Any
    out: str
    label: str
    kind: str = ""

    @classmethod
    def make(cls, fn: str, config: Any, out: str | Path, label: str, kind: str = "") -> Task:
        if fn not in _TASKS:
            raise ConfigError(f"unknown task {fn!r}; registered: {sorted(_TASKS)}")
        return cls(fn, _TASKS[fn].__module__, config, str(out), label, kind)


@dataclass(frozen=True)
class Outcome:
    """How a task ended: ``ok``, a one-line ``message`` when not, the function's ``result``,
    the seconds it ran (in the worker) and its log file."""

    ok: bool
    message: str = ""
    result: dict = field(default_factory=dict)
    seconds: float | None = None
    log: str = ""


class Handle(Protocol):
    def poll(self) -> Outcome | None: ...

    def cancel(self) -> None: ...


def run_task(t: Task, threads: int | None = None) -> dict:
    """Run ``t`` here: the result of its function plus ``"seconds"``. Raises what it raises."""
    if threads:
        import torch  # the worker's thread count; torch is imported by every task anyway

        torch.set_num_threads(threads)
    importlib.import_module(t.module)  # registers the function
    fn = _TASKS.get(t.fn)
    if fn is None:
        raise ConfigError(f"task {t.fn!r} is not registered by {t.module}")
    start = time.perf_counter()
    result = dict(fn(t.config, Path(t.out)) or {})
    return {**result, "seconds": round(time.perf_counter() - start, 3)}


_RAISED = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*")


def _one_line(exc: BaseException) -> str:
    """The exception as one line; for a wrapped traceback (submitit's FailedJobError), its last
    "SomeError: message" line."""
    lines = [ln.strip() for ln in f"{type(exc).__name__}: {exc}".splitlines() if ln.strip()]
    raised = [ln for ln in lines[1:] if _RAISED.match(ln)]
    return (raised[-1] if raised else lines[0] if lines else type(exc).__name__)[:300]


def log_path(log_dir: Path, t: Task) -> Path:
    return log_dir / f"{t.label}.log"


# --------------------------------------------------------------------------- inline
class _Done:
    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome

    def poll(self) -> Outcome:
        return self.outcome

    def cancel(self) -> None:
        pass


class InlineExecutor:
    """Runs each task at submission, in this process (exceptions become failed outcomes)."""

    kind = "inline"
    capacity: int | None = 1

    def __init__(self, log_dir: Path, threads: int | None = None) -> None:
        self.log_dir, self.threads = Path(log_dir), threads

    def submit(self, tasks: Sequence[Task]) -> list[Handle]:
        handles: list[Handle] = []
        for t in tasks:
            log = log_path(self.log_dir, t)
            log.parent.mkdir(parents=True, exist_ok=True)
            try:
                result = run_task(t, self.threads)
                handles.append(_Done(Outcome(True, "", result, result["seconds"], str(log))))
            except Exception as exc:  # a failed task is an outcome, reported by the scheduler
                with open(log, "a") as fh:
                    fh.write(traceback.format_exc())
                handles.append(_Done(Outcome(False, _one_line(exc), log=str(log))))
        return handles

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- local pool
def _worker_main(conn, threads: int, log_dir: str) -> None:
    """A pool worker: receive a task, run it with fds 1 and 2 on its log, send the outcome."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver ends its workers on Ctrl-C
    while True:
        try:
            t, env = conn.recv()
        except (EOFError, OSError):
            return
        for key in [k for k in os.environ if k.startswith(ENV_PREFIX) and k not in env]:
            del os.environ[key]
        os.environ.update(env)  # the driver's PAM_* roots now (the fork server's may be older)
        log = log_path(Path(log_dir), t)
        with open(log, "a") as fh, _fds_to(fh.fileno()):
            print(f"== {t.label}: pid {os.getpid()}, {time.strftime('%Y-%m-%d %H:%M:%S')}", flush=True)
            try:
                result = run_task(t, threads)
                outcome = Outcome(True, "", result, result["seconds"], str(log))
            except Exception as exc:  # reported by the driver, with this log
                traceback.print_exc()
                outcome = Outcome(False, _one_line(exc), log=str(log))
        try:
            conn.send(outcome)
        except (EOFError, OSError):
            return


@contextlib.contextmanager
def _fds_to(fd: int):
    """Point fds 1 and 2 (and sys.stdout/stderr) at ``fd`` for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def _context():
    """Workers fork from multiprocessing's fork server, which imports the package once: a new
    worker (at the start, or after one was killed) costs a fork, not a torch import. The server
    forks before any torch op runs, so no thread pool is inherited."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["pam_explorer.runs.sweep_tasks"])
    return ctx


class _Worker:
    def __init__(self, threads: int, log_dir: Path) -> None:
        ctx = _context()
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, threads, str(log_dir)), daemon=True)
        self.proc.start()
        child.close()


class _LocalHandle:
    def __init__(self, pool: LocalExecutor, worker: _Worker, t: Task) -> None:
        self.pool, self.worker, self.task = pool, worker, t

    def poll(self) -> Outcome | None:
        w = self.worker
        try:
            if w.conn.poll():
                outcome = w.conn.recv()
                self.pool._release(w)
                return outcome
        except (EOFError, OSError):
            pass
        if w.proc.is_alive():
            return None
        self.pool._drop(w)
        code = w.proc.exitcode
        how = f"killed by signal {-code} ({signal.Signals(-code).name})" if code is not None and code < 0 \
            else f"exit code {code}"
        return Outcome(False, f"the worker process ended while running it ({how})",
                       log=str(log_path(self.pool.log_dir, self.task)))

    def cancel(self) -> None:
        self.pool._drop(self.worker)


class LocalExecutor:
    """At most ``workers`` worker processes, each running one task at a time."""

    kind = "local"

    def __init__(self, workers: int, threads: int, log_dir: Path) -> None:
        self.capacity: int | None = workers
        self.threads, self.log_dir = threads, Path(log_dir)
        self._idle: list[_Worker] = []
        self._busy: list[_Worker] = []

    def submit(self, tasks: Sequence[Task]) -> list[Handle]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        handles: list[Handle] = []
        for t in tasks:
            if len(self._busy) >= self.capacity:
                raise RuntimeError("LocalExecutor: more tasks submitted than workers")  # scheduler bug
            w = self._idle.pop() if self._idle else _Worker(self.threads, self.log_dir)
            self._busy.append(w)
            w.conn.send((t, {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}))
            handles.append(_LocalHandle(self, w, t))
        return handles

    def warm(self) -> None:
        """Start the workers now (the fork server imports the package meanwhile)."""
        while len(self._idle) + len(self._busy) < self.capacity:
            self._idle.append(_Worker(self.threads, self.log_dir))

    def _release(self, w: _Worker) -> None:
        self._busy.remove(w)
        self._idle.append(w)

    def _drop(self, w: _Worker) -> None:
        for pool in (self._busy, self._idle):
            if w in pool:
                pool.remove(w)
        if w.proc.is_alive():
            w.proc.kill()
        w.proc.join(5)
        w.conn.close()

    def close(self) -> None:
        """End every worker (idle ones at once, busy ones killed)."""
        for w in list(self._idle) + list(self._busy):
            self._drop(w)


# --------------------------------------------------------------------------- submitit
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
    def __init__(self, job: Any, t: Task) -> None:
        self.job, self.task = job, t

    def poll(self) -> Outcome | None:
        if not self.job.done():
            return None
        log = str(self.job.paths.stderr)
        try:
            result = self.job.result()
        except Exception as exc:  # submitit raises the job's failure (or a missing result)
            return Outcome(False, _one_line(exc), log=log)
        return Outcome(True, "", result, result.get("seconds"), log)

    def cancel(self) -> None:
        with contextlib.suppress(Exception):
            self.job.cancel(check=False)


class SubmititExecutor:
    """submitit's AutoExecutor; ``cluster`` "local" or "slurm"."""

    def __init__(self, cluster: str, folder: Path, resources: Resources, workers: int | None,
                 threads: int) -> None:
        check_executor("slurm" if cluster == "slurm" else "submitit-local")
        import submitit

        self.kind = "slurm" if cluster == "slurm" else "submitit-local"
        self.threads = threads
        self._ex = submitit.AutoExecutor(folder=str(Path(folder) / "%j"), cluster=cluster)
        if cluster == "slurm":
            self._ex.update_parameters(name="pam-sweep", slurm_array_parallelism=workers or 256,
                                       **resources.slurm_parameters())
            self.capacity = None  # every ready task goes in at once, as one array
        else:
            self._ex.update_parameters(name="pam-sweep", timeout_min=resources.time_min)
            self.capacity = workers  # submitit's local executor starts whatever it is given

    def submit(self, tasks: Sequence[Task]) -> list[Handle]:
        if not tasks:
            return []
        ctx = self._ex.batch() if len(tasks) > 1 and self.kind == "slurm" else contextlib.nullcontext()
        with ctx:
            jobs = [self._ex.submit(run_task, t, self.threads) for t in tasks]
        return [_SubmititHandle(j, t) for j, t in zip(jobs, tasks)]

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- choice
def check_executor(kind: str) -> None:
    """ConfigError naming what ``kind`` needs and this machine lacks (submitit, sbatch)."""
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


def default_workers(threads: int) -> int:
    """Cores divided by the threads per job (at least 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, threads))


__all__ = ["EXECUTORS", "Task", "Outcome", "Handle", "Resources", "task", "run_task", "InlineExecutor",
           "LocalExecutor", "SubmititExecutor", "check_executor", "default_workers", "log_path"]
