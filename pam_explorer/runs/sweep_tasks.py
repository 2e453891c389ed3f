"""The sweep's tasks (:mod:`.executors`): one seed's MI trajectories, or one stage.

* ``sweep-trajectories`` (:class:`TrajectoryJob`): the MI trajectories of one seed's MI sample,
  into the trajectory cache (so that the PAM points of that seed, running in parallel, all read
  them instead of each computing them).
* ``sweep-stage`` (:class:`StageJob`): one stage of the experiment, B1 or B2 of a seed or PAM at
  one alpha under one seed, resumed from ``DIR/stages``, reused from the stage cache, or computed
  (:func:`pam_explorer.runs.stage_run.resolve_stage`): the experiment's own code, so records and
  keys are the experiment's.

A worker keeps the last preset's networks, data and reference accuracies in memory
(:func:`context`), so its later tasks skip loading them.
"""
from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from pathlib import Path

from pam_explorer.core.config import DataConfig
from pam_explorer.core.paths import cache_root
from pam_explorer.regroup.explorer import Explorer
from pam_explorer.runs.executors import task
from pam_explorer.runs.experiment_config import ExperimentConfig
from pam_explorer.runs.schemes import SCHEME_FNS
from pam_explorer.runs.stage_cache import StageCache
from pam_explorer.runs.stage_run import StageContext, resolve_stage, stage_key_of


@dataclass(frozen=True)
class TrajectoryJob:
    """The trajectories of ``experiment.mi(seed)`` on the committed networks."""

    experiment: ExperimentConfig
    seed: int


@dataclass(frozen=True)
class StageJob:
    """Stage ``scheme`` under ``seed`` of ``experiment`` (its alpha is the point's), stored as
    ``DIR/stages/<scheme><tag>.json``; ``cache``: the stage-cache root (None: no sharing)."""

    experiment: ExperimentConfig
    seed: int
    scheme: str
    tag: str
    cache: str | None


@functools.lru_cache(maxsize=2)
def context(preset: str, data: DataConfig, arch: str) -> StageContext:
    """The committed ``arch`` networks, data and original accuracies of ``preset`` (per process)."""
    return StageContext.load(preset, data, arch=arch)


def _say(message: str, within: float | None = None) -> None:
    """A stage's progress line (``within``: the fraction of the stage done, unused here: the
    scheduler reports progress per job)."""
    print(message, flush=True)


@task("sweep-trajectories")
def run_trajectories(job: TrajectoryJob, out: Path) -> dict:
    cfg = job.experiment
    ctx = context(cfg.preset, cfg.data(), cfg.arch)
    exp = Explorer.open(ctx.preset, cfg.mi(job.seed), cfg.mi_data(), nets=ctx.nets)
    _say(f"trajectories of seed {job.seed}: {'cache hit' if exp.trajs.cache_hit else 'computed'} "
         f"(cache root {cache_root()})")
    return {"cache_hit": exp.trajs.cache_hit}


@task("sweep-stage")
def run_stage(job: StageJob, out: Path) -> dict:
    cfg, seed, name = job.experiment, job.seed, job.scheme
    ctx = context(cfg.preset, cfg.data(), cfg.arch)
    settings = cfg.scheme_settings(seed, ctx.reference(cfg.floor), ctx.layers)
    folder = out / "stages"
    folder.mkdir(parents=True, exist_ok=True)
    key = stage_key_of(ctx, seed, cfg.quick, name, settings)
    _say(f"{name}{job.tag}: stage key {key}" + (f", alpha {cfg.alpha!r}" if name == "PAM" else ""))

    def compute() -> tuple[dict, dict]:
        return SCHEME_FNS[name](settings, ctx.nets, ctx.tasks, ctx.data, _say, folder, job.tag)

    _, source = resolve_stage(folder / f"{name}{job.tag}.json", key, StageCache(job.cache), compute, job.tag)
    _say(f"{name}{job.tag}: {source}")
    sys.stdout.flush()
    return {"source": source}


__all__ = ["TrajectoryJob", "StageJob", "context", "run_trajectories", "run_stage"]
