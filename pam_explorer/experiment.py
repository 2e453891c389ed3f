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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from pam_explorer import export
from pam_explorer.baselines.mtz import MTZConfig, zip_networks
from pam_explorer.config import DataConfig, FinetuneConfig, MIConfig, RegroupConfig
from pam_explorer.cost import all_subsets, measure_latency, separate_costs, subset_costs, subset_key
from pam_explorer.data import get_preset, load_preset_data
from pam_explorer.experiment_report import gains, markdown_table
from pam_explorer.explore import Explorer
from pam_explorer.finetune import evaluate, finetune
from pam_explorer.merge import merge_networks
from pam_explorer.merged_net import MergedNet
from pam_explorer.pretrained import load_pretrained
from pam_explorer.prune import PruneConfig, TaskData, get_pruner, list_pruners
from pam_explorer.zoo.chain import ChainNet

SCHEMES = ("B1", "B2", "PAM")
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

    def __post_init__(self) -> None:
        get_preset(self.preset)  # raises with the known names
        if self.prune not in list_pruners():
            raise ValueError(f"ExperimentConfig.prune: unknown method {self.prune!r}; known: {list_pruners()}")
        bad = [s for s in self.schemes if s not in SCHEMES] or ([] if self.schemes else ["(none)"])
        if bad:
            raise ValueError(f"ExperimentConfig.schemes: {bad} not in {list(SCHEMES)}")
        RegroupConfig(alpha=self.resolved_alpha())  # validates alpha
        if not isinstance(self.finetune_epochs, int) or self.finetune_epochs < 0:
            raise ValueError(f"ExperimentConfig.finetune_epochs: must be an integer >= 0, got {self.finetune_epochs!r}")

    def resolved_alpha(self) -> float:
        return get_preset(self.preset).default_alpha if self.alpha is None else self.alpha

    def data(self) -> DataConfig:
        # the data seed stays the one the committed networks were trained with: another seed
        # draws other source pools, and their test pictures would overlap the nets' training ones
        return DataConfig(n_train=600, n_val=300, n_test=300) if self.quick else DataConfig()

    def mi(self) -> MIConfig:
        return MIConfig(n_samples=64 if self.quick else 256, seed=self.seed)

    def prune_config(self) -> PruneConfig:
        if self.quick:
            return PruneConfig(max_steps=4, finetune_batches=3, final_finetune_epochs=1, score_batches=2,
                               vib_epochs=1, step_fraction=0.2, seed=self.seed, device=self.device)
        return PruneConfig(seed=self.seed, device=self.device)

    def mtz(self) -> MTZConfig:
        return MTZConfig(n_samples=128, retrain_batches=3, seed=self.seed, device=self.device) if self.quick \
            else MTZConfig(seed=self.seed, device=self.device)

    def finetune(self) -> FinetuneConfig:
        return FinetuneConfig(epochs=1 if self.quick else self.finetune_epochs, seed=self.seed, device=self.device)


def run_experiment(cfg: ExperimentConfig, out: str | Path, progress: Progress | None = None,
                   nets: Sequence[ChainNet] | None = None) -> dict:
    """Run (or resume) every scheme of ``cfg`` and write DIR/report.json and DIR/table.md."""
    out = Path(out)
    _check_or_write_config(cfg, out)
    preset = get_preset(cfg.preset)
    nets = list(nets) if nets is not None else load_pretrained(preset.name, preset.task_names)
    data = TaskData.from_splits(load_preset_data(preset, cfg.data()), preset)
    stages = _Stages(out, cfg.schemes, progress)
    schemes = {}
    for name in cfg.schemes:
        schemes[name] = stages.run(name, lambda n=name: _SCHEME_FNS[n](cfg, nets, preset.task_names, data, stages))
    report = {"preset": preset.name, "tasks": list(preset.task_names), "prune": cfg.prune,
              "alpha": cfg.resolved_alpha(), "quick": cfg.quick,
              "reference_accuracy": {t: evaluate(_single(n, t), data.test[0], data.test[1])[t]
                                     for n, t in zip(nets, preset.task_names)},
              "schemes": schemes, "gains": gains(schemes), "latency_gains": gains(schemes, "latency_ms")}
    _write_json(out / "report.json", report)
    (out / "table.md").write_text(markdown_table(report))
    stages.report(1.0, "done", "report written")
    return report


def _single(net: ChainNet, task: str) -> MergedNet:
    return MergedNet.from_single(net, task)


def _prune(cfg: ExperimentConfig, net: MergedNet, data: TaskData, stages: "_Stages", label: str):
    def cb(row: dict) -> None:
        if "step" not in row:
            return
        stages.detail(f"{label}: prune step {row.get('step')} ({row.get('task')}) "
                      f"{'accepted' if row.get('accepted') else 'rejected'}")
    return get_pruner(cfg.prune).prune(net, data, cfg.prune_config(), progress=cb)


def _costs(costs: dict) -> dict:
    return {"flops": {s: c["flops"] for s, c in costs.items()},
            "params": {s: c["params"] for s, c in costs.items()}}


def _latency_ms(cfg: ExperimentConfig, net: MergedNet) -> dict[str, float]:
    """{subset: ms} of one CPU forward pass with one image (an edge request), median."""
    return {k: round(1e3 * v, 4) for k, v in
            measure_latency(net, device="cpu", min_run_time=0.02 if cfg.quick else 0.2).items()}


def _separate_latency_ms(cfg: ExperimentConfig, nets: dict[str, MergedNet]) -> dict[str, float]:
    """B1 runs a subset's networks one after the other: the sum of each one's latency."""
    single = {t: _latency_ms(cfg, n)[t] for t, n in nets.items()}
    return {subset_key(s): round(sum(single[t] for t in s), 4) for s in all_subsets(list(nets))}


def _scheme_record(result, flops_costs: dict, seconds: float) -> dict:
    return {**_costs(flops_costs),
            "accuracy": dict(result.test_accuracy), "val_accuracy": dict(result.val_accuracy),
            "reference_val_accuracy": dict(result.reference_accuracy),
            "log": [_slim(r) for r in result.log], "seconds": round(seconds, 1)}


def _slim(row: dict) -> dict:
    return {k: row[k] for k in ("step", "task", "accepted", "removed", "widths", "flops", "val_accuracy") if k in row}


def _run_b1(cfg, nets, tasks, data: TaskData, stages) -> dict:
    t0, pruned, acc, val, ref, logs = time.perf_counter(), {}, {}, {}, {}, {}
    for net, task in zip(nets, tasks):
        sub = TaskData(*((s[0], {task: s[1][task]}) for s in (data.train, data.val, data.test)))
        res = _prune(cfg, _single(net, task), sub, stages, f"B1 {task}")
        export.save(res.net, stages.dir / f"B1_{task}.zip", {"scheme": "B1", "task": task})
        pruned[task], acc[task], val[task] = res.net, res.test_accuracy[task], res.val_accuracy[task]
        ref[task], logs[task] = res.reference_accuracy[task], [_slim(r) for r in res.log]
    return {**_costs(separate_costs(pruned)), "latency_ms": _separate_latency_ms(cfg, pruned), "accuracy": acc, "val_accuracy": val, "reference_val_accuracy": ref,
            "widths": {t: n.group_widths() for t, n in pruned.items()}, "log": logs,
            "seconds": round(time.perf_counter() - t0, 1)}


def _run_b2(cfg, nets, tasks, data: TaskData, stages) -> dict:
    t0 = time.perf_counter()
    stages.detail("B2: zipping the networks (MTZ)")
    zipped = zip_networks(nets, tasks, data.train, data.val, cfg.mtz()).net
    res = _prune(cfg, zipped, data, stages, "B2")
    export.save(res.net, stages.dir / "B2.zip", {"scheme": "B2"})
    rec = _scheme_record(res, subset_costs(res.net), time.perf_counter() - t0)
    return {**rec, "latency_ms": _latency_ms(cfg, res.net), "widths": res.net.group_widths(), "zipped_accuracy": evaluate(zipped, *data.val)}


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
    export.save(res.net, stages.dir.parent / "model.zip", extra)
    rec = _scheme_record(res, subset_costs(res.net), time.perf_counter() - t0)
    return {**rec, "latency_ms": _latency_ms(cfg, res.net), "widths": res.net.group_widths(),
            "groups_before_pruning": {l: {"+".join(k): len(v) for k, v in g.groups.items()} for l, g in groups.items()}}


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
        _write_json(path, record)
        self.report(self._fraction(name, 1.0), name, f"{name}: done")
        return record

    def _fraction(self, name: str, within: float) -> float:
        return (self.names.index(name) + within) / len(self.names)

    def detail(self, message: str) -> None:
        self.report(self._fraction(self.current, 0.5), self.current, message)

    def report(self, fraction: float, stage: str, message: str) -> None:
        row = {"stage": stage, "fraction": round(fraction, 4), "message": message, "time": time.time()}
        _write_json(self.out / "progress.json", row)
        if self.cb:
            self.cb(row)


def _check_or_write_config(cfg: ExperimentConfig, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    path, want = out / "config.json", dataclasses.asdict(cfg)
    if path.is_file():
        have = json.loads(path.read_text())
        have["schemes"] = tuple(have.get("schemes", ()))
        if have != want:
            raise ValueError(f"{out} holds a run with a different configuration ({have}); "
                             "use another --out directory (nothing there was changed)")
    else:
        _write_json(path, want)


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False))
    tmp.replace(path)
