"""The run-state race of issue 25, item 8, made deterministic.

A run is started by a wrapper process; the state reader (refresh/poll, under the root lock)
tells a running run from a dead one by its processes. Right after the wrapper is started the
kernel may still be setting up its new program: its /proc/<pid>/environ is empty then, so it
does not yet carry PAM_RUN_DIR. A poll that landed there (one launch in six under load 7) found
"no process" and marked the run failed 5 ms after it started, while it went on running; the
queue then started the next run beside it. Here the wrapper is held exactly in that state (a
live process of the run's group whose environment does not carry the run folder yet) until the
test lets it go, instead of hoping for load.
"""
from __future__ import annotations

import subprocess
import sys
import types

import pytest

from pam_explorer.runs import jobs
from tests.helpers import wait_for

# holds until the go-file exists, then becomes the real wrapper with the run folder in its environment
_HOLD = """import os, sys, time
go, name, value, argv = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
while not os.path.exists(go):
    time.sleep(0.01)
os.execve(argv[0], argv, {**os.environ, name: value})
"""


@pytest.fixture(autouse=True)
def _selftest_jobs(monkeypatch):
    monkeypatch.setenv("PAM_JOBS_SELFTEST", "1")


@pytest.fixture()
def held_wrapper(monkeypatch, tmp_path):
    """jobs._start's wrapper starts held (without PAM_RUN_DIR) until ``go`` is touched."""
    go = tmp_path / "go"
    real = subprocess.Popen

    def popen(argv, env, **kw):
        held_env = {k: v for k, v in env.items() if k != jobs.RUN_ENV}
        return real([sys.executable, "-c", _HOLD, str(go), jobs.RUN_ENV, env[jobs.RUN_ENV], *argv],
                    env=held_env, **kw)
    fake = types.SimpleNamespace(Popen=popen, STDOUT=subprocess.STDOUT, DEVNULL=subprocess.DEVNULL)
    monkeypatch.setattr(jobs, "subprocess", fake)
    yield go
    go.write_text("")  # a failed test leaves no process waiting: held wrappers run their job and end


def test_a_run_polled_while_its_wrapper_starts_stays_running(tmp_path, held_wrapper):
    root = tmp_path / "runs"
    first = jobs.submit({"command": "selftest", "args": {"print": "first"}}, root)
    second = jobs.submit({"command": "selftest", "args": {"print": "second"}}, root)
    assert jobs.start_next(root) == first
    st = jobs.read_status(first, root)
    assert st["state"] == "running" and jobs._proc_start_time(st["pid"]) == st["pid_start"]
    for _ in range(3):  # the dashboard's polls while the wrapper is at the racy point
        runs = {r["run_id"]: r for r in jobs.poll(root)}
        assert runs[first]["state"] == "running", runs[first].get("message")
        assert runs[second]["state"] == "queued"  # one run at a time: the queue waits
    assert jobs.cancel(second, root)["state"] == "cancelled"
    held_wrapper.write_text("")
    st = wait_for(root, first)
    assert st["state"] == "done" and st["exit_code"] == 0 and "first" in jobs.log_tail(first, 5, root)


def test_a_wrapper_that_never_ran_its_command_is_still_failed_once_gone(tmp_path, held_wrapper):
    """The pid + start time identity ends with the process: a wrapper killed at the racy point
    leaves a failed run (no exit code), as any killed wrapper does."""
    root = tmp_path / "runs"
    rid = jobs.submit({"command": "selftest", "args": {}}, root)
    jobs.start_next(root)
    st = jobs.read_status(rid, root)
    assert jobs.poll(root)[0]["state"] == "running"
    jobs._CHILDREN[st["pid"]].kill()
    jobs._CHILDREN[st["pid"]].wait()
    st = wait_for(root, rid)
    assert st["state"] == "failed" and "without recording an exit code" in st["message"]
