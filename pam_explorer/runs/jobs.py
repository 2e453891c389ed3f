"""Background runs as separate processes, with all state on disk (no streamlit here).

A run is a directory ``<root>/<run_id>/`` holding

* ``status.json``  {"state": queued|running|done|failed|cancelled, "argv", "name", "created",
  "pid", "started", "ended", "exit_code", "message"}  (written atomically);
* ``log.txt``      stdout + stderr of the command;
* ``exit_code``    written by a small wrapper (this file run as a script, ``python -I
  pam_explorer/runs/jobs.py _run DIR ROOT``) when the command ends, so the outcome survives a
  restart of the app (the wrapper is in its own session and outlives the app). The wrapper's
  command line does not contain the command's, so a ``pkill -f <command>`` elsewhere kills only
  the command and the run is still recorded as failed with the signal's exit code (128 + signal);
* ``progress.json`` optional {"stage", "fraction", "message"} written by the command itself.

``argv`` is any command; the token ``{run_dir}`` inside it is replaced by the run directory (so
``--out {run_dir}`` puts the command's outputs next to its log). At most one run is running at a
time; further runs wait in a FIFO queue (``MAX_QUEUED`` of them). The queue advances in two ways:
the wrapper calls :func:`start_next` when its command ends (so it advances with no app open), and
every :func:`poll` (the dashboard calls it every 2 s) does :func:`refresh` + :func:`start_next`.
A lock file serialises concurrent pollers. ``python -m pam_explorer.runs.jobs start-next ROOT``
advances a queue from a shell.

The root defaults to :func:`pam_explorer.core.paths.runs_root` (``$PAM_RUNS_ROOT``, else
``<repo>/cache/runs``). The wrapper imports nothing of the package (``-I``: no repository on
sys.path, no package ``__init__`` with torch); it loads the two standard-library modules it
needs, ``core/paths.py``, ``core/io.py`` and ``core/errors.py``, from their files.
"""
from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any


def _core_file(name: str) -> ModuleType:
    """Load pam_explorer/core/<name>.py (standard library only) by its path: the wrapper script."""
    spec = importlib.util.spec_from_file_location(f"_pam_core_{name}", Path(__file__).resolve().parents[1]
                                                  / "core" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if __package__:  # imported as pam_explorer.runs.jobs (or run with -m)
    from pam_explorer.core import errors, io, paths
else:  # the wrapper: ``python -I .../runs/jobs.py _run DIR ROOT``
    errors, io, paths = (_core_file(name) for name in ("errors", "io", "paths"))

REPO = paths.REPO  # commands run with the repository as working directory
MAX_QUEUED = 2
ACTIVE = ("queued", "running")
FINAL = ("done", "failed", "cancelled")

_CHILDREN: dict[int, subprocess.Popen] = {}  # reaps children of this process (no zombies)


# --------------------------------------------------------------------------- files
def _root(root: str | Path | None) -> Path:
    return Path(root) if root is not None else paths.runs_root()


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
    return {**st, "run_id": run_id, "dir": str(d)}


def _update(run_id: str, root: Path, **changes: Any) -> dict:
    path = run_dir(run_id, root) / "status.json"
    st = _read_json(path) or {}
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


# --------------------------------------------------------------------------- processes
def _proc_start_time(pid: int) -> str | None:
    """Start time of ``pid`` (clock ticks since boot) or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def _alive(st: dict) -> bool:
    pid = st.get("pid")
    if not isinstance(pid, int):
        return False
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)
        return False
    if Path("/proc").is_dir():
        start = _proc_start_time(pid)
        return start is not None and start == st.get("pid_start", start)  # pid not reused
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def _exit_code(d: Path) -> int | None:
    try:
        return int((d / "exit_code").read_text().strip())
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- API
def submit(argv: Sequence[str], root: str | Path | None = None, name: str = "run",
           max_queued: int = MAX_QUEUED) -> str:
    """Queue ``argv`` as a new run; returns its id. Does not start it (see :func:`start_next`)."""
    argv = [str(a) for a in argv]
    if not argv:
        raise errors.ConfigError("argv must not be empty")
    root = _root(root)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")[:40] or "run"
    with _locked(root):
        queued = [r for r in list_runs(root) if r["state"] == "queued"]
        if len(queued) >= max_queued:
            raise errors.QueueFull(f"{len(queued)} runs are already queued (at most {max_queued}); "
                            "wait for one to start or cancel one")
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}-{uuid.uuid4().hex[:6]}"
        d = root / run_id
        d.mkdir(parents=True)
        argv = [a.replace("{run_dir}", str(d)) for a in argv]
        io.write_json_atomic(d / "status.json", {"state": "queued", "argv": argv, "name": name,
                                        "created": time.time()})
    return run_id


def list_runs(root: str | Path | None = None) -> list[dict]:
    """Every run under ``root`` (status + run_id + dir), oldest first."""
    root = _root(root)
    if not root.is_dir():
        return []
    runs = []
    for d in root.iterdir():
        st = _read_json(d / "status.json") if d.is_dir() else None
        if st is not None:
            runs.append({**st, "run_id": d.name, "dir": str(d)})
    return sorted(runs, key=lambda r: (r.get("created", 0.0), r["run_id"]))


def refresh(root: str | Path | None = None) -> list[dict]:
    """Mark runs whose process ended: exit code 0 -> done, else failed. Returns list_runs."""
    root = _root(root)
    for r in list_runs(root):
        if r["state"] != "running":
            continue
        d = Path(r["dir"])
        code = _exit_code(d)
        if code is not None:
            _update(r["run_id"], root, state="done" if code == 0 else "failed", exit_code=code,
                    ended=time.time())
        elif not _alive(r):
            time.sleep(0.05)  # the wrapper may be writing exit_code right now
            code = _exit_code(d)
            if code is not None:
                _update(r["run_id"], root, state="done" if code == 0 else "failed",
                        exit_code=code, ended=time.time())
            else:
                _update(r["run_id"], root, state="failed", ended=time.time(),
                        message="the process ended without recording an exit code (killed?)")
    return list_runs(root)


def start_next(root: str | Path | None = None) -> str | None:
    """Start the oldest queued run if none is running; returns its id (or None)."""
    root = _root(root)
    with _locked(root):
        runs = refresh(root)
        if any(r["state"] == "running" for r in runs):
            return None
        queued = [r for r in runs if r["state"] == "queued"]
        if not queued:
            return None
        r = queued[0]
        d = Path(r["dir"])
        env = {**os.environ, "PAM_RUN_DIR": str(d), "PYTHONUNBUFFERED": "1"}
        # -I: the wrapper imports nothing from the repository (nor the package's __init__)
        wrapper = [sys.executable, "-I", str(Path(__file__).resolve()), "_run", str(d), str(root)]
        with open(d / "log.txt", "ab") as log:
            try:
                proc = subprocess.Popen(wrapper, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env, start_new_session=True)
            except OSError as exc:
                _update(r["run_id"], root, state="failed", message=f"could not start: {exc}",
                        ended=time.time())
                return None
        _CHILDREN[proc.pid] = proc
        _update(r["run_id"], root, state="running", pid=proc.pid, started=time.time(),
                pid_start=_proc_start_time(proc.pid))
        return r["run_id"]


def poll(root: str | Path | None = None) -> list[dict]:
    """refresh + start_next: what the dashboard calls periodically."""
    start_next(root)
    return list_runs(root)


def cancel(run_id: str, root: str | Path | None = None, grace_s: float = 3.0) -> dict:
    """Cancel a queued run, or kill a running run's process group (TERM, then KILL)."""
    root = _root(root)
    with _locked(root):
        st = read_status(run_id, root)
        if st["state"] == "queued":
            return _update(run_id, root, state="cancelled", ended=time.time())
        if st["state"] != "running":
            return st
        if _exit_code(Path(st["dir"])) is not None:  # it ended on its own just now
            refresh(root)
            return read_status(run_id, root)
        pid = st.get("pid")
        if isinstance(pid, int) and _alive(st):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.time() + grace_s
            while time.time() < deadline and _alive(st):
                time.sleep(0.05)
            if _alive(st):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
        return _update(run_id, root, state="cancelled", ended=time.time())


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


def _run_wrapped(d: Path, root: Path) -> int:
    """The wrapper: run the run's argv (output -> inherited log), record its exit code, advance."""
    st = _read_json(d / "status.json") or {}
    argv = st.get("argv") or []
    try:
        code = subprocess.call(argv, cwd=REPO, stdin=subprocess.DEVNULL)
    except OSError as exc:
        print(f"could not start {argv[:1]}: {exc}", flush=True)
        code = 127
    code = 128 - code if code < 0 else code  # killed by signal N -> 128 + N, as a shell reports
    io.write_text_atomic(d / "exit_code", f"{code}\n")
    start_next(root)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 3 and args[0] == "_run":
        return _run_wrapped(Path(args[1]), Path(args[2]))
    if len(args) == 2 and args[0] == "start-next":
        start_next(args[1])
        return 0
    print("usage: python -m pam_explorer.runs.jobs start-next ROOT", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
