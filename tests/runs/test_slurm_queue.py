"""What Slurm says about a driver's jobs (runs/slurm_queue.py) and the Slurm handle (runs/slurm.py),
without a cluster: squeue's answers are given as text, as squeue prints them. The real scheduler
runs in tests/runs/test_slurm_cluster.py."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
from pathlib import Path

import pytest

from pam_explorer.cli.commands import dry_run_text
from pam_explorer.core.errors import ConfigError
from pam_explorer.runs import slurm, slurm_queue
from pam_explorer.runs.executors import Task
from pam_explorer.runs.slurm_queue import GONE, JobInfo, Journal, SlurmQueue

# squeue --noheader --array --states=all --format=%i|%T|%r|%k, as Slurm 22.05 prints it
SQUEUE = """\
12_0|COMPLETED|None|pam-tag
12_1|RUNNING|None|pam-tag
12_2|PENDING|JobHeldAdmin|pam-tag
12_3|CANCELLED|JobHeldAdmin|pam-tag
15|PENDING|Resources|(null)
"""


class Squeue:
    """A stand-in for squeue/sinfo: records each command, answers ``stdout`` (or fails)."""

    def __init__(self, stdout: str = SQUEUE, returncode: int = 0, stderr: str = "") -> None:
        self.stdout, self.returncode, self.stderr = stdout, returncode, stderr
        self.calls: list[list[str]] = []

    def __call__(self, cmd: list[str]) -> subprocess.CompletedProcess:
        self.calls.append(cmd)
        return subprocess.CompletedProcess(cmd, self.returncode, self.stdout, self.stderr)


def test_query_reads_array_tasks_states_reasons_and_comments():
    run = Squeue()
    found = slurm_queue.query(["12_1", "12_2", "12_3", "15", "16"], run)
    assert found == {"12_1": JobInfo("12_1", "RUNNING", "None", "pam-tag"),
                     "12_2": JobInfo("12_2", "PENDING", "JobHeldAdmin", "pam-tag"),
                     "12_3": JobInfo("12_3", "CANCELLED", "JobHeldAdmin", "pam-tag"),
                     "15": JobInfo("15", "PENDING", "Resources", "")}  # 12_0 was not asked for; 16 not listed
    assert run.calls == [["squeue", "--noheader", "--array", "--states=all", "--jobs=12,15,16",
                          "--format=%i|%T|%r|%k"]]
    assert [i.active for i in found.values()] == [True, True, False, True]


def test_query_no_listed_id_is_an_answer_a_failure_is_not():
    assert slurm_queue.query(["99"], Squeue("", 1, "slurm_load_jobs error: Invalid job id specified")) == {}
    assert slurm_queue.query(["99"], Squeue("", 1, "Unable to contact slurm controller")) is None
    assert slurm_queue.query([], Squeue()) == {}


@pytest.mark.parametrize("state, word", [
    ("PENDING", "pending"), ("REQUEUED", "pending"), ("RUNNING", "running"), ("COMPLETING", "running"),
    ("COMPLETED", "completed"), ("CANCELLED", "failed"), ("TIMEOUT", "failed"), ("OUT_OF_MEMORY", "failed"),
    ("NODE_FAIL", "failed"), (GONE, "unknown"), (None, "unknown")])
def test_summary_words(state, word):
    assert slurm_queue.summary(state) == word


def test_queue_asks_once_for_all_active_jobs_and_marks_unlisted_ones_gone():
    run = Squeue()
    q = SlurmQueue(min_s=0, max_s=0, run=run)
    for j in ("12_1", "12_3", "77"):
        q.watch(j)
    assert q.info("12_1").state == "RUNNING" and len(run.calls) == 1
    assert q.info("77").state == GONE and q.info("12_3").state == "CANCELLED"
    asked = run.calls[-1][4]
    assert asked == "--jobs=12"  # ended jobs (12_3 CANCELLED, 77 gone) are no longer asked for
    run.returncode, run.stderr = 1, "Unable to contact slurm controller"
    assert q.info("12_1").state == "RUNNING"  # no answer: what was known stays


def test_queue_backs_off_after_a_submission(monkeypatch):
    """Asked at 0 s, then whenever half the time since the submission has passed (at least 2 s,
    at most 30 s): 2, 4, 8, 16, 32, then every 30 s."""
    now = [1000.0]
    monkeypatch.setattr(slurm_queue.time, "monotonic", lambda: now[0])
    run = Squeue()
    q = SlurmQueue(min_s=2, max_s=30, run=run)
    q.watch("12_1")
    asked_at = []
    for t in range(200):
        now[0] = 1000.0 + t
        before = len(run.calls)
        q.info("12_1")
        if len(run.calls) > before:
            asked_at.append(t)
    assert asked_at == [0, 2, 4, 8, 16, 32, 62, 92, 122, 152, 182]


def test_journal_round_trip_latest_and_a_broken_file(tmp_path):
    j = Journal(tmp_path / "submitit")
    j.add([("B1_s0", "12_0"), ("PAM_a0.1_s0", "12_1")])
    j.add([("PAM_a0.1_s0", "15")])  # its retry
    again = Journal(tmp_path / "submitit")
    assert again.latest() == {"B1_s0": "12_0", "PAM_a0.1_s0": "15"} and len(again.entries) == 3
    assert again.tag == slurm_queue.folder_tag(tmp_path / "submitit") and again.tag.startswith("pam-")
    assert again.tag != slurm_queue.folder_tag(tmp_path / "other")
    (tmp_path / "submitit" / "jobs.json").write_text("{not json")
    assert Journal(tmp_path / "submitit").entries == []


def test_attachable_only_active_jobs_with_this_folders_tag(tmp_path):
    j = Journal(tmp_path)
    j.add([("a", "12_1"), ("b", "12_2"), ("c", "12_3"), ("d", "15"), ("e", "16")])
    run = Squeue(SQUEUE.replace("pam-tag", j.tag))
    found = slurm_queue.attachable(j, ["a", "b", "c", "d", "e", "f"], run)
    # a running, b held (still queued); c cancelled; d another folder's job (reused id); e and f unknown
    assert {k: v.job_id for k, v in found.items()} == {"a": "12_1", "b": "12_2"}


def test_job_rows_give_the_dashboard_states_and_logs(tmp_path):
    j = Journal(tmp_path)
    j.add([("B1_s0", "12_0"), ("PAM_a0.1_s0", "12_3")])
    j.add([("PAM_a0.1_s0", "15")])
    rows = slurm_queue.job_rows(tmp_path, Squeue())
    assert [(r["label"], r["job_id"], r["slurm"], r["submissions"]) for r in rows] == [
        ("B1_s0", "12_0", "completed", 1), ("PAM_a0.1_s0", "15", "pending", 2)]
    assert rows[1]["stderr"] == str(tmp_path / "15" / "15_0_log.err")
    assert rows[0]["stdout"] == str(tmp_path / "12_0" / "12_0_0_log.out")
    unknown = slurm_queue.job_rows(tmp_path, Squeue("", 1, "Unable to contact slurm controller"))
    assert {r["slurm"] for r in unknown} == {"unknown"}
    assert slurm_queue.job_rows(tmp_path / "none", Squeue()) == []


def test_partitions_default_first():
    assert slurm_queue.partitions(Squeue("gpu\ncpu*\ndebug\n")) == ["cpu", "debug", "gpu"]
    assert slurm_queue.partitions(Squeue("", 1)) == []


# --------------------------------------------------------------------------- the Slurm handle
class FakeJob:
    """A submitit job with its paths under ``folder``; ``finish()`` writes what the job's
    ``run_task_json`` writes."""

    def __init__(self, folder: Path, job_id: str, value: dict | None = None) -> None:
        from submitit.core.utils import JobPaths

        self.job_id, self.value, self.cancelled = job_id, value, False
        self.paths = JobPaths(folder / "%j", job_id)

    def finish(self) -> None:
        self.paths.folder.mkdir(parents=True, exist_ok=True)
        (self.paths.folder / slurm.RESULT_FILE).write_text(json.dumps({"ok": True, "result": self.value}))

    def result(self) -> dict:
        raise AssertionError("the driver must not load submitit's result pickle")

    def cancel(self, check: bool = False) -> None:
        self.cancelled = True


def handle(tmp_path, state: str, reason: str = "None", value=None):
    job = FakeJob(tmp_path, "12_3", value)
    q = SlurmQueue(min_s=0, max_s=0, run=Squeue(f"12_3|{state}|{reason}|t\n"))
    q.watch(job.job_id)
    t = Task("x", __name__, None, str(tmp_path), "PAM_a0.1_s0", "PAM")
    return slurm._SlurmHandle(job, t, q), job


def test_handle_done_when_the_result_json_exists_without_asking_slurm(tmp_path):
    h, job = handle(tmp_path, "RUNNING", value={"source": "computed", "seconds": 2.5})
    assert h.poll() is None
    job.finish()
    calls = len(h.queue._run.calls)
    outcome = h.poll()
    assert outcome.ok and outcome.seconds == 2.5 and outcome.result["source"] == "computed"
    assert len(h.queue._run.calls) == calls


class _Planted:
    def __reduce__(self):
        return (Path.touch, (Path(os.environ["PAM_PLANTED"]),))


def test_a_planted_result_pickle_is_never_loaded(tmp_path, monkeypatch):
    """A pickle written into the job folder by someone else runs nothing in the driver: the
    result is read from JSON, and a result pickle alone is not a result."""
    marker = tmp_path / "ran"
    monkeypatch.setenv("PAM_PLANTED", str(marker))
    h, job = handle(tmp_path, "RUNNING")
    job.paths.result_pickle.parent.mkdir(parents=True)
    job.paths.result_pickle.write_bytes(pickle.dumps(("success", _Planted())))
    assert h.poll() is None and not marker.exists()
    (job.paths.folder / slurm.RESULT_FILE).write_text("[1, 2]")
    outcome = h.poll()
    assert not outcome.ok and "no result object" in outcome.message and not marker.exists()


def test_handle_cancelled_fails_at_once_with_a_note_in_its_log(tmp_path):
    h, job = handle(tmp_path, "CANCELLED", "JobHeldAdmin")
    outcome = h.poll()
    assert not outcome.ok
    assert outcome.message == "Slurm job 12_3 ended CANCELLED (JobHeldAdmin) without a result"
    assert outcome.log == str(job.paths.stderr)
    assert "PAM_a0.1_s0: Slurm job 12_3 ended CANCELLED" in Path(outcome.log).read_text()


def test_handle_other_ends_wait_for_the_shared_filesystem(tmp_path, monkeypatch):
    h, job = handle(tmp_path, "FAILED", "NonZeroExitCode")
    job.paths.stderr.parent.mkdir(parents=True)
    job.paths.stderr.write_text("Traceback: the job's own error\n")
    assert h.poll() is None  # its pickle may still appear (GRACE_S)
    monkeypatch.setattr(slurm, "GRACE_S", 0.0)
    outcome = h.poll()
    assert not outcome.ok and "ended FAILED (NonZeroExitCode)" in outcome.message
    assert Path(outcome.log).read_text() == "Traceback: the job's own error\n"  # its own log, kept


def test_dry_run_text_counts_re_attached_jobs():
    plan = {"executor": "slurm", "resources": {"partition": "cpu"}, "missing": None, "done": [],
            "alphas": [0.1], "jobs": [{"job": "B1_s0", "kind": "B1", "alpha": None, "seed": 0,
                      "state": "re-attach to Slurm job 12_0 (PENDING)", "slurm_job": "12_0"},
                     {"job": "PAM_a0.1_s0", "kind": "PAM", "alpha": 0.1, "seed": 0, "state": "to run"}]}
    text = dry_run_text(plan)
    assert "1 job(s) would be submitted, 1 re-attached:" in text
    assert "B1_s0" in text and "(re-attach to Slurm job 12_0 (PENDING))" in text


def test_an_unknown_partition_is_refused_before_anything_runs(monkeypatch):
    monkeypatch.setattr(slurm.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(slurm_queue, "partitions", lambda run=None: ["cpu", "gpu"])
    with pytest.raises(ConfigError, match=r"--slurm-partition 'gpux' is not a partition .*\['cpu', 'gpu'\]"):
        slurm.check_executor("slurm", "gpux")
    slurm.check_executor("slurm", "gpu")
    slurm.check_executor("slurm")  # the cluster's default partition
    monkeypatch.setattr(slurm_queue, "partitions", lambda run=None: [])  # sinfo cannot answer: sbatch decides
    slurm.check_executor("slurm", "gpux")


def test_the_cluster_script_says_why_there_is_no_cluster(tmp_path):
    """scripts/slurm_local.sh status on an empty state folder: down (exit 1) with how to start it, or
    (exit 2) why it cannot start on this machine; the Slurm tests skip with this line."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "slurm_local.sh"
    proc = subprocess.run(["bash", str(script), "status"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PAM_SLURM_DIR": str(tmp_path / "none")})
    assert (proc.returncode, proc.stdout.strip()) == (
        1, f"down: no cluster in {tmp_path / 'none'} (start it: scripts/slurm_local.sh start)") \
        or (proc.returncode == 2 and proc.stdout.startswith("cannot start here: "))
    assert not (tmp_path / "none").exists()  # status writes nothing
    usage = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 64 and "start|stop|status" in usage.stderr


def test_cancel_jobs_cancels_only_this_folders_active_jobs(tmp_path):
    j = Journal(tmp_path)
    j.add([("a", "12_1"), ("b", "12_2"), ("c", "12_3"), ("d", "15")])
    run = Squeue(SQUEUE.replace("pam-tag", j.tag))
    assert slurm_queue.cancel_jobs(tmp_path, run) == ["12_1", "12_2"]  # not 12_3 (ended), 15 (not ours)
    assert run.calls[-1] == ["scancel", "12_1", "12_2"]
    calls = len(run.calls)
    assert slurm_queue.cancel_jobs(tmp_path / "none", run) == [] and len(run.calls) == calls  # no journal
