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
* ``SubmititExecutor`` (``submitit-local`` / ``slurm``) lives in :mod:`pam_explorer.runs.slurm`.
* :class:`InlineExecutor`: in this process, one at a time (tests and debugging).

"""
from __future__ import annotations

import contextlib
import importlib
import logging
import multiprocessing as mp
import os
import re
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing import forkserver
from pathlib import Path
from typing import Any, Protocol

from pam_explorer.core.errors import ConfigError
from pam_explorer.core.io import open_append

EXECUTORS = ("local", "submitit-local", "slurm")
ENV_PREFIX = "PAM_"  # environment variables a local worker takes from the driver with each task
TaskFn = Callable[[Any, Path], dict]
_TASKS: dict[str, TaskFn] = {}
_log = logging.getLogger(__name__)


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


def one_line(exc: BaseException) -> str:
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
                with open_append(log) as fh:
                    fh.write(traceback.format_exc().encode())
                handles.append(_Done(Outcome(False, one_line(exc), log=str(log))))
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
        with open_append(log) as fh, _fds_to(fh.fileno()):  # never through a planted symlink
            print(f"== {t.label}: pid {os.getpid()}, {time.strftime('%Y-%m-%d %H:%M:%S')}", flush=True)
            try:
                result = run_task(t, threads)
                outcome = Outcome(True, "", result, result["seconds"], str(log))
            except Exception as exc:  # reported by the driver, with this log
                traceback.print_exc()
                outcome = Outcome(False, one_line(exc), log=str(log))
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
        self.capacity: int | None = clamp_workers(workers)
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
        """Start the fork server now (it imports the package meanwhile); workers are forked from
        it as tasks are submitted, so there are never more workers than tasks."""
        _context()
        forkserver.ensure_running()

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


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_workers(threads: int) -> int:
    """Cores divided by the threads per job (at least 1)."""
    return max(1, _cores() // max(1, threads))


def clamp_workers(workers: int) -> int:
    """``workers``, at most 4 x the cores (with a one-line warning): more processes than that
    only compete for the same cores and memory."""
    most = 4 * _cores()
    if workers > most:
        _log.warning("--workers %d is more than 4 x the %d cores here: using %d", workers, _cores(), most)
    return min(workers, most)


__all__ = ["EXECUTORS", "Task", "Outcome", "Handle", "task", "run_task", "one_line", "InlineExecutor",
           "LocalExecutor", "default_workers", "clamp_workers", "log_path"]
