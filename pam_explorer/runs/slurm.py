"""The submitit executors and the cluster's resources (STYLE §9): ``submitit-local`` and ``slurm``.

:class:`SubmititExecutor` is submitit's ``AutoExecutor`` with ``cluster="local"`` (each task a local
process, started through submitit's own code path) or ``cluster="slurm"`` (tasks go to ``sbatch``;
several at once as one job array, at most ``workers`` running, logs and pickles under the submitit
folder). submitit is imported only here. Its handles give the same :class:`Outcome` as the local
executor's (runs/executors.py).

:func:`check_executor` says what is missing (submitit, ``sbatch``) before anything is computed.
"""
from __future__ import annotations

import contextlib
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pam_explorer.core import validate
from pam_explorer.core.errors import ConfigError
from pam_explorer.runs.executors import EXECUTORS, Handle, Outcome, Task, one_line, run_task


@dataclass(frozen=True)
class Resources:
    """What one job asks a cluster for (Slurm); ``time_min`` also bounds submitit-local jobs."""

    partition: str | None = None  # Slurm partition (None: the cluster's default)
    gpus_per_job: int = 0
    cpus_per_job: int = 1
    mem_gb: float = 8.0
    time_min: int = 120  # wall-clock limit per job, minutes

    def __post_init__(self) -> None:
        if self.partition is not None and not (isinstance(self.partition, str) and self.partition):
            validate.fail(self, "partition", f"must be a partition name, got {self.partition!r}")
        validate.non_negative_int(self, "gpus_per_job")
        validate.positive_int(self, "cpus_per_job")
        validate.finite_positive(self, "mem_gb")
        validate.positive_int(self, "time_min")

    def slurm_parameters(self) -> dict:
        """submitit AutoExecutor parameters for Slurm."""
        params = {"timeout_min": self.time_min, "gpus_per_node": self.gpus_per_job, "nodes": 1,
                  "tasks_per_node": 1, "cpus_per_task": self.cpus_per_job, "mem_gb": self.mem_gb}
        if self.partition:
            params["slurm_partition"] = self.partition
        return params


class _SubmititHandle:
    def __init__(self, job: Any, t: Task) -> None:
        self.job, self.task = job, t

    def poll(self) -> Outcome | None:
        if not self.job.done():
            return None
        log = str(self.job.paths.stderr)
        try:
            result = self.job.result()
        except Exception as exc:  # submitit raises the job's failure (or a missing result)
            return Outcome(False, one_line(exc), log=log)
        return Outcome(True, "", result, result.get("seconds"), log)

    def cancel(self) -> None:
        with contextlib.suppress(Exception):
            self.job.cancel(check=False)


class SubmititExecutor:
    """submitit's AutoExecutor; ``cluster`` "local" or "slurm"."""

    def __init__(self, cluster: str, folder: Path, resources: Resources, workers: int | None,
                 threads: int) -> None:
        check_executor("slurm" if cluster == "slurm" else "submitit-local")
        import submitit

        self.kind = "slurm" if cluster == "slurm" else "submitit-local"
        self.threads = threads
        self._ex = submitit.AutoExecutor(folder=str(Path(folder) / "%j"), cluster=cluster)
        if cluster == "slurm":
            self._ex.update_parameters(name="pam-sweep", slurm_array_parallelism=workers or 256,
                                       **resources.slurm_parameters())
            self.capacity = None  # every ready task goes in at once, as one array
        else:
            self._ex.update_parameters(name="pam-sweep", timeout_min=resources.time_min)
            self.capacity = workers  # submitit's local executor starts whatever it is given

    def submit(self, tasks: Sequence[Task]) -> list[Handle]:
        if not tasks:
            return []
        ctx = self._ex.batch() if len(tasks) > 1 and self.kind == "slurm" else contextlib.nullcontext()
        with ctx:
            jobs = [self._ex.submit(run_task, t, self.threads) for t in tasks]
        return [_SubmititHandle(j, t) for j, t in zip(jobs, tasks)]

    def close(self) -> None:
        pass


def check_executor(kind: str) -> None:
    """ConfigError naming what ``kind`` needs and this machine lacks (submitit, sbatch)."""
    if kind not in EXECUTORS:
        raise ConfigError(f"--executor must be one of {list(EXECUTORS)}, got {kind!r}")
    if kind == "local":
        return
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise ConfigError(f"--executor {kind} needs submitit, which is not installed: "
                          "pip install submitit (nothing was computed)") from None
    if kind == "slurm" and shutil.which("sbatch") is None:
        raise ConfigError("--executor slurm needs Slurm's sbatch, which is not on PATH: run the sweep on "
                          "a node that submits Slurm jobs (a login node), or use --executor local "
                          "(nothing was computed)")


__all__ = ["Resources", "SubmititExecutor", "check_executor"]
