"""The JSON record of one pruned scheme, and the files it keeps (pure of orchestration).

Published schedule (:mod:`pam_explorer.prune.schedule`): the curve(s), the originals' validation
accuracy the read-offs are measured against, the read-off indices at every tolerance and, as the
scheme's figures, those read off at the run's delta (:mod:`pam_explorer.runs.readoff`; "flops":
null when no checkpoint passes, with ``above_floor`` false). Its files are the finetuned nets of
the read-offs at every tolerance (``<file>_d<delta>.zip``; ``<file>.zip`` is the one at delta).
Floor-greedy loop and AdapMTL: the figures of the net the method returned.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from pam_explorer import export
from pam_explorer.cost.analytic import subset_costs
from pam_explorer.merge.fuse import measure_fused_latency, measure_separate_fused_latency
from pam_explorer.merge.merged_net import MergedNet
from pam_explorer.prune import get_pruner
from pam_explorer.prune.config import TOLERANCES
from pam_explorer.runs.readoff import figures_at

SCHEDULE_FIELDS = ("stopped", "budget_batches", "trained_batches")


def costs(c: Mapping) -> dict:
    return {"flops": {k: v["flops"] for k, v in c.items()}, "params": {k: v["params"] for k, v in c.items()}}


def latencies(run_time: float, net: MergedNet | Mapping[str, MergedNet]) -> dict:
    """"latency_ms" (CPU, batch 1, median ms of the fused subset models; B1: its fused single-task
    nets one after the other) and, with a GPU, "latency_ms_cuda"; ``net``: a MergedNet or B1's
    {task: MergedNet}."""
    fn = measure_separate_fused_latency if isinstance(net, Mapping) else measure_fused_latency
    measure = lambda device: {k: round(1e3 * v, 4) for k, v in  # noqa: E731
                              fn(net, device=device, min_run_time=run_time).items()}
    out = {"latency_ms": measure("cpu")}
    if torch.cuda.is_available():
        out["latency_ms_cuda"] = measure("cuda")
    return out


def unstructured(result) -> bool:
    """Weights zeroed, no neuron removed (the Pruner contract's ``structured`` flag)."""
    return not get_pruner(result.method).structured


def scheduled(result) -> bool:
    return "curve" in result.extra


def slim(row: dict) -> dict:
    keep = ("step", "task", "accepted", "removed", "widths", "flops", "val_accuracy")
    return {k: row[k] for k in keep if k in row}


def sparse_fields(result) -> dict:
    x = result.extra
    return {"sparse_flops": x["sparse_flops"], "dense_flops": x["dense_flops"], "sparsity": x["sparsity"],
            "sparsity_series": x["sparsity_series"], "delta_t": x["delta_t"],
            "dense_test_accuracy": x["dense_test_accuracy"], "frozen_at_step": x["frozen_at_step"],
            "thresholds": x["thresholds"], "component_sizes": x["component_sizes"],
            "overall_sparsity": x["sparsity"]["overall"]}


def curve_record(curve, reference: Mapping[str, float], readoffs, extra: Mapping, delta: float,
                 tasks: Sequence[str]) -> dict:
    """The schedule fields of a record and its figures read off at ``delta`` (see the module
    docstring); ``curve``/``readoffs``: a merged net's, or B1's {task: ...}."""
    rec = {"schedule": "published", "delta": float(delta), "curve": curve,
           "reference_val_accuracy": dict(reference),
           "readoffs": readoffs, **{k: extra[k] for k in SCHEDULE_FIELDS if k in extra}}
    figures = figures_at(rec, delta, tasks)
    rec["above_floor"] = figures is not None
    rec.update(figures if figures is not None else {"flops": None, "accuracy": None})
    return rec


def tolerance_files(folder: Path, stem: str, tag: str, result, meta: dict) -> dict[str, Path]:
    """The finetuned read-off nets of a schedule result: ``<stem>_d<delta>.zip`` at every
    tolerance that has one, and ``<stem>.zip`` at the result's own delta (its ``net``: the
    unpruned one when no checkpoint passes)."""
    files = {f"{stem}.zip": export.save(result.net, folder / f"{stem}{tag}.zip", meta)}
    for d, i in result.extra["readoffs"].items():
        if i is not None and float(d) in TOLERANCES:
            name = f"{stem}_d{float(d):g}.zip"
            files[name] = export.save(result.extra["nets"][i], folder / f"{stem}_d{float(d):g}{tag}.zip",
                                      {**meta, "tolerance": float(d), "checkpoint": i})
    return files


def merged_record(result, run_time: float, seconds: float, delta: float) -> dict:
    """B2 / PAM: curve and read-offs (schedule) or the returned net's figures, latency of the
    net at delta, widths, log or sparsity fields, seconds."""
    net, tasks = result.net, list(result.net.tasks)
    rec = {"widths": net.group_widths(), "seconds": round(seconds, 1),
           "reference_val_accuracy": dict(result.reference_accuracy)}
    if scheduled(result):
        rec.update(curve_record(result.extra["curve"], result.reference_accuracy, result.extra["readoffs"],
                                result.extra, delta, tasks))
    else:
        rec.update(costs(subset_costs(net)), accuracy=dict(result.test_accuracy),
                   val_accuracy=dict(result.val_accuracy),
                   log=[slim(r) for r in result.log] if not unstructured(result) else [],
                   stopped_at_max_steps=result.extra.get("stopped") == "max_steps")
        if unstructured(result):  # "flops" is always the cost after pruning: here the effective one
            rec.update(sparse_fields(result), flops=result.extra["sparse_flops"])
    rec.update(latencies(run_time, net))
    return rec


__all__ = ["costs", "latencies", "unstructured", "scheduled", "slim", "sparse_fields", "curve_record",
           "tolerance_files", "merged_record"]
