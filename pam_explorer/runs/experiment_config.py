"""The configuration of an experiment (B1 vs B2 vs PAM under one pruning method, over seeds):
what to run, and the concrete settings of every stage it derives (:meth:`ExperimentConfig.
scheme_settings`). Below :mod:`.experiment` and the stage tasks (:mod:`.sweep_tasks`), which both
read it.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pam_explorer.baselines.mtz import MTZConfig
from pam_explorer.core import validate
from pam_explorer.core.config import DataConfig, FinetuneConfig, MIConfig, RegroupConfig
from pam_explorer.core.errors import ConfigError, RunConflict
from pam_explorer.core.io import from_strict
from pam_explorer.data import get_preset
from pam_explorer.data.project import ProjectPreset
from pam_explorer.prune import AdapMTLConfig, PruneConfig, list_pruners
from pam_explorer.prune.config import RANKS, SCHEDULES, ScheduleConfig
from pam_explorer.runs.schemes import SchemeSettings
from pam_explorer.zoo.pretrained import DEFAULT_ARCH, pretrained_meta
from pam_explorer.zoo.registry import list_models

SCHEMES = ("B1", "B2", "PAM")
FLOORS = ("original", "own")
REGROUP_PROFILES = ("default", "paper", "legacy")
# the training budget of a merged net (B2, PAM) inside the published schedule: "per-network", as
# one network of B1 (the issue's rule), or "total", K networks' worth (B1 trains each of its K
# networks on its own budget): warm-up and minibatches between events times K, the same events,
# grid and checkpoint finetunes (schemes.merged_settings)
MERGED_BUDGETS = ("per-network", "total")
OUTPUTS = ("config.json", "report.json", "table.md", "model.zip", "stages")  # what DIR receives
TIMING_FIELDS = ("latency_ms", "latency_ms_cuda", "seconds", "latency_gains", "time",  # not deterministic
                 "latency_measurement", "latency")
Progress = Callable[[dict], None]
# values of fields added since a run folder was written, as the code that wrote it behaved
LEGACY = {"floor": "own", "rank": "flops-aware", "regroup": "legacy"}
# (a smoke test runs every event: 4 warm-up minibatches leave a merged net under the stop rule)
QUICK_PLAN = ScheduleConfig(warmup_batches=4, every=2, events=6, checkpoint_epochs=1, grid_step=0.2,
                            end_fraction=0.1, grid="linear", stop_margin=100.0)
# the published schedule's named paces (ExperimentConfig.pace; docs/pruning.md section 6):
# "flops": linear in FLOPs, 40 events to a tenth of the largest original network, a checkpoint at
# every 5 % (the first version); "geometric": the same FLOPs factor every event, 60 events to 3 %,
# a checkpoint every 15 % lower (networks with headroom read off near a tenth: the linear grid's
# last steps were 30-50 % apart there and the end censored B2 and B1); "neurons": linear in neurons
_LINEAR = dict(events=40, end_fraction=0.1, grid="linear", grid_step=0.05)
PACE_PLANS = {"geometric": ScheduleConfig(),
              "flops": ScheduleConfig(pace="flops", **_LINEAR),
              "neurons": ScheduleConfig(pace="neurons", **_LINEAR)}
# validation pictures per data set (at least): MNIST's 5,000 give a standard error of about 0.1
# points at the floor; the digits presets compose theirs from a few hundred source digits, so more
# pictures would not make them more independent (their standard errors understate the noise)
VAL_PICTURES = {"mnist": 5000}


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
    # neuron ranking: "flops-aware" (importance / FLOPs saved; measured the better one under the
    # published schedule, docs/pruning.md section 4) | "published" (the method's own score alone)
    rank: str = "flops-aware"
    regroup: str = "default"  # PAM's regrouping: "default" (docs/estimator.md) | "paper" | "legacy"
    arch: str = DEFAULT_ARCH  # the committed networks merged: assets/<preset>/[<arch>/]
    max_steps: int | None = None  # floor-greedy turns per scheme (None: PruneConfig's; a compute budget)
    prune_lr: float | None = None  # Adam lr of pruning and its finetuning (None: PruneConfig's)
    schedule: str = "published"  # "published" (a curve per scheme) | "floor-greedy" (the first loop)
    delta: float = 0.5  # the floor's tolerance (accuracy points): read-off (published) or accept rule
    # the published schedule's named pace (PACE_PLANS: its events, end and checkpoint grid with
    # it); part of every stage's key. "geometric" measured the finer one (docs/pruning.md section 6)
    pace: str = "geometric"
    merged_budget: str = "per-network"  # MERGED_BUDGETS; part of the merged stages' keys when not the default
    # the checkpoint grid's step (a fraction of the start; None: the pace plan's, 0.15 geometric).
    # A read-off sits on this grid, so a seed one checkpoint away from the others differs by one
    # step: 0.075 halves that (BENCHMARKS "finer grid"); part of every stage's key through the plan
    grid_step: float | None = None
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
                validate.is_seed(s) for s in self.seeds):
            raise ConfigError(f"ExperimentConfig.seeds: must be distinct integers in [0, 2**32), got "
                              f"{self.seeds!r}")
        validate.device(self)
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
        validate.choice(self, "schedule", SCHEDULES)
        validate.finite_non_negative(self, "delta")
        validate.choice(self, "pace", tuple(PACE_PLANS))
        validate.choice(self, "merged_budget", MERGED_BUDGETS)
        if self.grid_step is not None:
            validate.in_interval(self, "grid_step", 0, 1)
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
        raw.setdefault("schedule", "floor-greedy")  # folders written before schedules existed
        raw.setdefault("pace", "flops")  # folders written before the pace was a setting
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise ConfigError(f"ExperimentConfig: unknown field(s) {unknown} in the run's config")
        for key in ("schemes", "seeds"):
            if key in raw:
                raw[key] = tuple(raw[key])
        if "overrides" in raw:
            raw["overrides"] = tuple(tuple(x) if isinstance(x, list) else x for x in raw["overrides"])
        for key in ("alpha", "target_sparsity", "prune_lr", "delta"):  # "inf" as strict JSON writes it
            if key in raw:
                raw[key] = from_strict(raw[key])
        if "overrides" in raw:
            raw["overrides"] = tuple((x[0], from_strict(x[1])) if isinstance(x, tuple) and len(x) == 2 else x
                                     for x in raw["overrides"])
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
        preset = get_preset(self.preset)
        if self.quick:
            return preset.data_config(DataConfig(n_train=600, n_val=300, n_test=300))
        # the training split the networks were trained on (pruning trains on it), and a
        # validation split large enough to judge a 0.5-point floor (VAL_PICTURES)
        base = DataConfig()
        trained = [pretrained_meta(self.preset, t, self.arch).get("data", {}) for t in preset.task_names] \
            if self.schedule == "published" and _has_meta(self.preset, preset.task_names, self.arch) else []
        n_train = max([int(d.get("n_train", base.n_train)) for d in trained] or [base.n_train])
        n_val = max(base.n_val, VAL_PICTURES.get(preset.dataset, 0)) if self.schedule == "published" \
            else base.n_val
        return preset.data_config(dataclasses.replace(base, n_train=n_train, n_val=n_val))

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
        common = dict(seed=seed, device=self.device, flops_weight=RANKS[self.rank], delta=float(self.delta),
                      reference_accuracy=dict(reference) if reference is not None else None,
                      adapmtl=self.adapmtl() if self.prune == "adapmtl" else None)
        if self.regroup == "legacy":
            common["taylor_mode"] = "sample"
        if self.prune_lr is not None:
            common["lr"] = self.prune_lr
        common["schedule"] = self.schedule
        if self.quick:
            return PruneConfig(max_steps=self.max_steps or 4, finetune_batches=3, final_finetune_epochs=1,
                               score_batches=2, vib_epochs=1, step_fraction=0.2,
                               plan=self._quick_plan(), **common)
        if self.max_steps is not None:
            common["max_steps"] = self.max_steps
        return PruneConfig(plan=self._full_plan(), **common)

    def _full_plan(self) -> ScheduleConfig:
        plan = PACE_PLANS[self.pace]
        return plan if self.grid_step is None else dataclasses.replace(plan, grid_step=self.grid_step)

    def _quick_plan(self) -> ScheduleConfig:
        full = PACE_PLANS[self.pace]
        # a geometric grid about as coarse as the quick linear one: 6 checkpoints to the end
        step = 0.3 if full.grid == "geometric" else QUICK_PLAN.grid_step
        return dataclasses.replace(QUICK_PLAN, pace=full.pace, grid=full.grid,
                                   grid_step=step if self.grid_step is None else self.grid_step)

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
                              0.02 if self.quick else 0.2, self.mi_data(), self.merged_budget)


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


def _has_meta(preset: str, tasks: Sequence[str], arch: str) -> bool:
    """True when every task's committed network has a readable sidecar."""
    try:
        for t in tasks:
            pretrained_meta(preset, t, arch)
    except (OSError, ValueError):
        return False
    return True


__all__ = ["ExperimentConfig", "check_project_key", "SCHEMES", "FLOORS", "REGROUP_PROFILES", "MERGED_BUDGETS",
           "OUTPUTS", "TIMING_FIELDS", "LEGACY"]
