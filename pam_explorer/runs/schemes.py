"""One scheme of an experiment under one seed: B1 (separate nets), B2 (MTZ), PAM (merge).

Each function prunes its scheme with the same method, schedule and budget (published schedule:
:mod:`pam_explorer.prune.schedule`; the floor-greedy loop: :mod:`pam_explorer.prune.base`), saves
the pruned network(s) as export zips into ``folder`` and returns a JSON-able record
(:mod:`pam_explorer.runs.scheme_records`): the curve(s) and the figures read off them at the run's
delta (or the figures of the floor-greedy loop's net), CPU latency at batch 1, widths, and the
sparsity breakdown, sparse FLOPs and Delta_T for AdapMTL. A published schedule keeps its
checkpoints in ``<scheme><tag>.work/`` while it runs, so a killed stage resumes from the last one.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pam_explorer import export
from pam_explorer.baselines.mtz import MTZConfig, zip_networks
from pam_explorer.core.config import DataConfig, FinetuneConfig, MIConfig, RegroupConfig
from pam_explorer.core.subsets import all_subsets, subset_key
from pam_explorer.cost.analytic import separate_costs, subset_costs
from pam_explorer.graph.layer_map import layer_map
from pam_explorer.merge.build import from_single, merge_networks
from pam_explorer.merge.merged_net import MergedNet
from pam_explorer.prune import PruneConfig, TaskData, get_pruner
from pam_explorer.prune.adapmtl_math import delta_t
from pam_explorer.regroup.explorer import Explorer
from pam_explorer.regroup.trajectories import weights_hash
from pam_explorer.runs import scheme_records as rec_
from pam_explorer.runs.checkpoints import FolderStore
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
    merged_budget: str = "per-network"  # ExperimentConfig.merged_budget (merged_settings)


def merged_settings(s: SchemeSettings, n_networks: int) -> SchemeSettings:
    """The settings a merged net of ``n_networks`` networks is pruned with: ``merged_budget``
    "total" trains it as long as B1 trains its networks together (the schedule's warm-up and the
    minibatches between events times ``n_networks``; the events, checkpoint grid and checkpoint
    finetunes stay as they are), "per-network" leaves ``s`` as it is."""
    if s.merged_budget == "per-network":
        return s
    plan = s.prune.plan.trained_longer(n_networks)
    return dataclasses.replace(s, prune=dataclasses.replace(s.prune, plan=plan))


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


def _prune(s: SchemeSettings, net: MergedNet, data: TaskData, say: Say, label: str,
           store: FolderStore | None = None, unit: int | None = None):
    """Prune with the method (resuming from ``store``'s last checkpoint, if any; ``unit``: the
    largest original network's FLOPs, :func:`original_unit`); progress:
    schedule checkpoints (published), prune steps (out of at most ``max_steps``; the run may
    stop earlier, when every task is frozen) or AdapMTL epochs, then the final finetuning."""
    steps = max(1, s.prune.max_steps)
    total = max(1, s.prune.plan.total_batches)
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
        elif row.get("phase") == "checkpoint":
            accs = ", ".join(f"{t} {a:.2f}" for t, a in row["val_accuracy"].items())
            say(f"{label}: checkpoint {row['index']} at {100 * row['fraction']:.0f} % of the FLOPs, "
                f"val {accs}")
        elif row.get("phase") == "event":
            say(f"{label}: pruning while training, minibatch {row['step']}/{total}",
                0.95 * row["step"] / total)
        elif row.get("phase") == "prune":
            say(f"{label}: prune step {row['step'] + 1} (at most {steps}, task {row.get('task')}) "
                f"{'accepted' if row.get('accepted') else 'rejected'}", 0.95 * (row["step"] + 1) / steps)
    say(f"{label}: pruning ({s.method})", 0.0)
    resume = store.resume_state() if store is not None else None
    if resume is not None:
        say(f"{label}: resuming from checkpoint {len(resume.meta['points']) - 1}")
    config = dataclasses.replace(s.prune, unit_flops=unit) if unit is not None else s.prune
    return get_pruner(s.method).prune(net, data, config, progress=cb, store=store, resume=resume)


def original_unit(nets: Sequence, tasks: Sequence[str]) -> int:
    """The all-task FLOPs of the largest original network (each alone on its task): the unit of
    every scheme's schedule end (``ScheduleConfig.end_unit``)."""
    singles = [from_single(net, task) for net, task in zip(nets, tasks)]
    return max(int(subset_costs(n)[subset_key(n.tasks)]["flops"]) for n in singles)


def _store(s: SchemeSettings, folder: Path, label: str, nets: Sequence) -> FolderStore | None:
    """The checkpoint store of one pruned network (published schedule only), keyed by the
    settings and the networks, so a folder of another configuration is never resumed."""
    if s.prune.schedule != "published" or s.method not in ("taylor", "vib"):
        return None
    key = hashlib.sha256(json.dumps([label, dataclasses.asdict(s), weights_hash(nets)], sort_keys=True,
                                    default=str).encode()).hexdigest()[:32]
    return FolderStore(folder, key)


def run_b1(s: SchemeSettings, nets: Sequence, tasks: Sequence[str], data: TaskData, say: Say,
           folder: Path, tag: str) -> tuple[dict, dict[str, Path]]:
    """Each task's own network pruned alone; a subset costs the sum of its tasks' networks."""
    t0, pruned, results, files, stores = time.perf_counter(), {}, {}, {}, []
    unit = original_unit(nets, tasks)
    for i, (net, task) in enumerate(zip(nets, tasks)):
        sub = TaskData(*((split[0], {task: split[1][task]}) for split in (data.train, data.val, data.test)))
        store = _store(s, folder / f"B1{tag}.work" / task, f"B1 {task}", [net])
        res = _prune(s, from_single(net, task), sub, _span(say, i / len(tasks), (i + 1) / len(tasks)),
                     f"B1 {task}", store, unit)
        meta = {"scheme": "B1", "task": task}
        if rec_.scheduled(res):
            files.update(rec_.tolerance_files(folder, f"B1_{task}", tag, res, meta))
        else:
            files[f"B1_{task}.zip"] = export.save(res.net, folder / f"B1_{task}{tag}.zip", meta)
        pruned[task], results[task] = res.net, res
        stores.append(store)
    rec = _b1_record(s, pruned, results, tasks)
    rec["seconds"] = round(time.perf_counter() - t0, 1)
    for store in stores:
        if store is not None:
            store.clear()
    if any(store is not None for store in stores):
        shutil.rmtree(folder / f"B1{tag}.work", ignore_errors=True)
    return rec, files


def _b1_record(s: SchemeSettings, pruned: dict, results: dict, tasks: Sequence[str]) -> dict:
    per = lambda attr: {t: getattr(r, attr)[t] for t, r in results.items()}  # noqa: E731
    rec = {**rec_.latencies(s.latency_run_time, pruned), "reference_val_accuracy": per("reference_accuracy"),
           "widths": {t: n.group_widths() for t, n in pruned.items()}}
    if all(rec_.scheduled(r) for r in results.values()):
        return {**rec, **rec_.curve_record({t: r.extra["curve"] for t, r in results.items()},
                                           per("reference_accuracy"),
                                           {t: r.extra["readoffs"] for t, r in results.items()},
                                           {k: {t: r.extra[k] for t, r in results.items()}
                                            for k in rec_.SCHEDULE_FIELDS}, s.prune.delta, tasks)}
    rec.update(rec_.costs(separate_costs(pruned)), accuracy=per("test_accuracy"),
               val_accuracy=per("val_accuracy"),
               log={t: [rec_.slim(r) for r in res.log] if not rec_.unstructured(res) else []
                    for t, res in results.items()},
               stopped_at_max_steps={t: r.extra.get("stopped") == "max_steps" for t, r in results.items()})
    if all(rec_.unstructured(r) for r in results.values()):
        rec.update(_separate_sparse_fields(results))
        rec["flops"] = rec["sparse_flops"]  # "flops" is always the cost after pruning
    return rec


def _separate_sparse_fields(results: dict) -> dict:
    """B1 under AdapMTL: a subset runs its tasks' networks, so sparse/dense FLOPs add up;
    sparsity breakdowns stay per task network; Delta_T over all tasks at once."""
    fields = {t: rec_.sparse_fields(r) for t, r in results.items()}
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


def _pruned_merged(s: SchemeSettings, net: MergedNet, data: TaskData, say: Say, label: str, folder: Path,
                   tag: str, nets: Sequence, meta: dict, t0: float) -> tuple[dict, dict[str, Path]]:
    """B2 / PAM after building: the joint finetuning of the floor-greedy loop (the published
    schedule trains inside its budget instead), pruning, the record and the files."""
    s = merged_settings(s, len(net.tasks))
    rec: dict = {}
    lo = 0.35
    if s.prune.schedule != "published" or not get_pruner(s.method).structured:
        rec["finetuned_val_accuracy"] = _joint_finetune(s, net, data, _span(say, 0.2, 0.35), label)
    store = _store(s, folder / f"{label}{tag}.work", label, nets)
    res = _prune(s, net, data, _span(say, lo, 1.0), label, store, original_unit(nets, net.tasks))
    if rec_.unstructured(res):
        meta.update(sparse_flops=res.extra["sparse_flops"], sparsity=res.extra["sparsity"])
    if rec_.scheduled(res):
        files = rec_.tolerance_files(folder, label, tag, res, {**meta, "accuracy": res.test_accuracy})
    else:
        files = {f"{label}.zip": export.save(res.net, folder / f"{label}{tag}.zip",
                                             {**meta, "accuracy": res.test_accuracy})}
    rec.update(rec_.merged_record(res, s.latency_run_time, time.perf_counter() - t0, s.prune.delta))
    if store is not None:
        store.clear()
    return rec, files


def run_b2(s: SchemeSettings, nets: Sequence, tasks: Sequence[str], data: TaskData, say: Say,
           folder: Path, tag: str) -> tuple[dict, dict[str, Path]]:
    """MTZ zips the networks into one shared trunk, then it is pruned like every scheme (the
    floor-greedy loop first finetunes it jointly, as PAM's merged net)."""
    t0 = time.perf_counter()
    say("B2: zipping the networks (MTZ)", 0.0)
    n_layers, done = len(layer_map(nets[0])), []

    def zipped_layer(rec: dict) -> None:
        done.append(rec["layer"])
        say(f"B2: MTZ zipped layer {rec['layer']} ({len(done)}/{n_layers})", 0.2 * len(done) / n_layers)
    zipped = zip_networks(nets, tasks, data.train, data.val, s.mtz, progress=zipped_layer).net
    zipped_accuracy = evaluate(zipped, *data.val)
    rec, files = _pruned_merged(s, zipped, data, say, "B2", folder, tag, nets, {"scheme": "B2"}, t0)
    return {**rec, "zipped_accuracy": zipped_accuracy}, files


def run_pam(s: SchemeSettings, nets: Sequence, tasks: Sequence[str], data: TaskData, say: Say,
            folder: Path, tag: str) -> tuple[dict, dict[str, Path]]:
    """Regroup at the configured alpha, merge, prune (the floor-greedy loop first finetunes)."""
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
    meta = {"scheme": "PAM", "alpha": s.regroup.alpha, "alpha_overrides": dict(s.regroup.overrides),
            "preset": s.preset, "prune": s.method, "mi_profile": s.mi.profile,
            "both_picked": s.regroup.both_picked}
    rec, files = _pruned_merged(s, merged, data, say, "PAM", folder, tag, nets, meta, t0)
    return {**rec, "flops_before_pruning": before,  # the merged net as built (= the explorer's prediction)
            "groups_before_pruning": {layer: {subset_key(k): len(v) for k, v in g.groups.items()}
                                      for layer, g in groups.items()},
            "dropped_before_pruning": {layer: len(g.dropped) for layer, g in groups.items()},
            "merged_val_accuracy": merged_accuracy}, files


SCHEME_FNS = {"B1": run_b1, "B2": run_b2, "PAM": run_pam}

__all__ = ["SchemeSettings", "SCHEME_FNS", "run_b1", "run_b2", "run_pam", "original_unit"]
