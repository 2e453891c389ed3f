"""The alpha sweep: PAM finetuned and pruned at every alpha under every seed -> DIR/sweep.json.

What runs: one job per seed for the MI trajectories (skipped when cached), one job per seed for
B1 and for B2 (as in the experiment, shared with it through the stage cache), then one job per
(alpha, seed) point: PAM at that alpha. Jobs are independent; the queue holds the trajectories
first, then B1/B2 of every seed, then the points (alpha-major), which are added once the
trajectories they cut exist, so no two jobs ever compute the same thing. ``--alphas auto`` is
:func:`pam_explorer.regroup.alpha_grid.auto_alphas` over every seed's trajectories; the resolved
alphas are kept in DIR/plan.json, so a resumed sweep runs the same points.

Resumable: a point whose stage file is in DIR/stages is never rerun, one in the stage cache is
copied without a job; a failed job is retried once, then reported (its log in DIR/logs, or the
submitit folder) and the sweep goes on; rerunning the command runs only what is missing.
DIR/points.json (every job's state) and DIR/progress.json are what the dashboard reads;
DIR/sweep.json and sweep.md are rewritten after every finished stage (``complete`` at the end).
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pam_explorer.core import validate
from pam_explorer.core.errors import ConfigError, DataError, JobsFailed, RunConflict
from pam_explorer.core.io import write_json_atomic, write_text_atomic
from pam_explorer.core.paths import cache_root
from pam_explorer.core.subsets import all_subsets, parse_key, subset_key
from pam_explorer.data import get_preset
from pam_explorer.regroup.alpha_grid import auto_alphas
from pam_explorer.regroup.trajectories import cached_trajectories
from pam_explorer.runs import executors as ex
from pam_explorer.runs import outdir, scheduler, slurm, slurm_queue
from pam_explorer.runs import sweep_report as sr
from pam_explorer.runs.experiment_config import SCHEMES, ExperimentConfig
from pam_explorer.runs.outdir import claim
from pam_explorer.runs.stage_cache import StageCache
from pam_explorer.runs.stage_run import read_record, resolve_stage, stage_key_of
from pam_explorer.runs.sweep_tasks import StageJob, TrajectoryJob, context

OUTPUTS = ("sweep.json", "sweep.md", "plan.json", "points.json", "stages", "logs", "submitit")
Say = Callable[[str], None]


@dataclass(frozen=True)
class SweepConfig:
    """What a sweep computes (DIR holds one configuration). Fields and defaults as in
    ExperimentConfig (read from it: one place states them), plus ``alphas``: "auto" or the alphas
    (bits, finite, >= 0) and ``seeds``."""

    preset: str = ExperimentConfig.preset
    prune: str = ExperimentConfig.prune
    alphas: str | tuple[float, ...] = "auto"
    seeds: tuple[int, ...] = (0, 1, 2)
    finetune_epochs: int = ExperimentConfig.finetune_epochs
    quick: bool = ExperimentConfig.quick
    device: str = ExperimentConfig.device
    target_sparsity: float = ExperimentConfig.target_sparsity
    floor: str = ExperimentConfig.floor
    rank: str = ExperimentConfig.rank
    regroup: str = ExperimentConfig.regroup
    arch: str = ExperimentConfig.arch
    overrides: tuple[tuple[str, float], ...] = ExperimentConfig.overrides  # layers kept at a fixed alpha
    max_steps: int | None = ExperimentConfig.max_steps  # pruning turns per scheme (None: the default)
    prune_lr: float | None = ExperimentConfig.prune_lr  # pruning's finetuning lr (None: the default)
    schedule: str = ExperimentConfig.schedule  # "published" (curves) | "floor-greedy"
    delta: float = ExperimentConfig.delta  # the floor's tolerance (points)
    pace: str = ExperimentConfig.pace  # the published schedule's FLOPs pace
    merged_budget: str = ExperimentConfig.merged_budget  # B2's and PAM's training budget
    grid_step: float | None = ExperimentConfig.grid_step  # the checkpoint grid (None: the pace's)
    project_key: str | None = None  # a project's content key, filled in as ExperimentConfig's

    def __post_init__(self) -> None:
        if self.alphas != "auto":
            bad = [a for a in self.alphas if not validate.is_number(a) or a < 0] \
                if isinstance(self.alphas, tuple) and self.alphas else [self.alphas]
            if bad:
                validate.fail(self, "alphas", f"must be 'auto' or finite numbers >= 0 (bits), got {bad}")
            labels = [alpha_label(a) for a in self.alphas]
            if len(set(labels)) != len(labels):
                validate.fail(self, "alphas", f"must be distinct to 6 significant digits, got {self.alphas}")
        exp = self.experiment()  # checks preset, method, seeds and the rest, naming the field
        object.__setattr__(self, "preset", exp.preset)  # a project: its absolute path and content key
        object.__setattr__(self, "project_key", exp.project_key)

    def experiment(self, alpha: float | None = None) -> ExperimentConfig:
        """The experiment settings of every stage (PAM at ``alpha``)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "alphas"}
        return ExperimentConfig(alpha=alpha, schemes=SCHEMES, **fields)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SweepConfig:
        raw = dict(raw)
        unknown = sorted(set(raw) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"SweepConfig: unknown field(s) {unknown}")
        raw.setdefault("schedule", "floor-greedy")  # sweeps written before schedules existed
        raw.setdefault("pace", "flops")  # sweeps written before the pace was a setting
        if isinstance(raw.get("alphas"), list):
            raw["alphas"] = tuple(raw["alphas"])
        if "seeds" in raw:
            raw["seeds"] = tuple(raw["seeds"])
        if "overrides" in raw:
            raw["overrides"] = tuple(tuple(item) for item in raw["overrides"])
        return cls(**raw)


@dataclass(frozen=True)
class SweepOptions:
    """How a sweep runs (not what it computes): executor, workers (None: cores // threads for
    local ones, no cap on Slurm), torch threads per job, cluster resources, the task-usage mix of
    the recommendation ({subset: probability}, empty: uniform), the stage-cache root."""

    executor: str = "local"
    workers: int | None = None
    threads: int = 1
    resources: slurm.Resources = slurm.Resources()
    mix: tuple[tuple[str, float], ...] = ()
    cache: str | None = "default"
    poll_s: float = 0.5

    def __post_init__(self) -> None:
        validate.choice(self, "executor", ex.EXECUTORS + ("inline",))
        if self.workers is not None:
            validate.positive_int(self, "workers")
        validate.positive_int(self, "threads")

    def n_workers(self) -> int | None:
        if self.executor == "inline":
            return 1
        return self.workers or (None if self.executor == "slurm" else ex.default_workers(self.threads))

    def cache_dir(self) -> str | None:
        return str(cache_root()) if self.cache == "default" else self.cache


def alpha_label(alpha: float) -> str:
    """The alpha in file and job names (6 significant digits): 0.05 -> "0.05"."""
    return f"{alpha:.6g}"


def check_mix(mix: Sequence[tuple[str, float]], tasks: Sequence[str]) -> dict[str, float]:
    """{subset: probability} over the subsets of ``tasks`` (uniform when empty); ConfigError
    naming a bad subset, a negative or non-finite probability, or a sum other than 1."""
    if not mix:
        return sr.uniform_mix(tasks)
    out: dict[str, float] = {}
    for key, p in mix:
        out[subset_key(parse_key(key, tasks, "--mix"))] = p
    if not all(validate.is_number(p) and p >= 0 for p in out.values()) or abs(sum(out.values()) - 1) > 1e-6:
        raise ConfigError(f"--mix: probabilities must be numbers >= 0 that sum to 1, got {out}")
    order = [subset_key(s) for s in all_subsets(list(tasks))]
    return {k: out.get(k, 0.0) for k in order}


def run_sweep(cfg: SweepConfig, out: str | Path, opts: SweepOptions = SweepOptions(),
              say: Say | None = None) -> dict:
    """Run (or resume) the sweep into ``out``; returns sweep.json. JobsFailed (after writing
    sweep.json) when a job failed twice; ConfigError / RunConflict before anything is computed."""
    if opts.executor != "inline":
        slurm.check_executor(opts.executor, opts.resources.partition)
    mix = check_mix(opts.mix, get_preset(cfg.preset).task_names)
    with claim(out, "sweep", dataclasses.asdict(cfg), OUTPUTS, defaults=_stored):
        return _Sweep(cfg, Path(out), opts, mix, say or _stderr).run()


def dry_run(cfg: SweepConfig, out: str | Path, opts: SweepOptions = SweepOptions()) -> dict:
    """The jobs a sweep into ``out`` would submit now, with their resources; nothing is written
    or submitted. The executor's requirements are reported (``"missing"``), not enforced."""
    mix = check_mix(opts.mix, get_preset(cfg.preset).task_names)
    outdir.check(out, "sweep", dataclasses.asdict(cfg), OUTPUTS, defaults=_stored)
    sweep = _Sweep(cfg, Path(out), opts, mix, lambda _: None, dry=True)
    tasks = sweep.plan()
    try:
        slurm.check_executor(opts.executor, opts.resources.partition) if opts.executor != "inline" else None
        missing = None
    except ConfigError as exc:
        missing = str(exc)
    r = opts.resources
    resources = {"threads": opts.threads, "workers": sweep.workers, "cpus_per_job": r.cpus_per_job}
    if opts.executor == "slurm":
        resources.update(partition=r.partition, gpus_per_job=r.gpus_per_job, mem_gb=r.mem_gb,
                         time_min=r.time_min)
    rows = [_row(t) for t in tasks]
    if sweep.alphas is not None and sweep.traj_left:  # typed alphas: the points wait for trajectories
        rows += [{**_row(t), "state": "after the trajectory jobs"} for t in sweep._points()]
    if opts.executor == "slurm" and missing is None:
        _mark_attachable(rows, Path(out) / "submitit")
    if sweep.alphas is None:
        rows.append({"job": "PAM points", "kind": "PAM", "alpha": "auto", "seed": list(cfg.seeds),
                     "state": "planned once the trajectory jobs ran (up to 8 alphas per seed)"})
    return {"executor": opts.executor, "resources": resources, "missing": missing, "jobs": rows,
            "done": sweep.before, "alphas": [a for a, _ in sweep.alphas or []] or cfg.alphas}


def checked_plan(path: Path, cfg: SweepConfig) -> dict:
    """DIR/plan.json, checked against ``cfg``: typed alphas must be the configuration's; an auto
    plan (what fixes a resumed sweep's alphas) must hold at most ``max_count`` alphas within its
    ``lo``..``hi``. DataError for a corrupt plan, RunConflict for another one, naming the file."""
    fix = "use another --out (nothing there was changed)"
    try:
        plan = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not a readable sweep plan ({exc}); {fix}") from None
    alphas = plan.get("alphas") if isinstance(plan, dict) else None
    if not (isinstance(alphas, list) and alphas and all(validate.is_number(a) and a >= 0 for a in alphas)
            and plan.get("rule") in ("typed", "auto")):
        raise DataError(f"{path} is not a sweep plan (a rule 'typed' or 'auto' and alphas, numbers >= 0); "
                        f"{fix}")
    if cfg.alphas == "auto":
        lo, hi, most = plan.get("lo"), plan.get("hi"), plan.get("max_count")
        ok = plan["rule"] == "auto" and validate.is_number(lo) and validate.is_number(hi) \
            and validate.is_int(most) and len(alphas) <= most and all(lo <= a <= hi for a in alphas)
    else:
        ok = plan["rule"] == "typed" and sorted(float(a) for a in alphas) == sorted(cfg.alphas)
    if not ok:
        typed = cfg.alphas if cfg.alphas == "auto" else ",".join(map(str, cfg.alphas))
        raise RunConflict(f"{path} plans alphas {alphas} ({plan['rule']}), not those of this sweep "
                          f"(--alphas {typed}); {fix}")
    return plan


def _mark_attachable(rows: list[dict], folder: Path) -> None:
    """The rows whose job a driver would re-attach to (still queued or running on Slurm), marked."""
    found = slurm_queue.attachable(slurm_queue.Journal(folder), [r["job"] for r in rows])
    for r in rows:
        if r["job"] in found:
            info = found[r["job"]]
            r["state"], r["slurm_job"] = f"re-attach to Slurm job {info.job_id} ({info.state})", info.job_id


def _row(t: ex.Task) -> dict:
    job = t.config
    alpha = job.experiment.alpha if isinstance(job, StageJob) and job.scheme == "PAM" else None
    return {"job": t.label, "kind": t.kind, "alpha": alpha, "seed": job.seed, "state": "to run"}


def _stored(raw: Mapping) -> dict:
    """A stored sweep configuration as the current code reads it (claim's ``defaults``)."""
    return dataclasses.asdict(SweepConfig.from_dict(raw))


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _Sweep:
    """One run of the driver (see the module docstring)."""

    def __init__(self, cfg: SweepConfig, out: Path, opts: SweepOptions, mix: dict, say: Say,
                 dry: bool = False) -> None:
        self.cfg, self.out, self.opts, self.mix, self.say, self.dry = cfg, out, opts, mix, say, dry
        self.base = cfg.experiment()
        self.cache = StageCache(opts.cache_dir())
        self.workers = opts.n_workers()
        self.t0 = time.monotonic()
        self.rule: dict = {}
        self.alphas: list[tuple[float, str]] | None = None
        self.before: list[dict] = []  # points found done before any job (resumed / cached)
        self.jobs: list[scheduler.Job] = []
        self.traj_left = 0
        self._shown: tuple | None = None

    # ------------------------------------------------------------------ plan
    def plan(self) -> list[ex.Task]:
        """The jobs to start with: missing trajectories, B1/B2, and the points once their
        trajectories exist; sets ``alphas`` (None: auto, after the trajectory jobs)."""
        self.ctx = context(self.cfg.preset, self.base.data(), self.cfg.arch)
        missing = [s for s in self.cfg.seeds if self._trajectories(s) is None]
        self.alphas = self._resolve_alphas() if not missing or self.cfg.alphas != "auto" else None
        tasks = [ex.Task.make("sweep-trajectories", TrajectoryJob(self.base, s), self.out, f"traj_s{s}",
                              "trajectories") for s in missing]
        self.traj_left = len(tasks)
        tasks += [t for s in self.cfg.seeds for name in ("B1", "B2")
                  if (t := self._stage(name, s)) is not None]
        if self.alphas is not None and not missing:
            tasks += self._points()
        return tasks

    def run(self) -> dict:
        (self.out / "stages").mkdir(parents=True, exist_ok=True)
        executor = self._executor()
        if isinstance(executor, ex.LocalExecutor):
            executor.warm()  # the workers start while the driver loads the networks and data
        try:
            return self._run(executor)
        finally:
            executor.close()

    def _run(self, executor) -> dict:
        tasks = self.plan()
        self.say(f"sweep: {len(tasks)} job(s) to run with {self.opts.executor}"
                 f" ({self.workers or 'no cap on'} worker(s)); {len(self.before)} stage(s) already done")
        self._on_change([])
        self.jobs = scheduler.run_all(executor, tasks, on_done=self._on_done, on_change=self._on_change,
                                      poll_s=self.opts.poll_s)
        self._on_change(self.jobs)
        sweep = self._write()
        failed = [j for j in self.jobs if j.state == "failed"]
        if failed:
            raise JobsFailed(f"{len(failed)} job(s) failed twice: " + "; ".join(
                f"{j.task.label} ({j.message}; log {j.log})" for j in failed)
                + f". The others are in {self.out / 'sweep.json'}; rerun the same command to retry them")
        return sweep

    def _trajectories(self, seed: int):
        return cached_trajectories(self.ctx.preset, self.ctx.nets, self.base.mi_data(), self.base.mi(seed))

    def _resolve_alphas(self) -> list[tuple[float, str]]:
        """From DIR/plan.json if there is one, else typed or auto (written to plan.json)."""
        path = self.out / "plan.json"
        if path.exists():
            plan = checked_plan(path, self.cfg)
        elif self.cfg.alphas == "auto":
            plan = auto_alphas([self._trajectories(s).trajectories for s in self.cfg.seeds]).as_dict()
        else:
            plan = {"rule": "typed", "alphas": sorted(self.cfg.alphas)}
        if not self.dry:
            write_json_atomic(path, plan)
        self.rule = plan
        self.say(f"sweep: alphas ({plan['rule']}) " + ", ".join(f"{a:.4g}" for a in plan["alphas"]))
        return [(float(a), alpha_label(a)) for a in plan["alphas"]]

    def _points(self) -> list[ex.Task]:
        return [t for a, label in self.alphas for s in self.cfg.seeds
                if (t := self._stage("PAM", s, a, label)) is not None]

    def _stage(self, name: str, seed: int, alpha: float | None = None, label: str = "") -> ex.Task | None:
        """The job of a stage, or None when it is done already (resumed or copied from the cache)."""
        cfg = self.cfg.experiment(alpha)
        tag = f"_a{label}_s{seed}" if name == "PAM" else f"_s{seed}"
        settings = cfg.scheme_settings(seed, self.ctx.reference(cfg.floor), self.ctx.layers)
        key = stage_key_of(self.ctx, seed, cfg.quick, name, settings)
        path = self.out / "stages" / f"{name}{tag}.json"
        if self.dry:
            source = "resumed" if path.is_file() else "cached" if self.cache.get(key) else "missing"
        else:
            _, source = resolve_stage(path, key, self.cache, None, tag)
        if source != "missing":
            self.before.append({"label": f"{name}{tag}", "kind": name, "state": "done", "source": source})
            return None
        job = StageJob(cfg, seed, name, tag, self.opts.cache_dir())
        return ex.Task.make("sweep-stage", job, self.out, f"{name}{tag}", name)

    def _on_done(self, job: scheduler.Job) -> list[ex.Task]:
        if job.task.kind != "trajectories":
            self._write()
            return []
        self.traj_left -= 1
        if self.traj_left:
            return []
        if self.alphas is None:
            self.alphas = self._resolve_alphas()
        return self._points()

    # ------------------------------------------------------------------ outputs
    def _executor(self):
        o = self.opts
        if o.executor == "inline":
            return ex.InlineExecutor(self.out / "logs", o.threads)
        if o.executor == "local":
            return ex.LocalExecutor(self.workers, o.threads, self.out / "logs")
        cluster = "slurm" if o.executor == "slurm" else "local"
        return slurm.SubmititExecutor(cluster, self.out / "submitit", o.resources, self.workers, o.threads,
                                      say=lambda m: self.say(f"sweep: {m}"))

    def _on_change(self, jobs: list[scheduler.Job]) -> None:
        self.jobs = jobs
        line = scheduler.progress_line(jobs, self.workers)
        c = scheduler.counts(jobs)
        shown = (c["done"], c["failed"], len(jobs))
        if jobs and shown != self._shown:  # a line per finished job, not per start
            self._shown = shown
            self.say(f"sweep: {line}")
        rows = self.before + [{**j.row(), "source": j.result.get("source", "")} for j in jobs]
        write_json_atomic(self.out / "points.json", {"points": rows, "time": time.time()})
        write_json_atomic(self.out / "progress.json", {
            "stage": "sweep", "fraction": round((c["done"] + c["failed"]) / max(1, len(jobs)), 4),
            "message": line, "time": time.time()})

    def _write(self) -> dict:
        """sweep.json and sweep.md from the stage files present now."""
        records = {}
        for (name, seed, alpha, label) in self._stage_names():
            tag = f"_a{label}_s{seed}" if name == "PAM" else f"_s{seed}"
            path = self.out / "stages" / f"{name}{tag}.json"
            if path.is_file():
                records[(name, seed, alpha)] = read_record(path)
        failed = [{**j.row(), "message": j.message} for j in self.jobs if j.state == "failed"]
        sweep = sr.build(self._head(), self.alphas or [], records, list(self.cfg.seeds),
                         self.ctx.original_test, self.base.prune_config(0, None).delta, self.mix, failed)
        if self.alphas is None:
            sweep["complete"] = False
        write_json_atomic(self.out / "sweep.json", sweep)
        write_text_atomic(self.out / "sweep.md", sr.markdown(sweep))
        return sweep

    def _stage_names(self):
        for s in self.cfg.seeds:
            yield from (("B1", s, None, ""), ("B2", s, None, ""))
        for a, label in self.alphas or []:
            yield from (("PAM", s, a, label) for s in self.cfg.seeds)

    def _head(self) -> dict:
        import torch

        base, seed0 = self.base, self.cfg.seeds[0]
        mi = base.mi(seed0)
        done = [j for j in self.jobs if j.state == "done" and j.seconds is not None]
        return {"preset": self.cfg.preset, "tasks": list(self.ctx.tasks), "prune": self.cfg.prune,
                "quick": self.cfg.quick, "alphas_rule": self.rule,
                "config": {**dataclasses.asdict(self.cfg),
                           "mi": {**dataclasses.asdict(mi), "profile": mi.profile},
                           "regroup_config": dataclasses.asdict(base.regroup_config(self.ctx.layers)),
                           "prune_config": dataclasses.asdict(base.prune_config(seed0, None))},
                "reference_val_accuracy": dict(self.ctx.original_val), "torch_threads": self.opts.threads,
                "execution": {"executor": self.opts.executor, "workers": self.workers,
                              "driver_torch_threads": torch.get_num_threads(),
                              "wall_seconds": round(time.monotonic() - self.t0, 1),
                              "job_seconds": round(sum(j.seconds for j in done), 1),
                              "jobs": [j.row() for j in self.jobs]}}


__all__ = ["SweepConfig", "SweepOptions", "run_sweep", "dry_run", "check_mix", "alpha_label", "OUTPUTS",
           "checked_plan"]
