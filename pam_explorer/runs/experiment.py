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
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pam_explorer.baselines.mtz import MTZConfig
from pam_explorer.core import validate
from pam_explorer.core.config import DataConfig, FinetuneConfig, MIConfig, RegroupConfig
from pam_explorer.core.errors import ConfigError, RunConflict
from pam_explorer.core.io import write_json_atomic, write_text_atomic
from pam_explorer.core.paths import cache_root
from pam_explorer.data import get_preset
from pam_explorer.data.project import ProjectPreset
from pam_explorer.prune import AdapMTLConfig, PruneConfig, list_pruners
from pam_explorer.prune.config import RANKS
from pam_explorer.runs import report as rep
from pam_explorer.runs.outdir import claim
from pam_explorer.runs.schemes import SCHEME_FNS, SchemeSettings
from pam_explorer.runs.stage_cache import StageCache
from pam_explorer.runs.stage_run import StageContext, resolve_stage, stage_key_of
from pam_explorer.zoo.chain import ChainNet
from pam_explorer.zoo.pretrained import DEFAULT_ARCH
from pam_explorer.zoo.registry import list_models

SCHEMES = ("B1", "B2", "PAM")
FLOORS = ("original", "own")
REGROUP_PROFILES = ("default", "paper", "legacy")
OUTPUTS = ("config.json", "report.json", "table.md", "model.zip", "stages")  # what DIR receives
TIMING_FIELDS = ("latency_ms", "latency_ms_cuda", "seconds", "latency_gains", "time")  # not deterministic
Progress = Callable[[dict], None]
# values of fields added since a run folder was written, as the code that wrote it behaved
LEGACY = {"floor": "own", "rank": "flops-aware", "regroup": "legacy"}


@dataclass(frozen=True)
class ExperimentConfig:
    """What to run. ``quick`` shrinks the finetuning and pruning data, steps and epochs to a
    smoke test of every stage; PAM's regrouping is never shrunk: it uses the explorer's MI
    settings on the networks' own data (:meth:`mi`, :meth:`mi_data`), so a run's merged structure
    is what the explorer predicts at the same alpha, overrides and MI profile (seed 0)."""

    preset: str = "digits-2task"
    prune: str = "taylor"
    alpha: float | None = None  # bits; None: the regroup profile's default for the preset
    overrides: tuple[tuple[str, float], ...] = ()  # per-layer alpha (layer, bits), as RegroupConfig
    schemes: tuple[str, ...] = SCHEMES
    finetune_epochs: int = 10  # joint finetuning of the merged schemes (B2, PAM) before pruning
    quick: bool = False
    seeds: tuple[int, ...] = (0,)  # pruning / finetuning / MTZ / MI-sample randomness
    device: str = "auto"
    target_sparsity: float = 0.9  # AdapMTL only: overall fraction of zero weights
    floor: str = "original"  # accuracy floor: "original" networks' val accuracy - delta | "own"
    rank: str = "published"  # neuron ranking: "published" (the method's own) | "flops-aware"
    regroup: str = "default"  # PAM's regrouping: "default" (docs/estimator.md) | "paper" | "legacy"
    arch: str = DEFAULT_ARCH  # the committed networks merged: assets/<preset>/[<arch>/]
    max_steps: int | None = None  # pruning turns per scheme (None: PruneConfig's; a compute budget)
    prune_lr: float | None = None  # Adam lr of the pruning turns' and final finetuning (None: PruneConfig's)
    # a project (``preset`` = its file): the content key of its data, labels and networks
    # (ProjectPreset.content_key), filled in from the files; a run records it, so a folder of the
    # project's older content is another configuration. None for presets.
    project_key: str | None = None

    def __post_init__(self) -> None:
        spec = get_preset(self.preset)  # raises with the known names (a project: reads and checks it)
        if isinstance(spec, ProjectPreset):
            check_project_key(self, spec)
        elif self.project_key is not None:
            raise ConfigError(f"ExperimentConfig.project_key: only for a project file, not preset "
                              f"{self.preset!r}")
        if self.arch not in list_models():
            raise ConfigError(f"ExperimentConfig.arch: unknown architecture {self.arch!r}; "
                              f"known: {list_models()}")
        if self.prune not in list_pruners():
            raise ConfigError(f"ExperimentConfig.prune: unknown method {self.prune!r}; "
                              f"known: {list_pruners()}")
        bad = [s for s in self.schemes if s not in SCHEMES] or ([] if self.schemes else ["(none)"])
        if bad:
            raise ConfigError(f"ExperimentConfig.schemes: {bad} not in {list(SCHEMES)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or not all(
                validate.is_int(s) and s >= 0 for s in self.seeds):
            raise ConfigError(f"ExperimentConfig.seeds: must be distinct integers >= 0, got {self.seeds!r}")
        if self.alpha is not None:
            validate.alpha(self.alpha, "ExperimentConfig.alpha")
        for item in self.overrides:
            if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
                validate.fail(self, "overrides", f"entries must be (layer_name, alpha), got {item!r}")
            validate.alpha(item[1], f"ExperimentConfig.overrides[{item[0]}]")
        validate.non_negative_int(self, "finetune_epochs")
        if self.max_steps is not None:
            validate.positive_int(self, "max_steps")
        if self.prune_lr is not None:
            validate.finite_positive(self, "prune_lr")
        validate.choice(self, "floor", FLOORS)
        validate.choice(self, "rank", tuple(RANKS))
        validate.choice(self, "regroup", REGROUP_PROFILES)
        if self.prune == "adapmtl":
            self.adapmtl()  # validates target_sparsity, naming AdapMTLConfig's field

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ExperimentConfig:
        """From a config.json, also one written before seeds, floors, ranks and regroup profiles
        existed (one ``seed``; the fields it lacks take the values that code ran with)."""
        raw = dict(raw)
        if "seed" in raw:
            raw["seeds"] = [raw.pop("seed")]
        raw = {**LEGACY, **raw} if "floor" not in raw else raw
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise ConfigError(f"ExperimentConfig: unknown field(s) {unknown} in the run's config")
        for key in ("schemes", "seeds"):
            if key in raw:
                raw[key] = tuple(raw[key])
        if "overrides" in raw:
            raw["overrides"] = tuple(tuple(x) if isinstance(x, list) else x for x in raw["overrides"])
        return cls(**raw)

    def resolved_alpha(self) -> float:
        if self.alpha is not None:
            return self.alpha
        return {"default": get_preset(self.preset).default_alpha, "paper": 0.05, "legacy": 0.5}[self.regroup]

    def regroup_config(self, layers: Sequence[tuple[str, str]] = ()) -> RegroupConfig:
        """The PAM grouping rule; ``layers``: (name, kind) of the networks' layers. The paper
        profile without an explicit alpha uses the authors' thresholds: 0.05 bits for fc layers
        and 0.01 for conv layers (their LFW settings), and drops neurons picked twice; explicit
        ``overrides`` win. The default profile's rule for neurons picked twice is
        RegroupConfig's default (the explorer's), the legacy profile shares them."""
        given = dict(self.overrides)
        profile = [(n, 0.01) for n, kind in layers if kind == "conv" and n not in given] \
            if self.regroup == "paper" and self.alpha is None else []
        both = {"paper": "drop", "legacy": "share"}.get(self.regroup, RegroupConfig().both_picked)
        return RegroupConfig(alpha=self.resolved_alpha(), overrides=tuple(sorted([*profile, *given.items()])),
                             both_picked=both)

    def data(self) -> DataConfig:
        # the data seed stays the one the committed networks were trained with: another seed
        # draws other source pools, and their test pictures would overlap the nets' training ones
        # (image size filled in: the preset's natural one, so stage-cache keys name the real data)
        data = DataConfig(n_train=600, n_val=300, n_test=300) if self.quick else DataConfig()
        return get_preset(self.preset).data_config(data)

    def mi(self, seed: int) -> MIConfig:
        """The regroup profile's MI settings (never shrunk by ``quick``: see the class docstring)."""
        base = {"default": MIConfig(), "paper": MIConfig.paper(),
                "legacy": MIConfig(n_samples=256, kernel="fixed", null_perms=0)}[self.regroup]
        return dataclasses.replace(base, seed=seed)

    def mi_data(self) -> DataConfig:
        """The data the MI sample is drawn from: the networks' own (the explorer's), also when quick."""
        return get_preset(self.preset).data_config(DataConfig())

    def adapmtl(self) -> AdapMTLConfig:
        # quick: a few fast-rising steps so the freeze is reached on the tiny data too
        return AdapMTLConfig(target_sparsity=self.target_sparsity, epochs=3, theta_lr=0.3) if self.quick \
            else AdapMTLConfig(target_sparsity=self.target_sparsity)

    def prune_config(self, seed: int, reference: Mapping[str, float] | None) -> PruneConfig:
        """``reference``: the floor's reference accuracy per task (None: each scheme's own)."""
        common = dict(seed=seed, device=self.device, flops_weight=RANKS[self.rank],
                      reference_accuracy=dict(reference) if reference is not None else None,
                      adapmtl=self.adapmtl() if self.prune == "adapmtl" else None)
        if self.regroup == "legacy":
            common["taylor_mode"] = "sample"
        if self.prune_lr is not None:
            common["lr"] = self.prune_lr
        if self.quick:
            return PruneConfig(max_steps=self.max_steps or 4, finetune_batches=3, final_finetune_epochs=1,
                               score_batches=2, vib_epochs=1, step_fraction=0.2, **common)
        if self.max_steps is not None:
            common["max_steps"] = self.max_steps
        return PruneConfig(**common)

    def mtz(self, seed: int) -> MTZConfig:
        return MTZConfig(n_samples=128, retrain_batches=3, seed=seed, device=self.device) if self.quick \
            else MTZConfig(seed=seed, device=self.device)

    def finetune(self, seed: int) -> FinetuneConfig:
        return FinetuneConfig(epochs=1 if self.quick else self.finetune_epochs, seed=seed, device=self.device)

    def scheme_settings(self, seed: int, reference: Mapping[str, float] | None,
                        layers: Sequence[tuple[str, str]]) -> SchemeSettings:
        """The concrete settings of ``seed``'s stages; ``reference``: the floor's accuracy per
        task (None: each scheme's own); ``layers``: (name, kind) of the networks' layers."""
        return SchemeSettings(self.preset, self.prune, self.prune_config(seed, reference), self.mtz(seed),
                              self.finetune(seed), self.mi(seed), self.regroup_config(layers), self.data(),
                              0.02 if self.quick else 0.2, self.mi_data())


def check_project_key(cfg: Any, project: ProjectPreset) -> None:
    """Fill in ``cfg.project_key`` (a frozen config: set in its __post_init__) and the project's
    absolute path as ``cfg.preset``; RunConflict when a recorded key is not the content's now."""
    now = project.content_key()
    if cfg.project_key is None:
        object.__setattr__(cfg, "project_key", now)
    elif cfg.project_key != now:
        raise RunConflict(f"{project.name}: the project's data, labels or networks changed since this run "
                          f"was configured (content key {cfg.project_key}, now {now}); use another --out")
    object.__setattr__(cfg, "preset", project.name)


def run_experiment(cfg: ExperimentConfig, out: str | Path, progress: Progress | None = None,
                   nets: Sequence[ChainNet] | None = None, cache: str | Path | None = "default") -> dict:
    """Run (or resume) every scheme of ``cfg`` under every seed; write DIR/report.json and
    DIR/table.md; return the report. ``cache``: stage-cache root ("default": the cache root,
    None: no sharing between runs)."""
    with claim(out, "experiment", _jsonable(cfg), OUTPUTS,
               defaults=lambda raw: _jsonable(ExperimentConfig.from_dict(raw))):
        return _run(cfg, Path(out), progress, nets, StageCache(cache_root() if cache == "default" else cache))


def _jsonable(cfg: ExperimentConfig) -> dict:
    return dataclasses.asdict(cfg)


def _run(cfg: ExperimentConfig, out: Path, progress: Progress | None, nets: Sequence[ChainNet] | None,
         cache: StageCache) -> dict:
    legacy = _check_or_write_config(cfg, out)
    ctx = StageContext.load(cfg.preset, cfg.data(), nets, cfg.arch)
    stages = _Stages(out, [(seed, s) for seed in cfg.seeds for s in cfg.schemes], progress, legacy)
    per_seed: dict[int, dict] = {}
    for seed in cfg.seeds:
        settings = cfg.scheme_settings(seed, ctx.reference(cfg.floor), ctx.layers)
        per_seed[seed] = {name: stages.run(seed, name, lambda n=name: SCHEME_FNS[n](
            settings, ctx.nets, ctx.tasks, ctx.data, stages.detail, stages.dir, stages.tag(seed)),
            cache, stage_key_of(ctx, seed, cfg.quick, name, settings)) for name in cfg.schemes}
    report = _report(cfg, ctx.preset, per_seed, ctx.original_test, ctx.original_val, ctx.layers)
    _export_model(stages, cfg, out)
    write_json_atomic(out / "report.json", report)
    write_text_atomic(out / "table.md", rep.markdown_table(report))
    stages.report(1.0, "done", "report written")
    return report


def _report(cfg: ExperimentConfig, preset, per_seed: dict[int, dict], original_test: dict,
            original_val: dict, layers) -> dict:
    seeds = list(per_seed)
    records = [per_seed[s] for s in seeds]
    schemes = rep.summarise_schemes(records)
    regroup = cfg.regroup_config(layers)
    report = {"preset": preset.name, "tasks": list(preset.task_names), "prune": cfg.prune,
              "alpha": cfg.resolved_alpha(), "quick": cfg.quick, "seeds": seeds,
              "config": {**_jsonable(cfg), "mi": {**dataclasses.asdict(cfg.mi(seeds[0])),
                                                   "profile": cfg.mi(seeds[0]).profile},
                         "regroup_config": dataclasses.asdict(regroup),
                         "prune_config": dataclasses.asdict(cfg.prune_config(seeds[0], None))},
              "torch_threads": torch.get_num_threads(),
              "latency": "CPU, batch 1, median ms of each subset's fused model (B1: its fused "
                         "single-task nets one after the other)",
              "reference_accuracy": original_test, "reference_val_accuracy": original_val,
              "floor": {t: a - cfg.prune_config(0, None).delta for t, a in original_val.items()}
              if cfg.floor == "original" else "each scheme's own unpruned validation accuracy - delta",
              "schemes": schemes,
              "per_seed": {str(s): {"schemes": r, "gains": rep.gains(r)} for s, r in per_seed.items()},
              "gains": rep.summarise_gains([rep.gains(r) for r in records]),
              "latency_gains": rep.summarise_gains([rep.gains(r, "latency_ms") for r in records]),
              "floor_check": rep.floor_check(schemes, original_test, cfg.prune_config(0, None).delta,
                                             records)}
    if any("sparse_flops" in s for s in schemes.values()):
        report["sparse_gains"] = report["gains"]
        report["target_sparsity"] = cfg.target_sparsity
    return report


def _export_model(stages: _Stages, cfg: ExperimentConfig, out: Path) -> None:
    """DIR/model.zip: PAM's pruned network of the first seed (what `export --run` serves)."""
    if "PAM" in cfg.schemes:
        src = stages.dir / f"PAM{stages.tag(cfg.seeds[0])}.zip"
        if src.is_file():
            shutil.copyfile(src, out / "model.zip")


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
    raw = json.loads(path.read_text())
    have = dataclasses.asdict(ExperimentConfig.from_dict(raw))
    if have != want:
        raise RunConflict(f"{out} holds a run with a different configuration ({have}); "
                          "use another --out directory (nothing there was changed)")
    return "seed" in raw


__all__ = ["ExperimentConfig", "run_experiment", "check_project_key", "SCHEMES", "FLOORS", "REGROUP_PROFILES",
           "TIMING_FIELDS"]
