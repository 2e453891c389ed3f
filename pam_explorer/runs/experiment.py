"""B1 vs B2 vs PAM under one pruning method, on one preset -> DIR/report.json + DIR/table.md.

Every scheme is pruned by the same method and the same accuracy-constrained rule (see
:mod:`pam_explorer.prune.base`). Stages are cached in DIR/stages/ (metrics JSON + the pruned
network as an export zip), so an interrupted run resumes where it stopped; DIR/progress.json
tells the dashboard how far it is.
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from pam_explorer import export
from pam_explorer.baselines.mtz import MTZConfig, zip_networks
from pam_explorer.core import validate
from pam_explorer.core.config import DataConfig, FinetuneConfig, MIConfig, RegroupConfig
from pam_explorer.core.errors import ConfigError, RunConflict
from pam_explorer.core.io import write_json_atomic, write_text_atomic
from pam_explorer.core.subsets import all_subsets, subset_key
from pam_explorer.cost.analytic import separate_costs, subset_costs
from pam_explorer.cost.latency import measure_latency
from pam_explorer.data import get_preset, load_preset_data
from pam_explorer.merge.build import from_single, merge_networks
from pam_explorer.merge.merged_net import MergedNet
from pam_explorer.prune import AdapMTLConfig, PruneConfig, TaskData, get_pruner, list_pruners
from pam_explorer.prune.adapmtl_math import delta_t
from pam_explorer.regroup.explorer import Explorer
from pam_explorer.runs.outdir import claim
from pam_explorer.runs.report import gains, markdown_table
from pam_explorer.train.finetune import evaluate, finetune
from pam_explorer.zoo.chain import ChainNet
from pam_explorer.zoo.pretrained import load_pretrained

SCHEMES = ("B1", "B2", "PAM")
OUTPUTS = ("config.json", "report.json", "table.md", "model.zip", "stages")  # what DIR receives
Progress = Callable[[dict], None]


@dataclass(frozen=True)
class ExperimentConfig:
    """What to run; ``quick`` shrinks data, steps and epochs to a smoke test of every stage."""

    preset: str = "digits-2task"
    prune: str = "taylor"
    alpha: float | None = None  # None: the preset's default
    schemes: tuple[str, ...] = SCHEMES
    finetune_epochs: int = 3
    quick: bool = False
    seed: int = 0  # pruning / finetuning / MTZ randomness; the data split is the nets' own
    device: str = "auto"
    target_sparsity: float = 0.9  # AdapMTL only: overall fraction of zero weights

    def __post_init__(self) -> None:
        get_preset(self.preset)  # raises with the known names
        if self.prune not in list_pruners():
            raise ConfigError(f"ExperimentConfig.prune: unknown method {self.prune!r}; "
                              f"known: {list_pruners()}")
        bad = [s for s in self.schemes if s not in SCHEMES] or ([] if self.schemes else ["(none)"])
        if bad:
            raise ConfigError(f"ExperimentConfig.schemes: {bad} not in {list(SCHEMES)}")
        RegroupConfig(alpha=self.resolved_alpha())  # validates alpha
        validate.non_negative_int(self, "finetune_epochs")
        if self.prune == "adapmtl":
            self.adapmtl()  # validates target_sparsity, naming AdapMTLConfig's field

    def resolved_alpha(self) -> float:
        return get_preset(self.preset).default_alpha if self.alpha is None else self.alpha

    def data(self) -> DataConfig:
        # the data seed stays the one the committed networks were trained with: another seed
        # draws other source pools, and their test pictures would overlap the nets' training ones
        return DataConfig(n_train=600, n_val=300, n_test=300) if self.quick else DataConfig()

    def mi(self) -> MIConfig:
        return MIConfig(n_samples=64 if self.quick else 256, seed=self.seed)

    def adapmtl(self) -> AdapMTLConfig:
        # quick: a few fast-rising steps so the freeze is reached on the tiny data too
        return AdapMTLConfig(target_sparsity=self.target_sparsity, epochs=3, theta_lr=0.3) if self.quick \
            else AdapMTLConfig(target_sparsity=self.target_sparsity)

    def prune_config(self) -> PruneConfig:
        adapmtl = self.adapmtl() if self.prune == "adapmtl" else None
        if self.quick:
            return PruneConfig(max_steps=4, finetune_batches=3, final_finetune_epochs=1, score_batches=2,
                               vib_epochs=1, step_fraction=0.2, seed=self.seed, device=self.device,
                               adapmtl=adapmtl)
        return PruneConfig(seed=self.seed, device=self.device, adapmtl=adapmtl)

    def mtz(self) -> MTZConfig:
        return MTZConfig(n_samples=128, retrain_batches=3, seed=self.seed, device=self.device) if self.quick \
            else MTZConfig(seed=self.seed, device=self.device)

    def finetune(self) -> FinetuneConfig:
        return FinetuneConfig(epochs=1 if self.quick else self.finetune_epochs, seed=self.seed,
                              device=self.device)


def run_experiment(cfg: ExperimentConfig, out: str | Path, progress: Progress | None = None,
                   nets: Sequence[ChainNet] | None = None) -> dict:
    """Run (or resume) every scheme of ``cfg`` and write DIR/report.json and DIR/table.md."""
    with claim(out, "experiment", dataclasses.asdict(cfg), OUTPUTS, defaults=_DEFAULTS):  # lock, refuse
        return _run_experiment(cfg, Path(out), progress, nets)


def _run_experiment(cfg: ExperimentConfig, out: Path, progress: Progress | None,
                    nets: Sequence[ChainNet] | None) -> dict:
    out = Path(out)
    _check_or_write_config(cfg, out)
    preset = get_preset(cfg.preset)
    nets = list(nets) if nets is not None else load_pretrained(preset.name, preset.task_names)
    data = TaskData.from_splits(load_preset_data(preset, cfg.data()), preset)
    stages = _Stages(out, cfg.schemes, progress)
    schemes = {}
    for name in cfg.schemes:
        schemes[name] = stages.run(
            name, lambda n=name: _SCHEME_FNS[n](cfg, nets, preset.task_names, data, stages))
    report = {"preset": preset.name, "tasks": list(preset.task_names), "prune": cfg.prune,
              "alpha": cfg.resolved_alpha(), "quick": cfg.quick,
              "reference_accuracy": {t: evaluate(_single(n, t), data.test[0], data.test[1])[t]
                                     for n, t in zip(nets, preset.task_names)},
              "schemes": schemes, "gains": gains(schemes), "latency_gains": gains(schemes, "latency_ms")}
    if any("sparse_flops" in s for s in schemes.values()):
        report["sparse_gains"] = gains(schemes, "sparse_flops")
        report["target_sparsity"] = cfg.target_sparsity
    write_json_atomic(out / "report.json", report)
    write_text_atomic(out / "table.md", markdown_table(report))
    stages.report(1.0, "done", "report written")
    return report


def _single(net: ChainNet, task: str) -> MergedNet:
    return from_single(net, task)


def _prune(cfg: ExperimentConfig, net: MergedNet, data: TaskData, stages: _Stages, label: str):
    def cb(row: dict) -> None:
        if row.get("phase") == "adapmtl":  # one line per epoch, not per step
            if row.get("val_accuracy"):
                stages.detail(f"{label}: AdapMTL epoch {row['epoch']}, sparsity "
                              f"{row['sparsity']['overall']:.3f}, val {row['val_accuracy']}")
        elif row.get("phase") == "frozen" and "sparsity" in row:
            stages.detail(f"{label}: AdapMTL thresholds frozen at step {row['step']}")
        elif "step" in row:
            stages.detail(f"{label}: prune step {row.get('step')} ({row.get('task')}) "
                          f"{'accepted' if row.get('accepted') else 'rejected'}")
    return get_pruner(cfg.prune).prune(net, data, cfg.prune_config(), progress=cb)


def _costs(costs: dict) -> dict:
    return {"flops": {s: c["flops"] for s, c in costs.items()},
            "params": {s: c["params"] for s, c in costs.items()}}


def _latency_ms(cfg: ExperimentConfig, net: MergedNet, device: str = "cpu") -> dict[str, float]:
    """{subset: ms} of one forward pass with one image (an edge request), median."""
    return {k: round(1e3 * v, 4) for k, v in
            measure_latency(net, device=device, min_run_time=0.02 if cfg.quick else 0.2).items()}


def _latencies(cfg: ExperimentConfig, net) -> dict:
    """"latency_ms" (CPU) and, when a GPU is present, "latency_ms_cuda"; ``net`` is a MergedNet
    or B1's {task: MergedNet}."""
    measure = _separate_latency_ms if isinstance(net, dict) else _latency_ms
    out = {"latency_ms": measure(cfg, net)}
    if torch.cuda.is_available():
        out["latency_ms_cuda"] = measure(cfg, net, "cuda")
    return out


def _separate_latency_ms(cfg: ExperimentConfig, nets: dict[str, MergedNet],
                         device: str = "cpu") -> dict[str, float]:
    """B1 runs a subset's networks one after the other: the sum of each one's latency."""
    single = {t: _latency_ms(cfg, n, device)[t] for t, n in nets.items()}
    return {subset_key(s): round(sum(single[t] for t in s), 4) for s in all_subsets(list(nets))}


def _scheme_record(cfg: ExperimentConfig, result, seconds: float) -> dict:
    """B2 / PAM: costs, latency, accuracies, the slimmed log (structured methods) or the
    sparsity breakdown, sparse FLOPs and Delta_T (unstructured: AdapMTL)."""
    rec = {**_costs(subset_costs(result.net)), **_latencies(cfg, result.net),
           "accuracy": dict(result.test_accuracy), "val_accuracy": dict(result.val_accuracy),
           "reference_val_accuracy": dict(result.reference_accuracy),
           "log": [_slim(r) for r in result.log] if not _unstructured(result) else [],
           "widths": result.net.group_widths(), "seconds": round(seconds, 1)}
    return {**rec, **(_sparse_fields(result) if _unstructured(result) else {})}


def _unstructured(result) -> bool:
    """Weights zeroed, no neuron removed: the method reports sparse FLOPs and sparsity instead
    of a per-step width log (the Pruner contract's ``structured`` flag)."""
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


def _run_b1(cfg, nets, tasks, data: TaskData, stages) -> dict:
    t0, pruned, results = time.perf_counter(), {}, {}
    for net, task in zip(nets, tasks):
        sub = TaskData(*((s[0], {task: s[1][task]}) for s in (data.train, data.val, data.test)))
        res = _prune(cfg, _single(net, task), sub, stages, f"B1 {task}")
        export.save(res.net, stages.dir / f"B1_{task}.zip", {"scheme": "B1", "task": task})
        pruned[task], results[task] = res.net, res
    per = lambda attr: {t: getattr(r, attr)[t] for t, r in results.items()}  # noqa: E731
    rec = {**_costs(separate_costs(pruned)), **_latencies(cfg, pruned),
           "accuracy": per("test_accuracy"), "val_accuracy": per("val_accuracy"),
           "reference_val_accuracy": per("reference_accuracy"),
           "widths": {t: n.group_widths() for t, n in pruned.items()},
           "log": {t: [_slim(r) for r in res.log] if not _unstructured(res) else []
                   for t, res in results.items()},
           "seconds": round(time.perf_counter() - t0, 1)}
    if all(_unstructured(r) for r in results.values()):
        rec.update(_separate_sparse_fields(results))
    return rec


def _separate_sparse_fields(results: dict) -> dict:
    """B1 under AdapMTL: a subset runs its tasks' networks, so sparse/dense FLOPs add up;
    sparsity breakdowns stay per task network; Delta_T over all tasks at once."""
    fields = {t: _sparse_fields(r) for t, r in results.items()}
    add = lambda key: {subset_key(s): sum(fields[t][key][t] for t in s)  # noqa: E731
                       for s in all_subsets(list(results))}
    dense_acc = {t: f["dense_test_accuracy"][t] for t, f in fields.items()}
    return {"sparse_flops": add("sparse_flops"), "dense_flops": add("dense_flops"),
            "sparsity": {t: f["sparsity"] for t, f in fields.items()},
            "sparsity_series": {t: f["sparsity_series"] for t, f in fields.items()},
            "delta_t": delta_t({t: r.test_accuracy[t] for t, r in results.items()}, dense_acc),
            "dense_test_accuracy": dense_acc,
            "frozen_at_step": {t: f["frozen_at_step"] for t, f in fields.items()},
            "thresholds": {t: f["thresholds"] for t, f in fields.items()},
            "component_sizes": {t: f["component_sizes"] for t, f in fields.items()},
            # zeros over weights of all task networks together
            "overall_sparsity": sum(f["overall_sparsity"] * sum(f["component_sizes"].values())
                                    for f in fields.values())
            / sum(sum(f["component_sizes"].values()) for f in fields.values())}


def _run_b2(cfg, nets, tasks, data: TaskData, stages) -> dict:
    t0 = time.perf_counter()
    stages.detail("B2: zipping the networks (MTZ)")
    zipped = zip_networks(nets, tasks, data.train, data.val, cfg.mtz()).net
    res = _prune(cfg, zipped, data, stages, "B2")
    export.save(res.net, stages.dir / "B2.zip", {"scheme": "B2"})
    return {**_scheme_record(cfg, res, time.perf_counter() - t0),
            "zipped_accuracy": evaluate(zipped, *data.val)}


def _run_pam(cfg, nets, tasks, data: TaskData, stages) -> dict:
    t0 = time.perf_counter()
    stages.detail("PAM: MI trajectories and regrouping")
    explorer = Explorer.open(cfg.preset, cfg.mi(), cfg.data(), nets=nets)
    groups = explorer.groups(RegroupConfig(alpha=cfg.resolved_alpha()))
    merged = merge_networks(nets, tasks, groups)
    stages.detail("PAM: joint finetuning")
    finetune(merged, data.train, data.val, cfg.finetune())
    res = _prune(cfg, merged, data, stages, "PAM")
    extra = {"scheme": "PAM", "alpha": cfg.resolved_alpha(), "preset": cfg.preset,
             "accuracy": res.test_accuracy, "prune": cfg.prune}
    if _unstructured(res):
        extra.update(sparse_flops=res.extra["sparse_flops"], sparsity=res.extra["sparsity"])
    export.save(res.net, stages.dir.parent / "model.zip", extra)
    return {**_scheme_record(cfg, res, time.perf_counter() - t0),
            "groups_before_pruning": {layer: {subset_key(k): len(v) for k, v in g.groups.items()}
                                      for layer, g in groups.items()}}


_SCHEME_FNS = {"B1": _run_b1, "B2": _run_b2, "PAM": _run_pam}


class _Stages:
    """Resumable stages: DIR/stages/<scheme>.json, and DIR/progress.json for the dashboard."""

    def __init__(self, out: Path, names: Sequence[str], progress: Progress | None) -> None:
        self.dir = out / "stages"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.out, self.names, self.cb, self.current = out, list(names), progress, ""

    def run(self, name: str, fn: Callable[[], dict]) -> dict:
        path = self.dir / f"{name}.json"
        if path.is_file():
            self.report(self._fraction(name, 1.0), name, f"{name}: resumed from {path.name}")
            return json.loads(path.read_text())
        self.current = name
        self.report(self._fraction(name, 0.0), name, f"{name}: started")
        record = fn()
        write_json_atomic(path, record)
        self.report(self._fraction(name, 1.0), name, f"{name}: done")
        return record

    def _fraction(self, name: str, within: float) -> float:
        return (self.names.index(name) + within) / len(self.names)

    def detail(self, message: str) -> None:
        self.report(self._fraction(self.current, 0.5), self.current, message)

    def report(self, fraction: float, stage: str, message: str) -> None:
        row = {"stage": stage, "fraction": round(fraction, 4), "message": message, "time": time.time()}
        write_json_atomic(self.out / "progress.json", row)
        if self.cb:
            self.cb(row)


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ExperimentConfig)}


def _check_or_write_config(cfg: ExperimentConfig, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    path, want = out / "config.json", dataclasses.asdict(cfg)
    if path.is_file():
        have = json.loads(path.read_text())
        have["schemes"] = tuple(have.get("schemes", ()))
        for k, default in _DEFAULTS.items():  # a field added since that run was made: its default
            have.setdefault(k, default)
        if have != want:
            raise RunConflict(f"{out} holds a run with a different configuration ({have}); "
                              "use another --out directory (nothing there was changed)")
    else:
        write_json_atomic(path, want)
