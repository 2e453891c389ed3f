"""One scheme of an experiment under one seed: B1 (separate nets), B2 (MTZ), PAM (merge).

Each function prunes its scheme with the same method and rule (:mod:`pam_explorer.prune.base`),
saves the pruned network(s) as export zips into ``folder`` and returns a JSON-able record:
FLOPs/params per task subset, CPU latency at batch 1, test/val accuracy per task, the floor it
was pruned against, widths and the slimmed pruning log (structured methods) or the sparsity
breakdown, sparse FLOPs and Delta_T (unstructured: AdapMTL), and the seconds it took.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from pam_explorer import export
from pam_explorer.baselines.mtz import MTZConfig, zip_networks
from pam_explorer.core.config import DataConfig, FinetuneConfig, MIConfig, RegroupConfig
from pam_explorer.core.subsets import all_subsets, subset_key
from pam_explorer.cost.analytic import separate_costs, subset_costs
from pam_explorer.graph.layer_map import layer_map
from pam_explorer.merge.build import from_single, merge_networks
from pam_explorer.merge.fuse import measure_fused_latency, measure_separate_fused_latency
from pam_explorer.merge.merged_net import MergedNet
from pam_explorer.prune import PruneConfig, TaskData, get_pruner
from pam_explorer.prune.adapmtl_math import delta_t
from pam_explorer.regroup.explorer import Explorer
from pam_explorer.train.finetune import evaluate, finetune

Say = Callable[..., None]  # say(message, within=None): within = fraction of the stage done, in [0, 1]


@dataclass(frozen=True)
class SchemeSettings:
    """The concrete settings of one seed's stages (built by the experiment from its config)."""

    preset: str
    method: str
    prune: PruneConfig
    mtz: MTZConfig
    finetune: FinetuneConfig
    mi: MIConfig
    regroup: RegroupConfig
    data: DataConfig
    latency_run_time: float = 0.2  # seconds of torch.utils.benchmark per subset
    mi_data: DataConfig = DataConfig()  # PAM's MI sample is drawn from this data (the explorer's)


def _span(say: Say, lo: float, hi: float) -> Say:
    """``say`` for a part of a stage that runs from ``lo`` to ``hi`` of it."""
    return lambda message, within=None: say(message, None if within is None else lo + (hi - lo) * within)


def _joint_finetune(s: SchemeSettings, net: MergedNet, data: TaskData, say: Say, label: str) -> dict:
    """The merged schemes' joint finetuning before pruning, one progress line per epoch; returns
    the validation accuracy after it."""
    epochs = max(1, s.finetune.epochs)
    say(f"{label}: joint finetuning", 0.0)
    return finetune(net, data.train, data.val, s.finetune, progress=lambda row: say(
        f"{label}: joint finetuning, epoch {row['epoch']}/{epochs}", row["epoch"] / epochs)).val_accuracy


def _prune(s: SchemeSettings, net: MergedNet, data: TaskData, say: Say, label: str):
    """Prune with the method; progress: prune steps (out of at most ``max_steps``; the run may
    stop earlier, when every task is frozen) or AdapMTL epochs, then the final finetuning."""
    steps = max(1, s.prune.max_steps)
    epochs = max(1, s.prune.adapmtl.epochs if s.prune.adapmtl is not None else 1)

    def cb(row: dict) -> None:
        if row.get("phase") == "adapmtl":  # one line per epoch, not per step
            if row.get("val_accuracy"):
                say(f"{label}: AdapMTL epoch {row['epoch']}/{epochs}, sparsity "
                    f"{row['sparsity']['overall']:.3f}, val {row['val_accuracy']}",
                    0.95 * row["epoch"] / epochs)
        elif row.get("phase") == "frozen" and "sparsity" in row:
            say(f"{label}: AdapMTL thresholds frozen at step {row['step']}")
        elif row.get("phase") == "final_finetune":
            say(f"{label}: final finetuning, epoch {row.get('epoch')}", 0.97)
        elif row.get("phase") == "vib":
            say(f"{label}: VIB gate training, epoch {row.get('epoch')}/{s.prune.vib_epochs}", 0.0)
        elif row.get("phase") == "prune":
            say(f"{label}: prune step {row['step'] + 1} (at most {steps}, task {row.get('task')}) "
                f"{'accepted' if row.get('accepted') else 'rejected'}", 0.95 * (row["step"] + 1) / steps)
    say(f"{label}: pruning ({s.method})", 0.0)
    return get_pruner(s.method).prune(net, data, s.prune, progress=cb)


def _costs(costs: dict) -> dict:
    return {"flops": {k: c["flops"] for k, c in costs.items()},
            "params": {k: c["params"] for k, c in costs.items()}}


def _latency_ms(s: SchemeSettings, net: MergedNet, device: str = "cpu") -> dict[str, float]:
    """{subset: ms} of one forward pass of the subset's fused model (what is deployed) with one
    image (an edge request), median."""
    return {k: round(1e3 * v, 4) for k, v in
            measure_fused_latency(net, device=device, min_run_time=s.latency_run_time).items()}


def _separate_latency_ms(s: SchemeSettings, nets: dict[str, MergedNet], device: str = "cpu") -> dict:
    """B1 runs a subset's fused single-task networks one after the other, in one timed call."""
    return {k: round(1e3 * v, 4) for k, v in measure_separate_fused_latency(
        nets, device=device, min_run_time=s.latency_run_time).items()}


def _latencies(s: SchemeSettings, net) -> dict:
    """"latency_ms" (CPU) and, when a GPU is present, "latency_ms_cuda"; ``net`` is a MergedNet
    or B1's {task: MergedNet}."""
    measure = _separate_latency_ms if isinstance(net, dict) else _latency_ms
    out = {"latency_ms": measure(s, net)}
    if torch.cuda.is_available():
        out["latency_ms_cuda"] = measure(s, net, "cuda")
    return out


def _unstructured(result) -> bool:
    """Weights zeroed, no neuron removed (the Pruner contract's ``structured`` flag)."""
    return not get_pruner(result.method).structured


def _sparse_fields(result) -> dict:
    x = result.extra
    return {"sparse_flops": x["sparse_flops"], "dense_flops": x["dense_flops"], "sparsity": x["sparsity"],
            "sparsity_series": x["sparsity_series"], "delta_t": x["delta_t"],
            "dense_test_accuracy": x["dense_test_accuracy"], "frozen_at_step": x["frozen_at_step"],
            "thresholds": x["thresholds"], "component_sizes": x["component_sizes"],
            "overall_sparsity": x["sparsity"]["overall"]}


def _slim(row: dict) -> dict:
    keep = ("step", "task", "accepted", "removed", "widths", "flops", "val_accuracy")
    return {k: row[k] for k in keep if k in row}


def _at_budget(result) -> bool:
    """True when structured pruning ran out of ``max_steps`` turns with some task not yet frozen
    (more turns might have pruned further); False for unstructured methods."""
    return result.extra.get("stopped") == "max_steps"


def _record(s: SchemeSettings, result, seconds: float) -> dict:
    """B2 / PAM: costs, latency, accuracies, floor reference, widths, log or sparsity fields."""
    rec = {**_costs(subset_costs(result.net)), **_latencies(s, result.net),
           "accuracy": dict(result.test_accuracy), "val_accuracy": dict(result.val_accuracy),
           "reference_val_accuracy": dict(result.reference_accuracy),
           "log": [_slim(r) for r in result.log] if not _unstructured(result) else [],
           "widths": result.net.group_widths(), "seconds": round(seconds, 1),
           "stopped_at_max_steps": _at_budget(result)}
    if _unstructured(result):  # "flops" is always the cost after pruning: here the effective one
        rec.update(_sparse_fields(result), flops=result.extra["sparse_flops"])
    return rec


def run_b1(s: SchemeSettings, nets: Sequence, tasks: Sequence[str], data: TaskData, say: Say,
           folder: Path, tag: str) -> tuple[dict, dict[str, Path]]:
    """Each task's own network pruned alone; a subset costs the sum of its tasks' networks."""
    t0, pruned, results, files = time.perf_counter(), {}, {}, {}
    for i, (net, task) in enumerate(zip(nets, tasks)):
        sub = TaskData(*((split[0], {task: split[1][task]}) for split in (data.train, data.val, data.test)))
        res = _prune(s, from_single(net, task), sub, _span(say, i / len(tasks), (i + 1) / len(tasks)),
                     f"B1 {task}")
        files[f"B1_{task}.zip"] = export.save(res.net, folder / f"B1_{task}{tag}.zip",
                                              {"scheme": "B1", "task": task})
        pruned[task], results[task] = res.net, res
    per = lambda attr: {t: getattr(r, attr)[t] for t, r in results.items()}  # noqa: E731
    rec = {**_costs(separate_costs(pruned)), **_latencies(s, pruned),
           "accuracy": per("test_accuracy"), "val_accuracy": per("val_accuracy"),
           "reference_val_accuracy": per("reference_accuracy"),
           "widths": {t: n.group_widths() for t, n in pruned.items()},
           "log": {t: [_slim(r) for r in res.log] if not _unstructured(res) else []
                   for t, res in results.items()},
           "seconds": round(time.perf_counter() - t0, 1),
           "stopped_at_max_steps": {t: _at_budget(r) for t, r in results.items()}}
    if all(_unstructured(r) for r in results.values()):
        rec.update(_separate_sparse_fields(results))
        rec["flops"] = rec["sparse_flops"]  # "flops" is always the cost after pruning
    return rec, files


def _separate_sparse_fields(results: dict) -> dict:
    """B1 under AdapMTL: a subset runs its tasks' networks, so sparse/dense FLOPs add up;
    sparsity breakdowns stay per task network; Delta_T over all tasks at once."""
    fields = {t: _sparse_fields(r) for t, r in results.items()}
    add = lambda key: {subset_key(sub): sum(fields[t][key][t] for t in sub)  # noqa: E731
                       for sub in all_subsets(list(results))}
    dense_acc = {t: f["dense_test_accuracy"][t] for t, f in fields.items()}
    sizes = {t: sum(f["component_sizes"].values()) for t, f in fields.items()}
    return {"sparse_flops": add("sparse_flops"), "dense_flops": add("dense_flops"),
            "sparsity": {t: f["sparsity"] for t, f in fields.items()},
            "sparsity_series": {t: f["sparsity_series"] for t, f in fields.items()},
            "delta_t": delta_t({t: r.test_accuracy[t] for t, r in results.items()}, dense_acc),
            "dense_test_accuracy": dense_acc,
            "frozen_at_step": {t: f["frozen_at_step"] for t, f in fields.items()},
            "thresholds": {t: f["thresholds"] for t, f in fields.items()},
            "component_sizes": {t: f["component_sizes"] for t, f in fields.items()},
            # zeros over the weights of all task networks together
            "overall_sparsity": sum(f["overall_sparsity"] * sizes[t] for t, f in fields.items())
            / sum(sizes.values())}


def run_b2(s: SchemeSettings, nets: Sequence, tasks: Sequence[str], data: TaskData, say: Say,
           folder: Path, tag: str) -> tuple[dict, dict[str, Path]]:
    """MTZ zips the networks into one shared trunk, finetuned jointly as PAM's merged net is
    (the same epochs: a merged scheme gets the same chance to recover before pruning), then pruned."""
    t0 = time.perf_counter()
    say("B2: zipping the networks (MTZ)", 0.0)
    n_layers, done = len(layer_map(nets[0])), []

    def zipped_layer(rec: dict) -> None:
        done.append(rec["layer"])
        say(f"B2: MTZ zipped layer {rec['layer']} ({len(done)}/{n_layers})", 0.2 * len(done) / n_layers)
    zipped = zip_networks(nets, tasks, data.train, data.val, s.mtz, progress=zipped_layer).net
    zipped_accuracy = evaluate(zipped, *data.val)
    tuned = _joint_finetune(s, zipped, data, _span(say, 0.2, 0.35), "B2")
    res = _prune(s, zipped, data, _span(say, 0.35, 1.0), "B2")
    path = export.save(res.net, folder / f"B2{tag}.zip", {"scheme": "B2"})
    return {**_record(s, res, time.perf_counter() - t0), "zipped_accuracy": zipped_accuracy,
            "finetuned_val_accuracy": tuned}, {"B2.zip": path}


def run_pam(s: SchemeSettings, nets: Sequence, tasks: Sequence[str], data: TaskData, say: Say,
            folder: Path, tag: str) -> tuple[dict, dict[str, Path]]:
    """Regroup at the configured alpha, merge, finetune jointly, prune."""
    t0 = time.perf_counter()
    say("PAM: MI trajectories and regrouping", 0.0)

    def traj_progress(layer: str, step: int, total: int) -> None:
        if total and (step == total or step % max(1, total // 10) == 0):
            say(f"PAM: MI trajectories of {layer}: step {step}/{total}")
    explorer = Explorer.open(s.preset, s.mi, s.mi_data, nets=nets, progress=traj_progress)
    groups = explorer.groups(s.regroup)
    merged = merge_networks(nets, tasks, groups)
    before = {k: c["flops"] for k, c in subset_costs(merged).items()}
    merged_accuracy = evaluate(merged, *data.val)
    tuned = _joint_finetune(s, merged, data, _span(say, 0.1, 0.35), "PAM")
    res = _prune(s, merged, data, _span(say, 0.35, 1.0), "PAM")
    extra = {"scheme": "PAM", "alpha": s.regroup.alpha, "alpha_overrides": dict(s.regroup.overrides),
             "preset": s.preset, "accuracy": res.test_accuracy, "prune": s.method,
             "mi_profile": s.mi.profile, "both_picked": s.regroup.both_picked}
    if _unstructured(res):
        extra.update(sparse_flops=res.extra["sparse_flops"], sparsity=res.extra["sparsity"])
    path = export.save(res.net, folder / f"PAM{tag}.zip", extra)
    return {**_record(s, res, time.perf_counter() - t0),
            "flops_before_pruning": before,  # the merged net as built (= the explorer's prediction)
            "groups_before_pruning": {layer: {subset_key(k): len(v) for k, v in g.groups.items()}
                                      for layer, g in groups.items()},
            "dropped_before_pruning": {layer: len(g.dropped) for layer, g in groups.items()},
            "merged_val_accuracy": merged_accuracy, "finetuned_val_accuracy": tuned}, \
        {"PAM.zip": path}


SCHEME_FNS = {"B1": run_b1, "B2": run_b2, "PAM": run_pam}

__all__ = ["SchemeSettings", "SCHEME_FNS", "run_b1", "run_b2", "run_pam"]
