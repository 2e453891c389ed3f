"""Background runs: tiny `selftest` jobs through pam_explorer.runs.jobs (all state on disk)."""
import time
from pathlib import Path

import pytest

from pam_explorer.core.errors import QueueFull
from pam_explorer.runs import jobs
from tests.helpers import wait_for


@pytest.fixture(autouse=True)
def _selftest_jobs(monkeypatch):
    monkeypatch.setenv("PAM_JOBS_SELFTEST", "1")


def job(**args) -> dict:
    """A selftest job: print / stderr / sleep / exit / progress / report (see runs/job_spec.py)."""
    return {"command": "selftest", "args": args}




def test_done_log_and_progress(tmp_path):
    spec = job(print="hello", stderr="to stderr", progress={"stage": "x", "fraction": 0.5, "message": "half"})
    rid = jobs.submit(spec, tmp_path, name="ok run")
    st = jobs.read_status(rid, tmp_path)
    assert st["state"] == "queued" and st["job"] == spec and "argv" not in st
    assert jobs.start_next(tmp_path) == rid
    st = wait_for(tmp_path, rid)
    assert st["state"] == "done" and st["exit_code"] == 0
    tail = jobs.log_tail(rid, 5, tmp_path)
    assert "hello" in tail and "to stderr" in tail
    assert jobs.progress(rid, tmp_path) == {"stage": "x", "fraction": 0.5, "message": "half"}


def test_failed(tmp_path):
    rid = jobs.submit(job(print="boom", exit=3), tmp_path)
    jobs.start_next(tmp_path)
    st = wait_for(tmp_path, rid)
    assert st["state"] == "failed" and st["exit_code"] == 3
    assert "boom" in jobs.log_tail(rid, 10, tmp_path)


def test_cancel_running_and_queued(tmp_path):
    rid = jobs.submit(job(print="start", sleep=60), tmp_path)
    queued = jobs.submit(job(), tmp_path)
    assert jobs.start_next(tmp_path) == rid
    wait_for(tmp_path, rid, states=("running",))
    pid = jobs.read_status(rid, tmp_path)["pid"]
    t0 = time.time()
    assert jobs.cancel(queued, tmp_path)["state"] == "cancelled"
    assert jobs.cancel(rid, tmp_path)["state"] == "cancelled"
    assert time.time() - t0 < 5
    assert jobs._proc_start_time(pid) is None  # process group gone (or a reaped zombie)
    jobs.poll(tmp_path)  # a cancelled queued run is never started
    assert [r["state"] for r in jobs.list_runs(tmp_path)] == ["cancelled", "cancelled"]


def test_queue_order_one_at_a_time(tmp_path):
    root = tmp_path / "runs"
    first = jobs.submit(job(sleep=0.3), root)
    jobs.start_next(root)
    second = jobs.submit(job(sleep=0.3), root)
    third = jobs.submit(job(sleep=0.3), root)
    with pytest.raises(QueueFull):  # two queued already
        jobs.submit(job(), root)
    states = [r["state"] for r in jobs.poll(root)]
    assert states.count("running") <= 1
    for rid in (first, second, third):
        # no poll needed: the wrapper of each run starts the next one when it ends
        deadline = time.time() + 20
        while jobs.read_status(rid, root)["state"] != "done" and time.time() < deadline:
            assert sum(r["state"] == "running" for r in jobs.list_runs(root)) <= 1
            time.sleep(0.05)
            jobs.refresh(root)
        assert jobs.read_status(rid, root)["state"] == "done"
    # in order, one after the other: each started after the previous one recorded its exit code
    ended = [(root / rid / "exit_code").stat().st_mtime for rid in (first, second, third)]
    started = [jobs.read_status(rid, root)["started"] for rid in (first, second, third)]
    assert started[0] < ended[0] <= started[1] + 0.01 < ended[1] <= started[2] + 0.01 < ended[2]


def test_state_survives_restart(tmp_path):
    rid = jobs.submit(job(exit=1), tmp_path)
    jobs.start_next(tmp_path)
    st = jobs.read_status(rid, tmp_path)
    deadline = time.time() + 10
    while not (Path(st["dir"]) / "exit_code").exists() and time.time() < deadline:
        time.sleep(0.05)
    jobs._CHILDREN.clear()  # a restarted app knows nothing but the files
    assert [r["state"] for r in jobs.refresh(tmp_path)] == ["failed"]
    # a 'running' run whose process vanished without an exit code -> failed, with a message
    ghost = jobs.submit(job(), tmp_path)
    jobs._update(ghost, tmp_path, state="running", pid=2 ** 22 + 7, pid_start="1")
    runs = {r["run_id"]: r for r in jobs.refresh(tmp_path)}
    assert runs[ghost]["state"] == "failed" and "exit code" in runs[ghost]["message"]
    assert runs[rid]["state"] == "failed" and runs[rid]["exit_code"] == 1


def test_bad_run_id_and_empty_job(tmp_path):
    with pytest.raises(ValueError):
        jobs.run_dir("../x", tmp_path)
    with pytest.raises(ValueError):
        jobs.submit({}, tmp_path)
    assert jobs.list_runs(tmp_path / "none") == []
    assert jobs.log_tail("nope", 5, tmp_path) == "" and jobs.progress("nope", tmp_path) is None


def test_command_killed_outside_is_failed_with_signal_code(tmp_path):
    """A `pkill -f <command>` elsewhere hits only the command: the wrapper records 128 + signal."""
    import os
    import signal
    rid = jobs.submit(job(sleep=60), tmp_path)
    jobs.start_next(tmp_path)
    wrapper = jobs.read_status(rid, tmp_path)["pid"]
    children = Path(f"/proc/{wrapper}/task/{wrapper}/children")
    if not children.exists():
        pytest.skip("needs /proc/<pid>/task/<pid>/children")
    deadline = time.time() + 10
    while not children.read_text().split() and time.time() < deadline:
        time.sleep(0.05)
    os.kill(int(children.read_text().split()[0]), signal.SIGTERM)
    st = wait_for(tmp_path, rid)
    assert st["state"] == "failed" and st["exit_code"] == 128 + signal.SIGTERM
