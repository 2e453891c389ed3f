"""Safety of run folders and background runs (issue 13): only checked job specs execute, a run
follows its whole process group, a cancel never relabels a finished run, one writer per folder,
and runs are read from the new root and the old one."""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pam_explorer.core import paths
from pam_explorer.core.errors import ConfigError, RunConflict
from pam_explorer.runs import job_spec, jobs, outdir

REPO = Path(__file__).resolve().parents[2]
LEGACY_RUN = next((REPO / "tests" / "fixtures" / "legacy" / "runs").iterdir())


@pytest.fixture(autouse=True)
def _selftest_jobs(monkeypatch):
    monkeypatch.setenv("PAM_JOBS_SELFTEST", "1")


def job(**args) -> dict:
    return {"command": "selftest", "args": args}


def wait(cond, timeout=10.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def plant(root: Path, run_id: str, status: dict) -> Path:
    d = root / run_id
    d.mkdir(parents=True)
    (d / "status.json").write_text(json.dumps(status))
    return d


# --------------------------------------------------------------------------- item 5: only checked jobs run
PAYLOADS = {
    "old-argv": {"argv": ["touch", "{marker}"]},
    "unknown-command": {"job": {"command": "touch", "args": {}}},
    "flag-injection": {"job": {"command": "experiment", "args": {"preset": "--out={marker}"}}},
    "path-argument": {"job": {"command": "experiment", "args": {"out": "{marker}"}}},
    "extra-key": {"job": {"command": "experiment", "args": {}, "argv": ["touch", "{marker}"]}},
}


@pytest.mark.parametrize("payload", PAYLOADS, ids=list(PAYLOADS))
def test_planted_status_json_executes_nothing(tmp_path, payload):
    root, marker = tmp_path / "runs", tmp_path / "PWNED"
    fields = json.loads(json.dumps(PAYLOADS[payload]).replace("{marker}", str(marker)))
    d = plant(root, "20260101-000000-planted", {"state": "queued", "created": 1.0, **fields})
    assert jobs.poll(root)[0]["state"] == "failed"
    st = jobs.read_status("20260101-000000-planted", root)
    assert st["message"].startswith("not started, nothing was run: job spec"), st["message"]
    time.sleep(0.3)
    assert not marker.exists() and not (d / "log.txt").exists()


def test_the_wrapper_itself_refuses_a_planted_job(tmp_path):
    """Defence in depth: status.json rewritten between the check and the start."""
    root, marker = tmp_path / "runs", tmp_path / "PWNED"
    d = plant(root, "r", {"state": "running", "argv": ["touch", str(marker)]})
    wrapper = [sys.executable, "-I", str(Path(jobs.__file__)), "_run", str(d), str(root)]
    out = subprocess.run(wrapper, capture_output=True, text=True, timeout=30)
    assert "not run: job spec" in out.stdout and (d / "exit_code").read_text() == "126\n"
    assert not marker.exists()


@pytest.mark.parametrize("spec, needle", [
    ({"command": "rm", "args": {}}, "'rm' is not one of ['experiment', 'merge', 'sweep', 'train']"),
    ({"command": "experiment", "args": {"out": "/etc"}}, "unknown argument(s) ['out']"),
    ({"command": "experiment", "args": {"preset": "-rf"}}, "experiment preset: must be a name"),
    ({"command": "experiment", "args": {"preset": "../x"}}, "experiment preset: must be a name"),
    ({"command": "experiment", "args": {"alpha": float("nan")}}, "experiment alpha: must be a finite number"),
    ({"command": "experiment", "args": {"seed": True}}, "experiment seed: must be a non-negative integer"),
    ({"command": "experiment", "args": {"quick": "yes"}}, "experiment quick: must be true or false"),
    ({"command": "experiment", "args": {"device": "cuda; rm -rf /"}}, "experiment device: must be auto"),
    ({"command": "merge", "args": {"overrides": {"conv1": "x"}}}, "merge overrides: must be a finite number"),
    (["python", "-c", "print(1)"], "a run needs a job"),
])
def test_submit_checks_the_job_spec(tmp_path, spec, needle):
    with pytest.raises(ConfigError) as exc:
        jobs.submit(spec, tmp_path)
    assert needle in str(exc.value)
    assert list(tmp_path.iterdir()) == []


def test_selftest_needs_its_environment_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("PAM_JOBS_SELFTEST")
    with pytest.raises(ConfigError, match="PAM_JOBS_SELFTEST=1"):
        jobs.submit(job(), tmp_path)


def test_argv_is_rebuilt_from_the_spec():
    spec = {"command": "merge", "args": {"preset": "digits-2task", "alpha": 0.5, "overrides": {"conv1": 0.1},
                                         "finetune_epochs": 2, "device": "cpu"}}
    assert job_spec.argv(spec, "/r/d") == [
        sys.executable, "-m", "pam_explorer", "merge", "--preset", "digits-2task", "--alpha", "0.5",
        "--override", "conv1=0.1", "--finetune-epochs", "2", "--device", "cpu", "--out", "/r/d"]
    exp = {"command": "experiment", "args": {"preset": "digits-2task", "schemes": ["PAM"], "quick": True}}
    assert job_spec.describe(exp) == "experiment --preset digits-2task --schemes PAM --quick"


def test_old_format_runs_are_listed_and_read_not_executed(tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(LEGACY_RUN, root / LEGACY_RUN.name)
    (run,) = jobs.poll(root)
    assert run["state"] == "done" and jobs.report(run["run_id"], root)["schemes"]
    assert jobs.describe(run).endswith("(older format: shown, not executed)")
    assert "--quick" in jobs.describe(run)


# --------------------------------------------------------------------------- item 6: the process group
def _command_pid(st: dict) -> int:
    others = [p for p in jobs._members(st) if p != st["pid"]]
    assert len(others) == 1, others
    return others[0]


def test_killed_wrapper_leaves_a_running_cancellable_run_that_blocks_the_queue(tmp_path):
    root = tmp_path / "runs"
    rid = jobs.submit(job(sleep=30), root)
    nxt = jobs.submit(job(), root)
    assert jobs.start_next(root) == rid
    st = jobs.read_status(rid, root)
    assert st["pgid"] == st["pid"]
    wait(lambda: len(jobs._members(st)) == 2, what="the command")
    command = _command_pid(st)
    os.kill(st["pid"], signal.SIGKILL)  # the wrapper only
    wait(lambda: jobs._members(st) == [command], what="the wrapper to die")
    states = {r["run_id"]: r["state"] for r in jobs.poll(root)}
    assert states == {rid: "running", nxt: "queued"}  # the command still works: it stays running
    assert jobs.cancel(rid, root, grace_s=2.0)["state"] == "cancelled"
    assert jobs._members(st) == [] and jobs._proc_start_time(command) is None
    assert jobs.start_next(root) == nxt


def test_run_fails_only_when_its_last_process_is_gone(tmp_path):
    root = tmp_path / "runs"
    rid = jobs.submit(job(sleep=30), root)
    jobs.start_next(root)
    st = jobs.read_status(rid, root)
    wait(lambda: len(jobs._members(st)) == 2, what="the command")
    command = _command_pid(st)
    os.kill(st["pid"], signal.SIGKILL)
    wait(lambda: jobs._members(st) == [command], what="the wrapper to die")
    assert jobs.refresh(root)[0]["state"] == "running"
    os.kill(command, signal.SIGKILL)
    wait(lambda: not jobs._members(st), what="the command to die")
    (run,) = jobs.refresh(root)
    assert run["state"] == "failed" and "without recording an exit code" in run["message"]


def test_a_planted_pgid_never_matches_other_processes(tmp_path):
    """A status.json naming this very process group: cancel must not signal anything of ours."""
    root = tmp_path / "runs"
    plant(root, "r", {"state": "running", "job": job(), "pid": os.getpgrp(), "pgid": os.getpgrp()})
    assert jobs._members(jobs.read_status("r", root)) == []
    assert jobs.cancel("r", root)["state"] == "cancelled"  # and this test process is still alive


# --------------------------------------------------------------------------- item 14: cancel race
def test_cancel_landing_as_the_run_finishes_keeps_done(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    rid = jobs.submit(job(sleep=30), root)
    jobs.start_next(root)
    st = jobs.read_status(rid, root)
    wait(lambda: len(jobs._members(st)) == 2, what="the command")
    real_kill = jobs._kill

    def finish_then_kill(s, grace_s):  # the run records exit 0 just before the signal lands
        (Path(s["dir"]) / "exit_code").write_text("0\n")
        real_kill(s, grace_s)
    monkeypatch.setattr(jobs, "_kill", finish_then_kill)
    after = jobs.cancel(rid, root)
    assert after["state"] == "done" and after["exit_code"] == 0
    assert jobs._members(st) == []


def test_terminal_states_are_never_overwritten(tmp_path):
    root = tmp_path / "runs"
    for state in jobs.FINAL:
        plant(root, state, {"state": state, "job": job(), "exit_code": 0})
        assert jobs.cancel(state, root)["state"] == state
        jobs._update(state, root, state="running", pid=1)
        assert jobs.read_status(state, root)["state"] == state and "pid" not in jobs.read_status(state, root)


def test_cancel_of_a_run_that_already_recorded_its_exit_code(tmp_path):
    root = tmp_path / "runs"
    d = plant(root, "r", {"state": "running", "job": job(), "pid": 2 ** 22 + 9})
    (d / "exit_code").write_text("3\n")
    st = jobs.cancel("r", root)
    assert st["state"] == "failed" and st["exit_code"] == 3


# --------------------------------------------------------------------------- item 7: one writer per folder
def _writer(out: str, go, tried, results) -> None:
    go.wait()
    try:
        with outdir.claim(out, "experiment", {"seed": 0}, ("config.json",)):
            with tried.get_lock():
                tried.value += 1
            deadline = time.time() + 10  # hold until the other writer has tried
            while tried.value < 2 and time.time() < deadline:
                time.sleep(0.005)
            results.put("won")
    except RunConflict as exc:
        with tried.get_lock():
            tried.value += 1
        results.put(f"conflict: {exc}")


def test_two_concurrent_writers_one_wins(tmp_path):
    ctx = multiprocessing.get_context("fork")
    for trial in range(20):
        out = tmp_path / f"t{trial}"
        go, tried, results = ctx.Event(), ctx.Value("i", 0), ctx.Queue()
        procs = [ctx.Process(target=_writer, args=(str(out), go, tried, results)) for _ in range(2)]
        for p in procs:
            p.start()
        go.set()
        for p in procs:
            p.join(20)
        got = sorted(results.get(timeout=5) for _ in procs)
        assert got[1] == "won" and got[0].startswith("conflict: "), got
        assert "is being written by another command right now" in got[0]  # (pid N) once it is written
        assert sorted(p.name for p in out.iterdir()) == [outdir.MARKER]  # the lock file is gone


def test_lock_is_released_when_its_holder_is_killed(tmp_path):
    out = tmp_path / "o"
    code = ("import fcntl, os, sys, time; os.makedirs(sys.argv[1], exist_ok=True); "
            "fd = os.open(os.path.join(sys.argv[1], '.pam-run.lock'), os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(30)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunConflict, match="being written by another command"):
            with outdir.claim(out, "merge", {}):
                pass
    finally:
        holder.kill()
        holder.wait()
    with outdir.claim(out, "merge", {}):  # a stale lock file of a killed holder does not block
        pass
    assert not (out / outdir.LOCK).exists()


def test_same_config_reruns_and_force(tmp_path):
    out = tmp_path / "m"
    with outdir.claim(out, "merge", {"alpha": 0.5}, ("model.zip",)):
        (out / "model.zip").write_bytes(b"v1")
    with outdir.claim(out, "merge", {"alpha": 0.5}, ("model.zip",)):  # the same config: fine
        pass
    with pytest.raises(RunConflict, match=r"another configuration \(alpha: 0.5 there, 0.3 now\)"):
        with outdir.claim(out, "merge", {"alpha": 0.3}, ("model.zip",)):
            pass
    with outdir.claim(out, "merge", {"alpha": 0.3}, ("model.zip",), force=True):
        pass
    assert json.loads((out / outdir.MARKER).read_text()) == {"command": "merge", "config": {"alpha": 0.3}}
    # a field added since: the old marker's missing field counts as its default
    with outdir.claim(out, "merge", {"alpha": 0.3, "seeds": [0]}, defaults={"seeds": (0,)}):
        pass


# --------------------------------------------------------------------------- item 13: runs/, and the old root
def test_runs_root_moved_out_of_the_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("PAM_RUNS_ROOT", raising=False)
    monkeypatch.setattr(paths, "REPO", tmp_path)
    assert paths.runs_root() == tmp_path / "runs"
    assert paths.runs_roots() == [tmp_path / "runs", tmp_path / "cache" / "runs"]
    monkeypatch.setenv("PAM_RUNS_ROOT", str(tmp_path / "elsewhere"))
    assert paths.runs_roots() == [tmp_path / "elsewhere"]


def test_list_runs_reads_both_roots_new_first(monkeypatch, tmp_path):
    monkeypatch.delenv("PAM_RUNS_ROOT", raising=False)
    monkeypatch.setattr(paths, "REPO", tmp_path)
    new, old = tmp_path / "runs", tmp_path / "cache" / "runs"
    shutil.copytree(LEGACY_RUN, old / LEGACY_RUN.name)
    plant(old, "shadowed", {"state": "done", "created": 5.0, "name": "old"})
    plant(new, "shadowed", {"state": "done", "created": 6.0, "name": "new"})
    rid = jobs.submit(job(print="hi"), None)  # submitted to the new root
    assert (new / rid).is_dir()
    wait(lambda: {r["run_id"]: r for r in jobs.poll()}[rid]["state"] == "done", what="the run")
    runs = {r["run_id"]: r for r in jobs.list_runs()}
    assert set(runs) == {LEGACY_RUN.name, "shadowed", rid}
    assert runs[LEGACY_RUN.name]["root"] == str(old) and runs[rid]["root"] == str(new)
    assert runs["shadowed"]["name"] == "new"
    assert jobs.report(LEGACY_RUN.name, runs[LEGACY_RUN.name]["root"])["schemes"]
