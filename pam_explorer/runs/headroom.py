"""Headroom: how far the loaded single-task networks can be pruned alone (the explorer's figure).

PAM pays when pruning can shrink the networks: it merges before pruning so that pruning removes
the redundancy between them and shuts down the neurons a task subset does not need. Networks
at capacity (B1 compresses them little) leave the merged layers wide, and one zipped net (B2)
then wins. This module says which regime the networks are in, as B1's compression at the
tolerance: each network's unpruned FLOPs over those read off its P2 curve (published schedule).

* :func:`measured_headroom` reads it off B1 stage records already computed for these networks:
  the committed study results (``core.paths.results_root``) and experiment run folders (the runs
  roots). A record counts when its folder's config.json names the preset and architecture, P2 and the
  published schedule, and (given ``nets``) its curve starts at these networks' FLOPs.
* :func:`estimate_headroom` runs a short B1 schedule instead (:data:`QUICK_PLAN`, a subsample of
  the training split) and returns the estimate with the seconds it cost; :func:`estimate_seconds`
  predicts that cost beforehand (cost/estimate.py).
* :func:`headroom_figure` is what the explorer shows: the measured figure, else what an estimate
  would cost.
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from pam_explorer.core.config import DataConfig
from pam_explorer.core.paths import results_root, runs_roots
from pam_explorer.cost.analytic import subset_costs
from pam_explorer.cost.estimate import Work, duration_text, forward_flops, seconds
from pam_explorer.data import get_preset, load_preset_data
from pam_explorer.merge.build import from_single
from pam_explorer.prune import PruneConfig, TaskData
from pam_explorer.prune.config import ScheduleConfig
from pam_explorer.prune.schedule import run_schedule
from pam_explorer.runs.estimates import checkpoints as grid_checkpoints
from pam_explorer.runs.estimates import experiment_seconds, split_sizes
from pam_explorer.runs.experiment_config import ExperimentConfig
from pam_explorer.runs.regime_map import b1_compression
from pam_explorer.runs.stage_run import RECORD_META, read_record

# the quick estimate: a fifth of the published budget on 2,000 training pictures, one-epoch finetunes
# (the published pace, end and grid: a tenth as the end would cap the figure at 10x)
QUICK_PLAN = ScheduleConfig(warmup_batches=20, every=4, events=25, checkpoint_epochs=1)
QUICK_DATA = DataConfig(n_train=2000, n_val=2000, n_test=500)
# measured by scripts/headroom_check.py against the committed B1 records (BENCHMARKS "Headroom in
# the explorer: the quick estimate against the measurement"): what the explorer says of an estimate
ESTIMATE_BIAS = ("a lower bound: on the 14 committed LeNet-5 presets it read 0-81 % under B1's "
                 "measured compression, never above, most on networks with room")
MEANING = ("B1's compression: how many times fewer FLOPs each network needs, pruned alone, within "
           "{delta:g} points of its accuracy. Far above 1, merging has redundancy to remove and PAM "
           "can pay; near 1, the merged layers stay as wide as both networks together and a single "
           "zipped network (B2) tends to win.")


def _unpruned_flops(nets: Sequence[nn.Module], tasks: Sequence[str]) -> dict[str, int]:
    return {t: subset_costs(from_single(n, t))[t]["flops"] for n, t in zip(nets, tasks)}


def _experiment_folders(roots: Sequence[Path]) -> list[Path]:
    """Folders holding config.json and stages/, at most two levels under each root."""
    found = []
    for root in roots:
        if root.is_dir():
            found += [p.parent for p in (*root.glob("*/config.json"), *root.glob("*/*/config.json"))
                      if (p.parent / "stages").is_dir()]
    return sorted(set(found))


def _record_key(path: Path) -> str | None:
    """The stage key a record was written under (read_record drops it), or None."""
    try:
        meta = json.loads(path.read_text()).get(RECORD_META)
    except (OSError, ValueError, AttributeError):
        return None
    return meta.get("key") if isinstance(meta, dict) else None


def _matches(config: dict, preset: str, arch: str) -> bool:
    return (config.get("preset") == preset and config.get("arch", "lenet5") == arch
            and config.get("prune") == "taylor" and config.get("schedule") == "published")


def measured_headroom(preset: str, arch: str = "lenet5", delta: float = 0.5,
                      nets: Sequence[nn.Module] | None = None,
                      roots: Sequence[Path] | None = None) -> dict | None:
    """B1's measured compression of ``preset``'s ``arch`` networks, or None when no record is
    found: {"measured": True, "delta", "compression": {task: mean over records}, "min": {task},
    "records": how many seeds, "sources": [record files], "ranks" and "paces": the neuron
    rankings and schedule paces they used}. ``roots``: where to look (default: the committed
    results and the runs roots); ``nets``: the loaded networks, whose unpruned FLOPs a record's
    curve must start at (None: not checked)."""
    tasks = list(get_preset(preset).task_names)
    want = _unpruned_flops(nets, tasks) if nets is not None else None
    per_task: dict[str, list[float]] = {t: [] for t in tasks}
    sources, ranks, paces, seen = [], set(), set(), set()
    for folder in _experiment_folders(list(roots) if roots is not None else [results_root(), *runs_roots()]):
        try:
            config = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(config, dict) or not _matches(config, preset, arch):
            continue
        for path in sorted((folder / "stages").glob("B1_s*.json")):
            try:
                record = read_record(path)
            except ValueError:  # unreadable: not evidence
                continue
            key = _record_key(path)
            if key is not None and key in seen:
                continue  # the same stage resumed into another folder: one measurement, counted once
            curves = record.get("curve")
            if want is not None and isinstance(curves, dict) and any(
                    curves.get(t, [{}])[0].get("flops", {}).get(t) != want[t] for t in tasks):
                continue  # another network (retrained since)
            comp = b1_compression(record, delta, tasks)
            if comp is not None:
                for t in tasks:
                    per_task[t].append(comp[t])
                sources.append(str(path))
                seen.add(key)
                ranks.add(config.get("rank", "published"))
                paces.add(config.get("pace", "flops"))
    if not sources:
        return None
    return {"measured": True, "delta": float(delta), "records": len(sources), "sources": sources,
            "ranks": sorted(ranks), "paces": sorted(paces),
            "compression": {t: sum(v) / len(v) for t, v in per_task.items()},
            "min": {t: min(v) for t, v in per_task.items()}}


def estimate_seconds(nets: Sequence[nn.Module], in_channels: int, image_size: int, threads: int = 1) -> float:
    """Predicted seconds of :func:`estimate_headroom` on the CPU (cost/estimate.py's rule): per
    network the schedule's minibatches plus a one-epoch finetune and an evaluation per checkpoint
    (the grid's points down to the end, at about half the FLOPs on average)."""
    plan, n = QUICK_PLAN, QUICK_DATA
    checkpoints = grid_checkpoints(PruneConfig(plan=plan))
    works = []
    for net in nets:
        flops = forward_flops(net, in_channels, image_size)
        works.append(Work(flops, trained=plan.total_batches * PruneConfig().batch_size))
        works.append(Work(flops / 2, trained=checkpoints * plan.checkpoint_epochs * n.n_train,
                          evaluated=checkpoints * (n.n_val + n.n_test)))
    return seconds(works, threads)


def estimate_headroom(preset: str, nets: Sequence[nn.Module], delta: float = 0.5, seed: int = 0,
                      device: str = "cpu") -> dict:
    """B1's compression estimated by a short P2 schedule on a subsample (see the module
    docstring): {"measured": False, "delta", "compression": {task}, "seconds": what it cost,
    "plan": the schedule, "data": the sizes}. The published budget and data measure it
    (:func:`measured_headroom`); this is a quick look, and says so."""
    t0 = time.perf_counter()
    spec = get_preset(preset)
    data = TaskData.from_splits(load_preset_data(spec, dataclasses.replace(QUICK_DATA, seed=0)), spec)
    config = PruneConfig(delta=delta, seed=seed, device=device, plan=QUICK_PLAN)
    out: dict[str, float] = {}
    for net, task in zip(nets, spec.task_names):
        sub = TaskData(*((split[0], {task: split[1][task]}) for split in (data.train, data.val, data.test)))
        res = run_schedule("taylor", from_single(net, task), sub, config)
        record = {"curve": {task: res.extra["curve"]}, "reference_val_accuracy": dict(res.reference_accuracy)}
        comp = b1_compression(record, delta, [task])
        out[task] = comp[task] if comp is not None else 1.0
    return {"measured": False, "delta": float(delta), "compression": out,
            "seconds": round(time.perf_counter() - t0, 1), "plan": dataclasses.asdict(QUICK_PLAN),
            "data": dataclasses.asdict(QUICK_DATA)}


def measure_job(preset: str, arch: str = "lenet5", seed: int = 0) -> dict:
    """The background run that measures the headroom instead of estimating it: B1 alone under
    the experiment's defaults (P2, published schedule), one seed. Its run folder holds the record
    :func:`measured_headroom` reads, and a later experiment resumes that stage (same key)."""
    return {"command": "experiment",
            "args": {"preset": preset, "arch": arch, "prune": "taylor", "schemes": ["B1"], "seeds": [seed]}}


def measure_seconds(preset: str, nets: Sequence[nn.Module], arch: str = "lenet5") -> float:
    """Predicted seconds of :func:`measure_job` on one CPU thread (runs/estimates.py's rule)."""
    spec = get_preset(preset)
    cfg = ExperimentConfig(preset=preset, arch=arch, schemes=("B1",), seeds=(0,))
    flops = [forward_flops(n, spec.in_channels, spec.image_size) for n in nets]
    return experiment_seconds(cfg, flops, split_sizes(spec, cfg.data()), 1)


def headroom_figure(preset: str, nets: Sequence[nn.Module], arch: str = "lenet5", delta: float = 0.5,
                    roots: Sequence[Path] | None = None) -> dict:
    """What the explorer shows beside the alpha slider: {"measured": bool, "compression": {task:
    x} or None, "min" (measured only), "records", "sources", "estimate_seconds" (the predicted
    cost of :func:`estimate_headroom`, when not measured), "estimate_text", "meaning" (one
    sentence on what the figure means for merging), "delta"}."""
    found = measured_headroom(preset, arch, delta, nets, roots)
    spec = get_preset(preset)
    out = {"delta": float(delta), "meaning": MEANING.format(delta=delta)}
    if found is not None:
        return {**out, **found}
    secs = estimate_seconds(nets, spec.in_channels, spec.image_size)
    return {**out, "measured": False, "compression": None, "estimate_seconds": round(secs, 1),
            "measure_seconds": round(measure_seconds(preset, nets, arch), 1),
            "estimate_text": f"no B1 curve of these networks yet; a quick estimate takes "
                             f"{duration_text(secs)} on this CPU (1 thread)"}


__all__ = ["measured_headroom", "estimate_headroom", "estimate_seconds", "headroom_figure", "measure_job",
           "measure_seconds", "QUICK_PLAN", "QUICK_DATA", "MEANING", "ESTIMATE_BIAS"]
