"""The regime map study: B1 vs B2 vs PAM in every cell of headroom x relatedness -> ROOT/map.json.

A cell is one experiment (:mod:`.experiment`: one preset, one pruning method, its seeds) in its own
folder ``ROOT/<preset>_<method>/``, an ordinary experiment run folder (config.json, stages/,
report.json, table.md). The study runs the stages of every cell through ONE executor pool (the
experiment's and the sweep's stage task, :mod:`.sweep_tasks`; local worker processes, or
submitit locally or on Slurm), in cell order and, within a cell, B1 (the longest) first, so the
workers stay busy across cells. When a cell's last stage is written, its report is assembled by
:func:`~pam_explorer.runs.experiment.run_experiment` (every stage resumed, nothing recomputed) and
ROOT/map.json + map.md are rewritten (:mod:`.regime_map`).

Resumable: stages already in a cell's ``stages/`` are never rerun, so a study whose stage
records are committed (``results/regime_map/``, JSON only) resumes on a fresh clone. A time
budget (``budget_hours``) stops *starting* stages after that many hours; running ones finish, the
others are listed as not started, and the next run goes on from there.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pam_explorer.core import validate
from pam_explorer.core.errors import ConfigError, DataError, RunConflict
from pam_explorer.core.io import write_json_atomic, write_text_atomic
from pam_explorer.core.paths import cache_root
from pam_explorer.data.catalogue import HEADROOM_WIDTHS, OVERLAPS, overlap_name
from pam_explorer.runs import executors as ex
from pam_explorer.runs import regime_map as rm
from pam_explorer.runs import scheduler, slurm
from pam_explorer.runs.experiment import run_experiment
from pam_explorer.runs.experiment_config import OUTPUTS, SCHEMES, ExperimentConfig
from pam_explorer.runs.outdir import claim
from pam_explorer.runs.sweep_tasks import StageJob
from pam_explorer.zoo.pretrained import has_pretrained, train_command

Say = Callable[[str], None]
HEADLINE = overlap_name(0, "-wide")  # the headroom preset at its natural relatedness
SKIPPED = "not started: the study's time budget ran out"


@dataclass(frozen=True)
class Cell:
    """One cell: ``preset`` pruned by ``prune`` ("taylor" = P2, "vib" = P1) under ``seeds``."""

    preset: str
    prune: str
    seeds: tuple[int, ...]

    @property
    def folder(self) -> str:
        return f"{self.preset}_{self.prune}"


def regime_cells() -> tuple[Cell, ...]:
    """The regime map (issue 24), in the order it runs: the headline cell with P2 and then P1
    (5 seeds each), then every other headroom x relatedness cell with P2 (3 seeds)."""
    head = (Cell(HEADLINE, "taylor", (0, 1, 2, 3, 4)), Cell(HEADLINE, "vib", (0, 1, 2, 3, 4)))
    rest = tuple(Cell(overlap_name(k, infix), "taylor", (0, 1, 2)) for k in OVERLAPS
                 for infix in HEADROOM_WIDTHS if overlap_name(k, infix) != HEADLINE)
    return head + rest


@dataclass(frozen=True)
class StudyConfig:
    """What the study computes: its cells and the experiment settings every cell shares (the
    ranking is named explicitly: the published one and the FLOPs-aware one give other maps)."""

    cells: tuple[Cell, ...] = regime_cells()
    rank: str = "published"
    delta: float = 0.5
    schedule: str = "published"
    pace: str = ExperimentConfig.pace  # the published schedule's FLOPs pace (ScheduleConfig.pace)
    arch: str = "lenet5"
    device: str = "auto"  # part of every stage's key: "cpu" reuses stages an `experiment --device cpu` cached
    quick: bool = False  # tiny data and few steps in every cell (tests)

    def __post_init__(self) -> None:
        if not self.cells:
            validate.fail(self, "cells", "must name at least one cell")
        names = [c.folder for c in self.cells]
        if len(set(names)) != len(names):
            validate.fail(self, "cells", f"two cells share a folder: {sorted(names)}")
        for cell in self.cells:
            self.experiment(cell)  # checks preset, method, seeds, rank, schedule, naming the field

    def experiment(self, cell: Cell) -> ExperimentConfig:
        return ExperimentConfig(preset=cell.preset, prune=cell.prune, seeds=tuple(cell.seeds), rank=self.rank,
                                delta=self.delta, schedule=self.schedule, pace=self.pace, arch=self.arch,
                                device=self.device, quick=self.quick)

    def select(self, patterns: Sequence[str]) -> StudyConfig:
        """Only the cells whose folder name matches one of the shell ``patterns`` (all if none)."""
        if not patterns:
            return self
        chosen = tuple(c for c in self.cells if any(fnmatch.fnmatch(c.folder, p) for p in patterns))
        if not chosen:
            raise ConfigError(f"--cells {list(patterns)} matches no cell; cells: "
                              f"{[c.folder for c in self.cells]}")
        return dataclasses.replace(self, cells=chosen)


@dataclass(frozen=True)
class StudyOptions:
    """How the study runs: executor ("local", "submitit-local", "slurm", or "inline" for tests),
    workers (jobs at once), torch threads per job, cluster resources, the time budget in hours
    after which no stage starts (None: none), the stage-cache root ("default": the cache root)."""

    executor: str = "local"
    workers: int = 2
    threads: int = 1
    resources: slurm.Resources = slurm.Resources()
    budget_hours: float | None = None
    cache: str | None = "default"
    poll_s: float = 2.0

    def __post_init__(self) -> None:
        validate.choice(self, "executor", ex.EXECUTORS + ("inline",))
        validate.positive_int(self, "workers")
        validate.positive_int(self, "threads")
        if self.budget_hours is not None:
            validate.finite_positive(self, "budget_hours")

    def cache_dir(self) -> str | None:
        return str(cache_root()) if self.cache == "default" else self.cache


class _Budgeted:
    """An executor that starts nothing once ``deadline`` (time.monotonic) has passed: such tasks
    end at once, not ok, with :data:`SKIPPED` (the scheduler then gives up on them)."""

    def __init__(self, inner, deadline: float | None) -> None:
        self.inner, self.deadline = inner, deadline

    @property
    def capacity(self) -> int | None:
        return self.inner.capacity

    def submit(self, tasks: Sequence[ex.Task]) -> list:
        if self.deadline is not None and time.monotonic() > self.deadline:
            return [_Ended() for _ in tasks]
        return self.inner.submit(tasks)

    def close(self) -> None:
        self.inner.close()


class _Ended:
    def poll(self) -> ex.Outcome:
        return ex.Outcome(False, SKIPPED)

    def cancel(self) -> None:
        pass


def stage_labels(cell: Cell) -> list[tuple[int, str]]:
    """(seed, scheme) of every stage of ``cell``, in the order they are queued."""
    return [(seed, name) for seed in cell.seeds for name in SCHEMES]


def missing_stages(root: Path, cell: Cell) -> list[tuple[int, str]]:
    """(seed, scheme) of the stages of ``cell`` without a record under ``root``."""
    stages = root / cell.folder / "stages"
    return [(s, n) for s, n in stage_labels(cell) if not (stages / f"{n}_s{s}.json").is_file()]


def check_networks(cfg: StudyConfig) -> None:
    """ConfigError naming the train command of every preset whose committed networks are missing."""
    from pam_explorer.data import get_preset

    lacking = sorted({c.preset for c in cfg.cells
                      if not has_pretrained(c.preset, get_preset(c.preset).task_names, cfg.arch)})
    if lacking:
        raise ConfigError(f"no committed {cfg.arch} networks for {lacking}; train them first ("
                          + "; ".join(train_command(p, cfg.arch) for p in lacking)
                          + ", with the width and sizes docs/regime_map.md gives), or leave those cells out "
                          "(--cells)")


def dry_run(cfg: StudyConfig, root: str | Path) -> dict:
    """Per cell: stages done and left, and the CPU hours left, estimated from the finished stages'
    own seconds (one torch thread each) of the same scheme, method and network width (None while
    no such stage has finished). Nothing is written."""
    root = Path(root)
    seconds: dict[tuple, list[float]] = {}
    for cell in cfg.cells:
        width = rm.axes_of(cell.preset)["width"]
        for seed, name in stage_labels(cell):
            path = root / cell.folder / "stages" / f"{name}_s{seed}.json"
            if path.is_file():
                sec = json.loads(path.read_text()).get("seconds")
                if isinstance(sec, (int, float)):
                    seconds.setdefault((name, cell.prune, width), []).append(float(sec))
    rows, total = [], 0.0
    for cell in cfg.cells:
        left = missing_stages(root, cell)
        width = rm.axes_of(cell.preset)["width"]
        est = [seconds.get((name, cell.prune, width)) for _, name in left]
        hours = None if any(e is None for e in est) else sum(sum(e) / len(e) for e in est) / 3600
        total += hours or 0.0
        rows.append({"cell": cell.folder, "seeds": list(cell.seeds), "stages": len(stage_labels(cell)),
                     "left": [f"{n}_s{s}" for s, n in left], "cpu_hours_left": hours})
    known = all(r["cpu_hours_left"] is not None for r in rows)
    return {"root": str(root), "rank": cfg.rank, "pace": cfg.pace, "cells": rows,
            "cpu_hours_left": round(total, 2) if known else None,
            "cpu_hours_left_known_part": round(total, 2)}


def write_map(cfg: StudyConfig, root: str | Path, execution: dict | None = None) -> dict:
    """ROOT/map.json and map.md of the cells' records as they are now (``execution``: how this
    run went, kept in map.json); returns the map."""
    root = Path(root)
    rmap = rm.regime_map(root, cfg.delta, [c.folder for c in cfg.cells])
    if execution is not None:
        rmap["execution"] = execution
    write_json_atomic(root / "map.json", rmap)
    write_text_atomic(root / "map.md", rm.markdown(rmap))
    return rmap


def run_study(cfg: StudyConfig, root: str | Path, opts: StudyOptions = StudyOptions(),
              say: Say | None = None) -> dict:
    """Run (or resume) the study into ``root``; returns map.json. ConfigError / RunConflict
    before any stage is computed; stages that fail twice are listed in map.json's ``failed``."""
    root, say = Path(root), say or _stderr
    check_networks(cfg)
    if opts.executor not in ("inline", "local"):
        slurm.check_executor(opts.executor)
    root.mkdir(parents=True, exist_ok=True)
    study = _Study(cfg, root, opts, say)
    with contextlib.ExitStack() as stack:
        for cell in cfg.cells:  # every cell folder checked (and claimed) before anything runs
            study.claim(cell, stack)
        study.run()
    for cell in cfg.cells:
        study.finish(cell)
    return study.write()


class _Study:
    def __init__(self, cfg: StudyConfig, root: Path, opts: StudyOptions, say: Say) -> None:
        self.cfg, self.root, self.opts, self.say = cfg, root, opts, say
        self.claims: dict[str, contextlib.ExitStack] = {}
        self.jobs: list[scheduler.Job] = []
        self.t0 = time.monotonic()

    def claim(self, cell: Cell, stack: contextlib.ExitStack) -> None:
        exp, out = self.cfg.experiment(cell), self.root / cell.folder
        own = contextlib.ExitStack()
        own.enter_context(claim(out, "experiment", dataclasses.asdict(exp), OUTPUTS,
                                defaults=lambda raw: dataclasses.asdict(ExperimentConfig.from_dict(raw))))
        _write_or_check_config(exp, out)
        (out / "stages").mkdir(parents=True, exist_ok=True)
        self.claims[cell.folder] = own
        stack.callback(own.close)

    def tasks(self) -> list[ex.Task]:
        cache = self.opts.cache_dir()
        out = []
        for cell in self.cfg.cells:
            exp = self.cfg.experiment(cell)
            out += [ex.Task.make("sweep-stage", StageJob(exp, seed, name, f"_s{seed}", cache),
                                 self.root / cell.folder, _label(cell, seed, name), name)
                    for seed, name in missing_stages(self.root, cell)]
        return out

    def run(self) -> None:
        tasks = self.tasks()
        self.say(f"study: {len(self.cfg.cells)} cell(s), {len(tasks)} stage(s) to run with "
                 f"{self.opts.executor} ({self.opts.workers} worker(s), {self.opts.threads} thread(s) each)")
        if not tasks:
            return
        deadline = None if self.opts.budget_hours is None else self.t0 + 3600 * self.opts.budget_hours
        executor = _Budgeted(self._executor(), deadline)
        try:
            self.jobs = scheduler.run_all(executor, tasks, on_done=self._on_done, on_change=self._on_change,
                                          poll_s=self.opts.poll_s)
        finally:
            executor.close()

    def _executor(self):
        o, logs = self.opts, self.root / "logs"
        if o.executor == "inline":
            return ex.InlineExecutor(logs, o.threads)
        if o.executor == "local":
            return ex.LocalExecutor(o.workers, o.threads, logs)
        cluster = "slurm" if o.executor == "slurm" else "local"
        return slurm.SubmititExecutor(cluster, self.root / "submitit", o.resources, o.workers, o.threads)

    def _on_done(self, job: scheduler.Job) -> list:
        cell = next(c for c in self.cfg.cells if job.task.label.startswith(c.folder + "."))
        if not missing_stages(self.root, cell):
            self.claims[cell.folder].close()  # release the folder: the report takes it again
            self.finish(cell)
            self.write()
        return []

    def _on_change(self, jobs: list[scheduler.Job]) -> None:
        self.jobs = jobs
        write_json_atomic(self.root / "progress.json", {
            "stage": "study", "message": scheduler.progress_line(jobs, self.opts.workers),
            "time": time.time(), "fraction": round(scheduler.counts(jobs)["done"] / max(1, len(jobs)), 4)})

    def finish(self, cell: Cell) -> None:
        """The cell's report (every stage resumed), once all its stages are there."""
        out = self.root / cell.folder
        if missing_stages(self.root, cell) or (out / "report.json").is_file() and _newer(out):
            return
        try:
            run_experiment(self.cfg.experiment(cell), out, cache=None)
            self.say(f"study: {cell.folder} complete, report written")
        except (RunConflict, DataError) as exc:  # records of another configuration: say so, go on
            self.say(f"study: {cell.folder}: {exc}")

    def write(self) -> dict:
        return write_map(self.cfg, self.root, {
            "executor": self.opts.executor, "workers": self.opts.workers, "torch_threads": self.opts.threads,
            "rank": self.cfg.rank, "pace": self.cfg.pace,
            "wall_seconds_this_run": round(time.monotonic() - self.t0, 1),
            "jobs": [j.row() for j in self.jobs],
            "not_started": [j.task.label for j in self.jobs if j.message == SKIPPED],
            "failed": [{"label": j.task.label, "message": j.message, "log": j.log} for j in self.jobs
                       if j.state == "failed" and j.message != SKIPPED]})


def _label(cell: Cell, seed: int, name: str) -> str:
    """A stage's job label (its log file under ROOT/logs/ is named after it)."""
    return f"{cell.folder}.{name}_s{seed}"


def _newer(out: Path) -> bool:
    """True when report.json is newer than every stage record (nothing to reassemble)."""
    report = (out / "report.json").stat().st_mtime
    return all(p.stat().st_mtime <= report for p in (out / "stages").glob("*.json"))


def _write_or_check_config(exp: ExperimentConfig, out: Path) -> None:
    """DIR/config.json as the experiment writes it, or RunConflict when it holds another one."""
    path, want = out / "config.json", dataclasses.asdict(exp)
    if not path.is_file():
        write_json_atomic(path, want)
        return
    try:
        have = dataclasses.asdict(ExperimentConfig.from_dict(json.loads(path.read_text())))
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"{path} is not a readable experiment configuration ({exc}); move the cell folder "
                        "away to recompute it") from None
    if have != want:
        raise RunConflict(f"{out} holds a cell of another configuration ({have}); move it away to recompute "
                          "it, or run the study into another folder")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


__all__ = ["Cell", "StudyConfig", "StudyOptions", "regime_cells", "run_study", "missing_stages",
           "stage_labels", "check_networks", "dry_run", "write_map", "HEADLINE", "SKIPPED"]
