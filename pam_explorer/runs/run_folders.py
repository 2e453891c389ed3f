"""Run folders on disk, read and written under a lock (standard library only; see :mod:`.jobs`).

A run is ``<root>/<run_id>/`` with ``status.json`` (written atomically), ``log.txt``,
``exit_code``, and optional ``progress.json``/``report.json``. This module finds run folders,
reads them (status, log tail, progress, report, the command for display), updates status.json
(a terminal state is never changed) and serialises changes with a lock file per root.

The detached wrapper (``python -I runs/jobs.py _run ...``) loads this file by path and gives it
``errors``, ``io``, ``paths`` and ``job_spec`` before running it.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

if __package__:
    from pam_explorer.core import errors, io, paths
    from pam_explorer.runs import job_spec
# else: loaded by path by the wrapper, which sets the module's errors, io, paths and job_spec first

ACTIVE = ("queued", "running")
FINAL = ("done", "failed", "cancelled")


# --------------------------------------------------------------------------- files
def _root(root: str | Path | None) -> Path:
    # absolute: the run folder is also the PAM_RUN_DIR that identifies the run's processes
    return (Path(root) if root is not None else paths.runs_root()).absolute()


def _roots(root: str | Path | Sequence[str | Path] | None) -> list[Path]:
    if root is None:
        return [r.absolute() for r in paths.runs_roots()]
    if isinstance(root, (str, Path)):
        return [_root(root)]
    return [_root(r) for r in root]


def run_dir(run_id: str, root: str | Path | None = None) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", run_id) or run_id.startswith("."):
        raise errors.ConfigError(f"invalid run id {run_id!r}")
    return _root(root) / run_id


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def read_status(run_id: str, root: str | Path | None = None) -> dict:
    d = run_dir(run_id, root)
    st = _read_json(d / "status.json")
    if st is None:
        raise errors.DataMissing(f"run {run_id!r} has no readable status.json in {d}")
    return {**st, "run_id": run_id, "dir": str(d), "root": str(_root(root))}


def _update(run_id: str, root: Path, **changes: Any) -> dict:
    """Merge ``changes`` into status.json; a terminal state (done, failed, cancelled) is never
    changed: the file is then left as it is and returned."""
    path = run_dir(run_id, root) / "status.json"
    st = _read_json(path) or {}
    if st.get("state") in FINAL:
        return st
    st.update(changes)
    io.write_json_atomic(path, st)
    return st


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)



def describe(r: Mapping) -> str:
    """The command of a run, for display; older runs show their stored argv (never executed)."""
    if "job" in r:
        return job_spec.describe(r["job"])
    argv = r.get("argv")
    if isinstance(argv, list):
        return " ".join(str(a) for a in argv[1:]) + " (older format: shown, not executed)"
    return "(no command)"


def list_runs(root: str | Path | Sequence[str | Path] | None = None) -> list[dict]:
    """Every run under ``root`` (one folder or several; None: ``paths.runs_roots()``), as status
    + run_id + dir + root, oldest first; a run id found in two roots is the first root's."""
    runs: dict[str, dict] = {}
    for base in _roots(root):
        if not base.is_dir():
            continue
        for d in base.iterdir():
            st = _read_json(d / "status.json") if d.is_dir() and d.name not in runs else None
            if st is not None and isinstance(st.get("state"), str):
                runs[d.name] = {**st, "run_id": d.name, "dir": str(d), "root": str(base)}
    return sorted(runs.values(), key=lambda r: (_num(r.get("created")), r["run_id"]))


def _num(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else 0.0


def log_tail(run_id: str, n: int = 40, root: str | Path | None = None) -> str:
    """The last ``n`` lines of the run's log ("" if none yet)."""
    path = run_dir(run_id, root) / "log.txt"
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 256 * max(n, 1)))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    text = text.replace("\r\n", "\n")
    lines = [ln.rsplit("\r", 1)[-1] for ln in text.split("\n")]  # progress bars: keep the last
    if lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines[-n:])


def progress(run_id: str, root: str | Path | None = None) -> dict | None:
    """run_dir/progress.json ({"stage", "fraction", "message"}) if the command wrote one."""
    return _read_json(run_dir(run_id, root) / "progress.json")


def report(run_id: str, root: str | Path | None = None) -> dict | None:
    """run_dir/report.json if the run produced one."""
    return _read_json(run_dir(run_id, root) / "report.json")
