"""Run a set of tasks through an executor: capacity, one retry, new tasks as others finish, ETA.

:func:`run_all` keeps at most ``executor.capacity`` tasks in flight (None: every ready task is
submitted at once, e.g. as one Slurm array) and polls them. A task that fails is put back at the
front of the queue once (``max_attempts=2``); failing again, it is reported failed (with its log)
and the rest goes on. ``on_done(job)`` may return new tasks (the sweep adds its PAM points once
the MI trajectories they need exist). ``on_change(jobs)`` is called after every change of state.
Ctrl-C (or any exception) cancels what runs and re-raises.

The ETA: per ``Task.kind``, the mean seconds of the finished tasks of that kind (else of all
finished tasks) times what is left, over the tasks that can run at once.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pam_explorer.runs.executors import Handle, Outcome, Task

STATES = ("pending", "running", "done", "failed")


@dataclass
class Job:
    """A task's life in one run: state, attempts, seconds of the successful attempt, the last
    failure's message and log."""

    task: Task
    state: str = "pending"
    attempts: int = 0
    started: float | None = None
    seconds: float | None = None
    message: str = ""
    log: str = ""
    result: dict = field(default_factory=dict)
    handle: Handle | None = field(default=None, repr=False)

    def row(self) -> dict:
        """JSON-able state (points.json)."""
        return {"label": self.task.label, "kind": self.task.kind, "state": self.state,
                "attempts": self.attempts, "seconds": self.seconds, "message": self.message, "log": self.log}


def run_all(executor, tasks: Sequence[Task], *, on_done: Callable[[Job], Sequence[Task]] | None = None,
            on_change: Callable[[list[Job]], None] | None = None, max_attempts: int = 2,
            poll_s: float = 0.5) -> list[Job]:
    """Run ``tasks`` (and those ``on_done`` adds) to the end; returns every job, in order."""
    jobs = [Job(t) for t in tasks]
    queue = deque(jobs)
    running: list[Job] = []
    try:
        while queue or running:
            changed = False
            for job in list(running):
                outcome = job.handle.poll()
                if outcome is None:
                    continue
                running.remove(job)
                changed = True
                if _settle(job, outcome, max_attempts):
                    queue.appendleft(job)
                elif job.state == "done" and on_done is not None:
                    more = [Job(t) for t in on_done(job)]
                    jobs += more
                    queue.extend(more)
            changed = _fill(executor, queue, running) or changed  # refilled before the report:
            if changed and on_change is not None:  # "2 running" while 2 workers are busy
                on_change(jobs)
            if running and not changed:
                time.sleep(poll_s)
    except BaseException:
        for job in running:
            job.handle.cancel()
            job.state, job.message = "failed", "interrupted"
        raise
    return jobs


def _fill(executor, queue: deque, running: list[Job]) -> bool:
    cap = executor.capacity
    n = len(queue) if cap is None else min(len(queue), cap - len(running))
    if n <= 0:
        return False
    batch = [queue.popleft() for _ in range(n)]
    handles = executor.submit([j.task for j in batch])
    now = time.monotonic()
    for job, handle in zip(batch, handles):
        job.handle, job.state, job.started = handle, "running", now
        job.attempts += 1
    running.extend(batch)
    return True


def _settle(job: Job, outcome: Outcome, max_attempts: int) -> bool:
    """Record ``outcome``; True when the job goes back to the queue for another attempt."""
    job.handle = None
    if outcome.ok:
        job.state, job.result, job.log = "done", outcome.result, outcome.log
        job.seconds = outcome.seconds if outcome.seconds is not None else time.monotonic() - job.started
        job.message = ""
        return False
    job.message, job.log = outcome.message, outcome.log
    if job.attempts < max_attempts:
        job.state = "pending"
        return True
    job.state = "failed"
    return False


def counts(jobs: Sequence[Job]) -> dict[str, int]:
    """{state: number of jobs} for every state."""
    return {s: sum(j.state == s for j in jobs) for s in STATES}


def eta_seconds(jobs: Sequence[Job], capacity: int | None, now: float | None = None) -> float | None:
    """Seconds until every job has ended, estimated as the module docstring says; None before
    any job finished; 0 when nothing is left."""
    now = time.monotonic() if now is None else now
    done = [j for j in jobs if j.state == "done" and j.seconds is not None]
    left = [j for j in jobs if j.state in ("pending", "running")]
    if not left:
        return 0.0
    if not done:
        return None
    overall = sum(j.seconds for j in done) / len(done)

    def estimate(kind: str) -> float:
        same = [j.seconds for j in done if j.task.kind == kind]
        return sum(same) / len(same) if same else overall

    work = sum(max(0.0, estimate(j.task.kind) - (now - j.started))
               if j.state == "running" and j.started is not None else estimate(j.task.kind) for j in left)
    return work / max(1, min(capacity or len(left), len(left)))


def progress_line(jobs: Sequence[Job], capacity: int | None) -> str:
    """"7/16 done, 2 running, 0 failed; ETA 3 min 20 s"."""
    c = counts(jobs)
    eta = eta_seconds(jobs, capacity)
    when = "ETA after the first job ends" if eta is None else f"ETA {_human(eta)}"
    return f"{c['done']}/{len(jobs)} done, {c['running']} running, {c['failed']} failed; {when}"


def _human(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 60} min {s % 60} s" if s >= 60 else f"{s} s"


__all__ = ["Job", "run_all", "counts", "eta_seconds", "progress_line", "STATES"]
