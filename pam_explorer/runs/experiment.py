"""B1 vs B2 vs PAM under one pruning method, on one preset, over seeds -> DIR/report.json + table.md.

Fair comparison (DESIGN "Pruning, fair comparison"): every scheme is pruned by the same method
and rule, against ONE accuracy floor per task (``floor="original"``: the original single-task
network's validation accuracy minus delta; ``"own"``: each scheme's unpruned accuracy, the
earlier rule), ranking neurons the method's published way (``rank="published"``) or FLOPs-aware
(``"flops-aware"``) alike for every scheme. Every scheme runs under every seed (pruning,
finetuning, MTZ and MI-sample randomness; the data split stays the networks' own). The report
gives per-seed figures and, over seeds, means with 95 % bootstrap CIs, gains paired by seed, the
thread count and the configuration that produced every figure.

Stages (one scheme under one seed) are resumable from DIR/stages/<scheme>_s<seed>.json and, keyed
by content, shared through the stage cache (:mod:`pam_explorer.runs.stage_cache`): B1 and B2 of a
seed are computed once for every PAM configuration. DIR/progress.json tells the dashboard how far
it is. Folders written before seeds existed (one seed, stages/<scheme>.json) still resume.
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from pam_explorer.core.errors import DataError, JobsFailed, PamError, RunConflict
from pam_explorer.core.io import copy_file_atomic, write_json_atomic, write_text_atomic
from pam_explorer.core.paths import cache_root
from pam_explorer.prune.config import TOLERANCES
from pam_explorer.runs import executors as ex
from pam_explorer.runs import report as rep
from pam_explorer.runs import scheduler
from pam_explorer.runs.bench_latency import interleaved_latency, load_schemes
from pam_explorer.runs.experiment_config import (
    FLOORS,
    OUTPUTS,
    REGROUP_PROFILES,
    SCHEMES,
    TIMING_FIELDS,
    ExperimentConfig,
    Progress,
    check_project_key,
)
from pam_explorer.runs.outdir import claim
from pam_explorer.runs.schemes import SCHEME_FNS
from pam_explorer.runs.stage_cache import StageCache
from pam_explorer.runs.stage_run import StageContext, read_record, resolve_stage, stage_key_of
from pam_explorer.runs.sweep_tasks import StageJob
from pam_explorer.zoo.chain import ChainNet


def run_experiment(cfg: ExperimentConfig, out: str | Path, progress: Progress | None = None,
                   nets: Sequence[ChainNet] | None = None, cache: str | Path | None = "default",
                   workers: int = 1, threads: int | None = None) -> dict:
    """Run (or resume) every scheme of ``cfg`` under every seed; write DIR/report.json and
    DIR/table.md; return the report. ``cache``: stage-cache root ("default": the cache root,
    None: no sharing between runs). ``workers`` > 1 (committed networks only): the missing stages
    run first in that many worker processes of the sweep's local pool (``threads`` torch threads
    each, default 1; logs in DIR/logs), then the report is assembled from their records."""
    with claim(out, "experiment", _jsonable(cfg), OUTPUTS,
               defaults=lambda raw: _jsonable(ExperimentConfig.from_dict(raw))):
        stage_cache = StageCache(cache_root() if cache == "default" else cache)
        if workers > 1 and nets is None:
            _parallel(cfg, Path(out), progress, cache_root() if cache == "default" else cache, workers,
                      threads or 1)
        return _run(cfg, Path(out), progress, nets, stage_cache)


def _parallel(cfg: ExperimentConfig, out: Path, progress: Progress | None, cache, workers: int,
              threads: int) -> None:
    """Compute the stages not yet in DIR/stages as parallel jobs (the sweep's stage task)."""
    if _check_or_write_config(cfg, out):
        return  # a folder of the one-seed layout resumes in this process
    (out / "stages").mkdir(parents=True, exist_ok=True)
    root = None if cache is None else str(cache)
    todo = [ex.Task.make("sweep-stage", StageJob(cfg, seed, name, f"_s{seed}", root), out, f"{name}_s{seed}",
                         name)
            for seed in cfg.seeds for name in cfg.schemes
            if not (out / "stages" / f"{name}_s{seed}.json").is_file()]
    if not todo:
        return
    pool = ex.LocalExecutor(min(workers, len(todo)), threads, out / "logs")

    def changed(jobs: list) -> None:
        c = scheduler.counts(jobs)
        row = {"stage": "stages in parallel", "fraction": round(c["done"] / max(1, len(jobs)) * 0.95, 4),
               "message": scheduler.progress_line(jobs, pool.capacity), "time": time.time()}
        write_json_atomic(out / "progress.json", row)
        if progress:
            progress(row)
    try:
        jobs = scheduler.run_all(pool, todo, on_change=changed)
    finally:
        pool.close()
    failed = [j for j in jobs if j.state == "failed"]
    if failed:
        raise JobsFailed(f"{len(failed)} stage(s) failed twice: " + "; ".join(
            f"{j.task.label} ({j.message}; log {j.log})" for j in failed)
            + "; rerun the same command to retry")


def _jsonable(cfg: ExperimentConfig) -> dict:
    return dataclasses.asdict(cfg)


def _run(cfg: ExperimentConfig, out: Path, progress: Progress | None, nets: Sequence[ChainNet] | None,
         cache: StageCache) -> dict:
    legacy = _check_or_write_config(cfg, out)
    ctx = StageContext.load(cfg.preset, cfg.data(), nets, cfg.arch)
    stages = _Stages(out, [(seed, s) for seed in cfg.seeds for s in cfg.schemes], progress, legacy)
    _check_stage_records(cfg, ctx, stages)
    per_seed: dict[int, dict] = {}
    for seed in cfg.seeds:
        settings = cfg.scheme_settings(seed, ctx.reference(cfg.floor), ctx.layers)
        per_seed[seed] = {name: stages.run(seed, name, lambda n=name: SCHEME_FNS[n](
            settings, ctx.nets, ctx.tasks, ctx.data, stages.detail, stages.dir, stages.tag(seed)),
            cache, stage_key_of(ctx, seed, cfg.quick, name, settings)) for name in cfg.schemes}
    report = _report(cfg, ctx.preset, per_seed, ctx.original_test, ctx.original_val, ctx.layers)
    _export_model(stages, cfg, out)
    stages.report(1.0, "latency", "timing every scheme's subset models, interleaved")
    _interleaved_latency(out, report)
    write_json_atomic(out / "report.json", report)
    write_text_atomic(out / "table.md", rep.markdown_table(report))
    stages.report(1.0, "done", "report written")
    return report


def _check_stage_records(cfg: ExperimentConfig, ctx: StageContext, stages: _Stages) -> None:
    """Every stage record already in DIR/stages is of this stage key and version, and readable:
    RunConflict / DataError before any stage is computed (stage_run.read_record)."""
    for seed in cfg.seeds:
        settings = cfg.scheme_settings(seed, ctx.reference(cfg.floor), ctx.layers)
        for name in cfg.schemes:
            path = stages.dir / f"{name}{stages.tag(seed)}.json"
            if path.exists() or path.is_symlink():
                read_record(path, stage_key_of(ctx, seed, cfg.quick, name, settings))


def _report(cfg: ExperimentConfig, preset, per_seed: dict[int, dict], original_test: dict,
            original_val: dict, layers) -> dict:
    seeds, tasks = list(per_seed), list(preset.task_names)
    records = [per_seed[s] for s in seeds]
    delta = cfg.prune_config(0, None).delta
    curves = any("curve" in r for rec in records for r in rec.values())
    keyed = {str(s): per_seed[s] for s in seeds}
    tolerances = {str(d): rep.at_tolerance(keyed, d, tasks) for d in sorted({*TOLERANCES, delta})} \
        if curves else {}
    main = tolerances[str(delta)] if curves else rep.at_tolerance(keyed, delta, tasks)
    at_delta = [{n: rep.record_at(r, delta, tasks) for n, r in rec.items()} for rec in records]
    report = {"preset": preset.name, "tasks": tasks, "prune": cfg.prune, "schedule": cfg.schedule,
              "alpha": cfg.resolved_alpha(), "quick": cfg.quick, "seeds": seeds, "delta": delta,
              "config": _config_section(cfg, seeds, layers),
              "torch_threads": torch.get_num_threads(),
              "latency": "CPU, batch 1, median ms of each subset's fused model (B1: its fused "
                         "single-task nets one after the other)",
              "reference_accuracy": original_test, "reference_val_accuracy": original_val,
              "floor": {t: a - delta for t, a in original_val.items()}
              if cfg.floor == "original" else "each scheme's own unpruned validation accuracy - delta",
              "schemes": main["schemes"], "missing": main["missing"],
              "per_seed": {str(s): {"schemes": r, "gains": rep.gains(a)}
                           for (s, r), a in zip(per_seed.items(), at_delta)},
              "gains": main["gains"],
              "latency_gains": rep.summarise_gains([g for g in (rep.gains(a, "latency_ms") for a in at_delta)
                                                    if g]),
              "floor_check": rep.floor_check(main["schemes"], original_test, delta, at_delta)}
    if curves:
        report["tolerances"] = {d: {k: v for k, v in t.items() if k != "delta"}
                                for d, t in tolerances.items()}
    if any(s.get("sparse_flops") is not None for s in main["schemes"].values()):
        report["sparse_gains"] = report["gains"]
        report["target_sparsity"] = cfg.target_sparsity
    return report


def _config_section(cfg: ExperimentConfig, seeds: list[int], layers) -> dict:
    """The configuration behind every figure: the experiment's fields and the derived settings."""
    mi = cfg.mi(seeds[0])
    return {**_jsonable(cfg), "mi": {**dataclasses.asdict(mi), "profile": mi.profile},
            "regroup_config": dataclasses.asdict(cfg.regroup_config(layers)),
            "prune_config": dataclasses.asdict(cfg.prune_config(seeds[0], None)),
            "data": dataclasses.asdict(cfg.data())}


def _interleaved_latency(out: Path, report: dict) -> None:
    """Every scheme's fused subset models of the first seed (read off at delta) timed in one
    interleaved measurement (cost.latency_compare): the schemes' ``latency_ms`` become its medians,
    with ``latency_measurement`` (median, IQR, reliability per figure) and ``latency_gains`` from
    the reliable figures only. A stage's own latency, measured when it ran (another moment, another
    load), stays in ``per_seed``. Schemes without a checkpoint above the floor are not timed."""
    try:
        schemes = load_schemes(out)
    except (PamError, OSError):
        return
    keep = {n: net for n, net in schemes.items() if report["schemes"].get(n, {}).get("flops") is not None}
    if not keep:
        return
    lat = interleaved_latency(keep)
    for name, ms in lat["latency_ms"].items():
        row = report["schemes"][name]
        row["latency_ms"] = ms
        row.pop("latency_ms_ci95", None)
    m = lat["latency_measurement"]
    report.update(latency_measurement=m, latency_gains=lat["latency_gains"],
                  latency=f"CPU, batch 1, {m['threads']} thread(s): median ms over {m['rounds']} interleaved "
                          "rounds of each subset's fused model, first seed, read off at delta (B1: its fused "
                          "single-task nets one after the other)")


def _export_model(stages: _Stages, cfg: ExperimentConfig, out: Path) -> None:
    """DIR/model.zip: PAM's pruned network of the first seed (what `export --run` serves)."""
    if "PAM" in cfg.schemes:
        src = stages.dir / f"PAM{stages.tag(cfg.seeds[0])}.zip"
        if src.is_file():
            copy_file_atomic(src, out / "model.zip")  # never through a symlink planted there


class _Stages:
    """Resumable stages: DIR/stages/<scheme>_s<seed>.json (+ zips), DIR/progress.json."""

    def __init__(self, out: Path, order: list[tuple[int, str]], progress: Progress | None,
                 legacy: bool) -> None:
        self.dir = out / "stages"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.out, self.order, self.cb, self.current, self.legacy = out, order, progress, order[0], legacy
        self.within = 0.0  # fraction of the current stage done

    def tag(self, seed: int) -> str:
        return "" if self.legacy else f"_s{seed}"

    def run(self, seed: int, name: str, fn: Callable[[], tuple[dict, dict]], cache: StageCache,
            key: str) -> dict:
        label = name if self.legacy else f"{name} seed {seed}"
        self.current = (seed, name)
        self.report(self._fraction(0.0), label, f"{label}: started")
        record, source = resolve_stage(self.dir / f"{name}{self.tag(seed)}.json", key, cache, fn,
                                       self.tag(seed))
        said = {"resumed": "resumed from the run folder", "cached": "reused from the stage cache"}
        self.report(self._fraction(1.0), label, f"{label}: {said.get(source, 'done')}")
        return record

    def _fraction(self, within: float) -> float:
        self.within = within
        return (self.order.index(self.current) + within) / len(self.order)

    def detail(self, message: str, within: float | None = None) -> None:
        """A stage's progress: ``within`` is the fraction of the current stage done (None: as
        last reported)."""
        seed, name = self.current
        within = self.within if within is None else min(max(float(within), 0.0), 1.0)
        self.report(self._fraction(within), name if self.legacy else f"{name} seed {seed}", message)

    def report(self, fraction: float, stage: str, message: str) -> None:
        row = {"stage": stage, "fraction": round(fraction, 4), "message": message, "time": time.time(),
               "stage_number": self.order.index(self.current) + 1, "stages": len(self.order),
               "stage_fraction": round(self.within, 4)}
        write_json_atomic(self.out / "progress.json", row)
        if self.cb:
            self.cb(row)


def _check_or_write_config(cfg: ExperimentConfig, out: Path) -> bool:
    """Write DIR/config.json, or check that the one there is ``cfg``; True for a folder written
    before seeds existed (its stages are named without a seed)."""
    out.mkdir(parents=True, exist_ok=True)
    path, want = out / "config.json", _jsonable(cfg)
    if not path.is_file():
        write_json_atomic(path, want)
        return False
    try:
        raw = json.loads(path.read_text())
        have = dataclasses.asdict(ExperimentConfig.from_dict(raw))
    except (OSError, ValueError, TypeError, AttributeError) as exc:  # a PamError is a ValueError
        raise DataError(f"{path} is not a readable experiment configuration ({exc}); use another --out "
                        "directory (nothing there was changed)") from None
    if have != want:
        raise RunConflict(f"{out} holds a run with a different configuration ({have}); "
                          "use another --out directory (nothing there was changed)")
    return "seed" in raw


__all__ = ["ExperimentConfig", "run_experiment", "check_project_key", "SCHEMES", "FLOORS", "REGROUP_PROFILES",
           "TIMING_FIELDS"]
