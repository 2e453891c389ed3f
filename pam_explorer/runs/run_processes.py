"""The processes of a run: its process group's live members that carry its folder (standard
library only; see :mod:`.jobs`).

Linux ``/proc`` is read for process state, group and environment; without it a run's group is
only probed with signal 0. Also reaps the wrappers this process started (no zombies) and reads
the exit code the wrapper records.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

RUN_ENV = "PAM_RUN_DIR"  # every process of a run carries its folder in this variable

_CHILDREN: dict[int, subprocess.Popen] = {}  # reaps children of this process (no zombies)


# --------------------------------------------------------------------------- processes
def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state first), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()


def _proc_start_time(pid: int) -> str | None:
    """Start time of ``pid`` (clock ticks since boot) or None if it is gone or a zombie."""
    fields = _proc_stat(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return fields[19]


def _reap() -> None:
    for pid, child in list(_CHILDREN.items()):
        if child.poll() is not None:
            _CHILDREN.pop(pid, None)


def _carries(pid: int, run_dir_: str) -> bool:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"{RUN_ENV}={run_dir_}".encode() in env


def _members(st: Mapping) -> list[int]:
    """Live processes of the run ``st`` (not this one): its wrapper, known by the pid and start
    time recorded when it was started, and its process group's members that carry its folder in
    PAM_RUN_DIR. Without /proc: the group if it exists (less strict).

    The wrapper counts by pid and start time, not by its environment: for a moment after the
    process is started, while the kernel is still setting up its new program, its
    /proc/<pid>/environ is empty, and a reader that polled then used to find no process and
    mark a running run failed."""
    _reap()
    pgid = st.get("pgid", st.get("pid"))  # runs of older versions: the wrapper led the group
    if not isinstance(pgid, int) or isinstance(pgid, bool) or pgid <= 1:
        return []
    if not Path("/proc/self/stat").exists():
        if pgid == os.getpgrp():
            return []
        try:
            os.killpg(pgid, 0)
            return [pgid]
        except OSError:
            return []
    wrapper = st.get("pid")
    start = st.get("pid_start")
    if not (isinstance(wrapper, int) and start and _proc_start_time(wrapper) == start):
        wrapper = None
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        fields = _proc_stat(int(entry.name))
        if fields and fields[0] not in ("Z", "X") and fields[2] == str(pgid) \
                and (int(entry.name) == wrapper or _carries(int(entry.name), str(st.get("dir", "")))):
            found.append(int(entry.name))
    if wrapper is not None and wrapper not in found and wrapper != os.getpid():
        found.append(wrapper)  # still setting up its session: counted as long as it lives
    return found


def _kill(st: Mapping, grace_s: float) -> None:
    """TERM every process of the run, then KILL what is left after ``grace_s``; returns when
    none lives (or after a few more seconds)."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 3.0)):
        deadline = time.time() + wait_s
        while time.time() < deadline:
            pids = _members(st)
            if not pids:
                return
            for pid in pids:  # again each round: a child forked meanwhile is hit too
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            time.sleep(0.05)


def _exit_code(d: Path) -> int | None:
    try:
        return int((d / "exit_code").read_text().strip())
    except (OSError, ValueError):
        return None
