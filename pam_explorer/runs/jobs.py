"""Background runs as separate processes, with all state on disk (no streamlit here).

A run is a directory ``<root>/<run_id>/`` holding

* ``status.json``  {"state": queued|running|done|failed|cancelled, "job", "name", "created",
  "pid", "pgid", "started", "ended", "exit_code", "message"}  (written atomically);
* ``log.txt``      stdout + stderr of the command;
* ``exit_code``    written by a small wrapper (this file run as a script, ``python -I
  pam_explorer/runs/jobs.py _run DIR ROOT``) when the command ends, so the outcome survives a
  restart of the app. The wrapper's command line does not contain the command's, so a ``pkill -f
  <command>`` elsewhere kills only the command and the run is still recorded as failed with the
  signal's exit code (128 + signal);
* ``progress.json`` optional {"stage", "fraction", "message"} written by the command itself.

**Only commands the project builds run.** ``job`` is a spec ``{"command": "experiment", "args":
{...}}`` checked against an allow-list (:mod:`pam_explorer.runs.job_spec`) when it is submitted,
again before it starts, and again by the wrapper, which rebuilds the command line from it
(``python -m pam_explorer <command> ... --out <run dir>``). A status.json without a valid job (a
planted one, or one of an older version with a free ``argv``) is listed and read but never
executed: a queued one is marked failed, saying why.

**A run is its process group.** The wrapper starts in a new session, so it leads a process group
(``pgid`` in status.json) that the command and its children join; each of them carries
``PAM_RUN_DIR=<run dir>`` in its environment. The run's processes are the live members of that
group with that variable (so a recycled group id, or a planted pgid, never matches another
program's processes). The rule: a run is ``running`` until its exit code is recorded or none
of its processes lives. The wrapper records the exit code after its command ended and it killed
the command's strays, so a recorded code means only the wrapper itself may still be there
(starting the next run): the run is then ``done``/``failed`` by that code. If the wrapper is
killed, the command keeps its run ``running`` (it finishes its work, can be cancelled, and the
next queued run waits for it); when the last of its processes is gone the run is ``failed``
with a message saying no exit code was recorded. :func:`cancel` kills all of its processes
(TERM, then KILL).

**Terminal states are final**: done, failed and cancelled are never overwritten. A cancel that
lands as a run ends checks, under the lock and after the kill, whether the wrapper recorded an
exit code (it cannot once killed): if so the run ended by itself and keeps that outcome.

At most one run is running at a time per root; further runs wait in a FIFO queue (``MAX_QUEUED``
of them). The queue advances when a run's wrapper ends (it calls :func:`start_next`, so it
advances with no app open) and on every :func:`poll` (the dashboard calls it every 2 s). A lock
file per root serialises every change of state. ``python -m pam_explorer.runs.jobs start-next
ROOT`` advances a queue from a shell.

Runs are started under :func:`pam_explorer.core.paths.runs_root` (``$PAM_RUNS_ROOT``, else
``<repo>/runs``); :func:`list_runs` and :func:`poll` also read the folder runs lived in before,
``<repo>/cache/runs`` (``paths.runs_roots()``, new first); each run dict says its ``root``.
The wrapper imports nothing of the package (``-I``: no repository on sys.path, no package
``__init__`` with torch); it loads the standard-library modules it needs, ``core/paths.py``,
``core/io.py``, ``core/errors.py``, ``runs/job_spec.py``, ``runs/run_folders.py`` and
``runs/run_processes.py``, from their files.

This module is the queue and the entry point; run folders are read and written by
:mod:`.run_folders`, a run's processes found and killed by :mod:`.run_processes`. Their public
names (and the private ones tests use) are importable from here too.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

PACKAGE = Path(__file__).resolve().parents[1]


def _module_file(relpath: str, **provide: ModuleType) -> ModuleType:
    """Load pam_explorer/<relpath> (standard library only) by its path: the wrapper script."""
    spec = importlib.util.spec_from_file_location("_pam_" + relpath.replace("/", "_")[:-3],
                                                  PACKAGE / relpath)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    module.__dict__.update(provide)
    spec.loader.exec_module(module)
    return module


if __package__:  # imported as pam_explorer.runs.jobs (or run with -m)
    from pam_explorer.core import errors, io, paths
    from pam_explorer.runs import job_spec, run_folders, run_processes
else:  # the wrapper: ``python -I .../runs/jobs.py _run DIR ROOT``
    errors, io, paths = (_module_file(f"core/{name}.py") for name in ("errors", "io", "paths"))
    job_spec = _module_file("runs/job_spec.py", errors=errors)
    run_folders = _module_file("runs/run_folders.py", errors=errors, io=io, paths=paths, job_spec=job_spec)
    run_processes = _module_file("runs/run_processes.py")

# re-exported: callers and tests use them as jobs.<name>; module globals here, so the functions
# below look them up through this module (a test patching jobs._kill patches what cancel calls)
ACTIVE, FINAL = run_folders.ACTIVE, run_folders.FINAL
_root, _roots, run_dir = run_folders._root, run_folders._roots, run_folders.run_dir
_read_json = run_folders._read_json
read_status, _update, _locked = run_folders.read_status, run_folders._update, run_folders._locked
describe, list_runs, _num = run_folders.describe, run_folders.list_runs, run_folders._num
log_tail, progress, report = run_folders.log_tail, run_folders.progress, run_folders.report
RUN_ENV, _CHILDREN = run_processes.RUN_ENV, run_processes._CHILDREN
_proc_stat, _proc_start_time = run_processes._proc_stat, run_processes._proc_start_time
_reap, _carries, _members = run_processes._reap, run_processes._carries, run_processes._members
_kill, _exit_code = run_processes._kill, run_processes._exit_code

REPO = paths.REPO  # commands run with the repository as working directory
MAX_QUEUED = 2


# --------------------------------------------------------------------------- API
def submit(job: Mapping, root: str | Path | None = None, name: str = "run",
           max_queued: int = MAX_QUEUED) -> str:
    """Queue ``job`` ({"command": ..., "args": {...}}, see job_spec) as a new run; returns its id.
    Does not start it (see :func:`start_next`). ConfigError if the job is not allowed."""
    return _submit(job_spec.check(job), _root(root), name, max_queued)


def _submit(job: dict, root: Path, name: str, max_queued: int, prepare=None,
            extra: dict | None = None) -> str:
    """Make the run folder (``prepare(folder)`` fills it first) and queue it: a run is listed,
    and can start, only once its status.json exists."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")[:40] or "run"
    with _locked(root):
        queued = [r for r in list_runs(root) if r["state"] == "queued"]
        if len(queued) >= max_queued:
            raise errors.QueueFull(f"{len(queued)} runs are already queued (at most {max_queued}); "
                                   "wait for one to start or cancel one")
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}-{uuid.uuid4().hex[:6]}"
        d = root / run_id
        d.mkdir(parents=True)
        if prepare is not None:
            prepare(d)
        io.write_json_atomic(d / "status.json", {"state": "queued", "job": job, "name": name,
                                                 "created": time.time(), **(extra or {})})
    return run_id


RESUMABLE = ("failed", "cancelled")
# a run folder's own files, not results: not copied when a run is resumed
_RUN_FILES = frozenset({"status.json", "log.txt", "exit_code", "progress.json", ".lock", ".pam-run.lock"})


def resume(run_id: str, root: str | Path | None = None, max_queued: int = MAX_QUEUED) -> str:
    """Queue a failed or cancelled run again; returns the new run's id.

    The new run has the same job, and its folder starts as a copy of the old one's results (its
    own bookkeeping left out; symlinks copied as links), so the command continues where it
    stopped, as rerunning it into the same ``--out`` does from the CLI: an experiment keeps its
    finished stages, merge and train recompute their own files. The old run stays as it was
    (final states are final). ConfigError unless the run is failed or cancelled and its job is
    allowed."""
    root = _root(root)
    st = read_status(run_id, root)
    if st["state"] not in RESUMABLE:
        raise errors.ConfigError(f"run {run_id} is {st['state']}: only a failed or cancelled run can be "
                                 "resumed")
    job = job_spec.check(st.get("job"))
    src = Path(st["dir"])

    def copy_results(d: Path) -> None:
        for entry in src.iterdir():
            if entry.name in _RUN_FILES:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.copytree(entry, d / entry.name, symlinks=True)
            else:
                shutil.copy2(entry, d / entry.name, follow_symlinks=False)
        (d / "log.txt").write_text(f"resuming run {run_id} (its results so far were copied here)\n")
    name = str(st.get("name") or "run")
    return _submit(job, root, name if name.endswith("-resumed") else f"{name}-resumed", max_queued,
                   copy_results, {"resumed_from": run_id})



def refresh(root: str | Path | None = None) -> list[dict]:
    """Settle runs whose processes are all gone (exit code 0 -> done, else failed; no exit code
    -> failed with a message). Returns list_runs(root)."""
    root = _root(root)
    with _locked(root):
        return _refresh(root)


def _refresh(root: Path) -> list[dict]:
    for r in list_runs(root):
        if r["state"] == "running":
            _settle(r, root)
    return list_runs(root)


def _settle(r: Mapping, root: Path) -> None:
    """Under the root lock: a run with an exit code (its command and strays are gone; only the
    wrapper may still be starting the next run) or none of whose processes lives gets its
    final state."""
    code = _exit_code(Path(r["dir"]))
    if code is not None:
        _update(r["run_id"], root, state="done" if code == 0 else "failed", exit_code=code,
                ended=time.time())
    elif _members(r):
        return  # running: wrapper, command or a child of it still lives
    else:
        _update(r["run_id"], root, state="failed", ended=time.time(),
                message="the run's processes ended without recording an exit code (the wrapper was "
                        "killed?); files it wrote may be incomplete")


def start_next(root: str | Path | None = None) -> str | None:
    """Start the oldest queued run if none is running; returns its id (or None). A queued run
    whose job is not allowed is marked failed (nothing runs) and the next one is tried."""
    root = _root(root)
    _reap()
    with _locked(root):
        runs = _refresh(root)
        if any(r["state"] == "running" for r in runs):
            return None
        for r in (r for r in runs if r["state"] == "queued"):
            try:
                job_spec.check(r.get("job"))
            except errors.ConfigError as exc:
                _update(r["run_id"], root, state="failed", ended=time.time(),
                        message=f"not started, nothing was run: {exc}")
                continue
            return _start(r, root)
        return None


def _start(r: Mapping, root: Path) -> str | None:
    d = Path(r["dir"])
    env = {**os.environ, RUN_ENV: str(d), "PYTHONUNBUFFERED": "1"}
    # -I: the wrapper imports nothing from the repository (nor the package's __init__)
    wrapper = [sys.executable, "-I", str(Path(__file__).resolve()), "_run", str(d), str(root)]
    try:
        with io.open_append(d / "log.txt") as log:  # never through a symlink planted in the run folder
            proc = subprocess.Popen(wrapper, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    except OSError as exc:
        _update(r["run_id"], root, state="failed", message=f"could not start: {exc}", ended=time.time())
        return None
    _CHILDREN[proc.pid] = proc
    _update(r["run_id"], root, state="running", pid=proc.pid, pgid=proc.pid, started=time.time(),
            pid_start=_proc_start_time(proc.pid))
    return r["run_id"]


def poll(root: str | Path | Sequence[str | Path] | None = None) -> list[dict]:
    """What the dashboard calls periodically: start_next on the first root (the one runs start
    in), refresh of the others that exist (older folders), list_runs of all. Reaps the wrappers
    this process started that have ended (no ``<defunct>`` processes pile up)."""
    _reap()
    roots = _roots(root)
    start_next(roots[0])
    for other in roots[1:]:
        if other.is_dir():
            refresh(other)
    return list_runs(roots)


def cancel(run_id: str, root: str | Path | None = None, grace_s: float = 3.0) -> dict:
    """Cancel a queued run, or kill a running run's processes (TERM, then KILL). A run that
    already ended (or ends while the cancel lands) keeps its own final state."""
    root = _root(root)
    with _locked(root):
        st = read_status(run_id, root)
        if st["state"] == "queued":
            return _update(run_id, root, state="cancelled", ended=time.time())
        if st["state"] != "running":
            return st
        d = Path(st["dir"])
        if _exit_code(d) is None:
            _kill(st, grace_s)
        # killed, the wrapper records nothing: an exit code now was written before the signal
        code = _exit_code(d)
        if code is not None:
            return _update(run_id, root, state="done" if code == 0 else "failed", exit_code=code,
                           ended=time.time())
        return _update(run_id, root, state="cancelled", ended=time.time())



def _run_wrapped(d: Path, root: Path) -> int:
    """The wrapper: rebuild the command from the checked job, run it (output -> inherited log),
    kill its strays, record its exit code, advance the queue."""
    st = _read_json(d / "status.json") or {}
    try:
        argv = job_spec.argv(st.get("job"), d)
    except errors.ConfigError as exc:
        print(f"not run: {exc}", flush=True)
        code = 126
    else:
        try:
            code = subprocess.call(argv, cwd=REPO, stdin=subprocess.DEVNULL)
        except OSError as exc:
            print(f"could not start {argv[:1]}: {exc}", flush=True)
            code = 127
    code = 128 - code if code < 0 else code  # killed by signal N -> 128 + N, as a shell reports
    _kill({"pgid": os.getpgrp(), "dir": str(d)}, grace_s=1.0)
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
