"""What Slurm says about a driver's jobs (squeue, sinfo), and the record of the jobs it submitted.

Slurm's own tools only: ``squeue`` answers for pending, running and recently ended jobs on every
cluster, with or without an accounting database (``sacct``, which submitit's watcher needs, fails
without one). A job ends with a result pickle (submitit's; checked first, it needs no Slurm call)
or in a Slurm state; :class:`SlurmQueue` asks for the states of every watched job in one call, at
most every few seconds (2 s after a submission, backing off to 30 s).

:class:`Journal` is ``<submitit folder>/jobs.json``: every (task label, Slurm job id) the driver
submitted, in order, and the folder's tag (the ``--comment`` of its jobs). A driver started again
on the same folder re-attaches to the latest job of a label while Slurm lists it as queued or
running with that comment (:func:`attachable`), instead of submitting it a second time.
:func:`job_rows` is what the dashboard shows: per label its latest job, its Slurm state and logs.
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pam_explorer.core.io import write_json_atomic

JOURNAL = "jobs.json"
FORMAT = "pam-explorer-slurm-jobs/1"
# Slurm job states (squeue %T) by what they mean for the driver; any other state has ended.
PENDING = ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "CONFIGURING")
RUNNING = ("RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESIZING")
ACTIVE = PENDING + RUNNING
GONE = "GONE"  # Slurm answered and no longer lists the job (ended before MinJobAge, or unknown)
SUMMARIES = ("pending", "running", "completed", "failed", "unknown")


@dataclass(frozen=True)
class JobInfo:
    """One job as squeue lists it: id ("123" or array task "123_4"), state, reason, comment."""

    job_id: str
    state: str
    reason: str = ""
    comment: str = ""

    @property
    def active(self) -> bool:
        return self.state in ACTIVE


def summary(state: str | None) -> str:
    """A Slurm state as one of :data:`SUMMARIES` (the dashboard's words)."""
    if state in PENDING:
        return "pending"
    if state in RUNNING:
        return "running"
    if state == "COMPLETED":
        return "completed"
    return "unknown" if state in (None, GONE) else "failed"


Runner = Callable[[list[str]], subprocess.CompletedProcess]


def _run(cmd: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _brief(cmd: list[str]) -> subprocess.CompletedProcess:
    """For the dashboard: Slurm's clients retry an unreachable controller for about 10 s."""
    return _run(cmd, timeout=3.0)


def query(job_ids: Iterable[str], run: Runner = _run) -> dict[str, JobInfo] | None:
    """{job id: JobInfo} of the ids Slurm lists (array tasks one by one); ids it does not list are
    absent. None when squeue cannot answer (not installed, controller down): nothing is known."""
    ids = sorted({str(j) for j in job_ids})
    if not ids:
        return {}
    mains = sorted({j.split("_")[0] for j in ids})
    try:
        proc = run(["squeue", "--noheader", "--array", "--states=all", "--jobs=" + ",".join(mains),
                    "--format=%i|%T|%r|%k"])
    except (OSError, subprocess.SubprocessError):  # not installed, or no answer in time
        return None
    if proc.returncode != 0:
        # every id unknown (ended long ago): Slurm answered, and lists none of them
        return {} if "Invalid job id" in (proc.stderr or "") else None
    found = {}
    for line in proc.stdout.splitlines():
        parts = line.strip().split("|", 3)
        if len(parts) == 4 and parts[0] in ids:
            comment = "" if parts[3] == "(null)" else parts[3]
            found[parts[0]] = JobInfo(parts[0], parts[1].split()[0], parts[2], comment)
    return found


class SlurmQueue:
    """The Slurm states of watched jobs, refreshed by one squeue call for all of them at most every
    ``min_s`` seconds after a submission, backing off to every ``max_s`` seconds (half the time
    since the last submission, like submitit's watcher). Ended jobs are no longer asked for."""

    def __init__(self, min_s: float = 2.0, max_s: float = 30.0, run: Runner = _run) -> None:
        self.min_s, self.max_s, self._run = min_s, max_s, run
        self._info: dict[str, JobInfo] = {}
        self._watched: set[str] = set()
        self._last = -math.inf
        self._since = time.monotonic()

    def watch(self, job_id: str, info: JobInfo | None = None) -> None:
        self._watched.add(job_id)
        if info is not None:
            self._info[job_id] = info
        self._since = time.monotonic()

    def info(self, job_id: str) -> JobInfo | None:
        """What Slurm said last about ``job_id`` (state GONE: not listed); None before any answer."""
        now = time.monotonic()
        if now - self._last >= min(self.max_s, max(self.min_s, (now - self._since) / 2)):
            self.refresh()
        return self._info.get(job_id)

    def refresh(self) -> None:
        self._last = time.monotonic()
        asked = [j for j in self._watched if j not in self._info or self._info[j].active]
        found = query(asked, self._run)
        if found is None:
            return  # no answer: keep what is known, ask again later
        for j in asked:
            self._info[j] = found.get(j, JobInfo(j, GONE))


def folder_tag(folder: str | Path) -> str:
    """The ``--comment`` of a folder's jobs: "pam-" + 12 hex digits of its absolute path's hash."""
    return "pam-" + hashlib.sha256(str(Path(folder).absolute()).encode()).hexdigest()[:12]


class Journal:
    """``<folder>/jobs.json``: every (label, job id) submitted from ``folder``, in order."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / JOURNAL
        self.tag = folder_tag(self.folder)
        self.entries: list[dict] = _read_entries(self.path)

    def latest(self) -> dict[str, str]:
        """{label: the job id submitted last for it}."""
        return {e["label"]: e["job_id"] for e in self.entries}

    def add(self, pairs: Sequence[tuple[str, str]]) -> None:
        if not pairs:
            return
        now = round(time.time(), 3)
        self.entries += [{"label": label, "job_id": str(job_id), "submitted": now} for label, job_id in pairs]
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, {"format": FORMAT, "tag": self.tag, "jobs": self.entries})


def _read_entries(path: Path) -> list[dict]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    jobs = raw.get("jobs") if isinstance(raw, dict) and raw.get("format") == FORMAT else None
    return [e for e in jobs if isinstance(e, dict) and isinstance(e.get("label"), str)
            and isinstance(e.get("job_id"), str)] if isinstance(jobs, list) else []


def attachable(journal: Journal, labels: Iterable[str], run: Runner = _run) -> dict[str, JobInfo]:
    """{label: its latest job} for the ``labels`` whose latest recorded job Slurm lists as queued or
    running with this folder's tag (a job id another cluster or folder reused is not ours)."""
    latest = journal.latest()
    wanted = {label: latest[label] for label in labels if label in latest}
    found = query(wanted.values(), run) or {}
    return {label: found[j] for label, j in wanted.items()
            if j in found and found[j].active and found[j].comment == journal.tag}


def job_rows(folder: str | Path, run: Runner = _brief) -> list[dict]:
    """Per label (in submission order) its latest job: id, Slurm state and its summary, reason,
    how many jobs were submitted for it, and its log files (stdout, stderr). [] without a journal."""
    journal = Journal(folder)
    latest = journal.latest()
    counts: dict[str, int] = {}
    for e in journal.entries:
        counts[e["label"]] = counts.get(e["label"], 0) + 1
    found = query(latest.values(), run) if latest else {}  # None: no answer (states unknown)
    rows = []
    for label, job_id in latest.items():
        info = None if found is None else found.get(job_id, JobInfo(job_id, GONE))
        stdout, stderr = log_paths(folder, job_id)
        rows.append({"label": label, "job_id": job_id, "state": info.state if info else "",
                     "slurm": summary(info.state if info else None), "reason": info.reason if info else "",
                     "submissions": counts[label], "stdout": str(stdout), "stderr": str(stderr)})
    return rows


def cancel_jobs(folder: str | Path, run: Runner = _run) -> list[str]:
    """scancel every job of ``folder``'s journal that Slurm lists as queued or running with the
    folder's tag (a driver stopped without cancelling them leaves them running); their ids."""
    journal = Journal(folder)
    ids = sorted(i.job_id for i in attachable(journal, journal.latest(), run).values())
    if ids:
        run(["scancel", *ids])
    return ids


def find_sweeps(roots: Iterable[str | Path]) -> list[Path]:
    """Run folders one level under each root whose jobs went to Slurm (``submitit/jobs.json``),
    the newest journal first."""
    found = []
    for root in roots:
        for path in Path(root).glob(f"*/submitit/{JOURNAL}"):
            try:
                found.append((path.stat().st_mtime_ns, path.parent.parent))
            except OSError:
                continue
    return [folder for _, folder in sorted(found, key=lambda f: -f[0])]


def log_paths(folder: str | Path, job_id: str) -> tuple[Path, Path]:
    """submitit's stdout and stderr files of ``job_id`` under ``folder`` (folder/<id>/<id>_0_log.*)."""
    base = Path(folder) / job_id / f"{job_id}_0_log"
    return base.with_suffix(".out"), base.with_suffix(".err")


def unavailable() -> str | None:
    """Why this machine cannot submit Slurm jobs (no sbatch, no answer from the controller); None
    when it can."""
    if shutil.which("sbatch") is None:
        return "Slurm's sbatch is not on PATH"
    if not partitions():
        return "sinfo lists no partition (is the Slurm controller up, and SLURM_CONF set?)"
    return None


def partitions(run: Runner = _brief) -> list[str]:
    """The partitions sinfo lists, the default one first; [] when sinfo cannot answer."""
    try:
        proc = run(["sinfo", "--noheader", "--format=%P"])
    except (OSError, subprocess.SubprocessError):  # TimeoutExpired included
        return []
    if proc.returncode != 0:
        return []
    names = [p.strip() for p in proc.stdout.split() if p.strip()]
    return sorted({p.rstrip("*") for p in names}, key=lambda p: (f"{p}*" not in names, p))


def tail(path: str | Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file ("" when it does not exist yet)."""
    try:
        with open(path, errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])
    except OSError:
        return ""


__all__ = ["JobInfo", "SlurmQueue", "Journal", "query", "summary", "attachable", "job_rows", "log_paths",
           "folder_tag", "find_sweeps", "cancel_jobs", "unavailable", "partitions", "tail", "ACTIVE",
           "PENDING", "RUNNING", "GONE", "SUMMARIES", "JOURNAL"]
