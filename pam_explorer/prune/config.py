"""Settings of the pruning methods: PruneConfig (the driver fields every method reads, P1's) and
AdapMTLConfig (the unstructured method's own), validated by :mod:`pam_explorer.core.validate`."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from pam_explorer.core import validate as v

SCORE_SCOPES = ("task", "sharing")
TAYLOR_MODES = ("batch", "sample")
RANKS = {"published": 0.0, "flops-aware": 1.0}  # rank name -> PruneConfig.flops_weight
# "published": pruning while training continues, checkpoints on a FLOPs grid (a curve; DESIGN
# "Pruning, fair comparison"); "floor-greedy": the accept/reject loop of prune/base.py
SCHEDULES = ("published", "floor-greedy")
TOLERANCES = (0.25, 0.5, 1.0, 2.0)  # accuracy points: the read-offs every report gives
PACES = ("flops", "geometric", "neurons")
VIB_PACES = ("flops", "threshold")
END_UNITS = ("original", "own")
GRIDS = ("linear", "geometric")


@dataclass(frozen=True)
class ScheduleConfig:
    """The published schedule (docs/pruning.md): train on, remove neurons every ``every``
    minibatches, finetune a copy at every ``grid_step`` of the starting FLOPs (a curve).

    Budget per pruned network: ``warmup_batches + events * every`` minibatches of training,
    whatever the scheme, plus ``checkpoint_epochs`` per checkpoint.
    """

    # training before the first removal (importance accumulates); where a merged net recovers:
    # 100 left PAM under its floor in 2 of 5 digits seeds, 500 recovered both (docs/pruning.md)
    warmup_batches: int = 500
    every: int = 10  # minibatches between removal events (the PAM authors' P2: 10)
    # removal events from the start to end_fraction (P2: paced by ``pace``). The defaults are the
    # "geometric" schedule (runs/experiment_config.PACE_PLANS also names the first, "flops", one:
    # linear, 40 events to 0.1, a linear grid at 0.05); chosen by measurement, docs/pruning.md section 6
    events: int = 60
    # P2: each event brings the all-task FLOPs ("flops": linearly; "geometric": by the same factor
    # every event) or the live neurons ("neurons", linearly) to its share of the way to the end.
    # Linear from a merged net's own start (3-4x one network) to the common end removes 33-45 % of
    # the remaining FLOPs per event near the end, one network 15-20 % (docs/pruning.md section 6)
    pace: str = "geometric"
    # the schedule's last FLOPs target, a fraction of the unit below. 0.1 censored networks with
    # headroom: B2 and B1 (task B) were still above their floors there (docs/pruning.md section 6)
    end_fraction: float = 0.03
    # "original": the end (end_fraction x) and the grid below the unit are in units of the largest
    # original network's FLOPs, the same absolute end for every scheme; above it the grid steps by
    # grid_step of the net's own start. "own": both in units of the pruned net's own start (the
    # first version: a merged PAM net, 3-4x one network, ran out of schedule with accuracy to spare)
    end_unit: str = "original"
    momentum: float = 0.9  # running average of the per-event importance (Molchanov et al.)
    grid_step: float = 0.15  # a checkpoint whenever the FLOPs cross a multiple of this fraction
    # of the start ("linear"), or fall this fraction below the previous checkpoint's level
    # ("geometric": the same relative resolution at 10 % of the start as at 90 %; the linear grid
    # at 0.05 put its last checkpoints 30-50 % apart, where networks with headroom read off)
    grid: str = "geometric"
    checkpoint_epochs: int = 2  # the converging finetune of every checkpoint (lr -> lr_end, cosine)
    lr_end: float = 1e-4  # Adam lr at the end of a checkpoint's finetune
    stop_margin: float = 3.0  # stop after 2 checkpoints in a row this many points under the reference
    # P1: the KL factor rises geometrically from kl_start to kl_end (one run, a curve). VIBNet uses
    # 1e-5 to 3e-5 against a cross-entropy per picture; our task loss is a mean over the labels'
    # binary cross-entropies, several times smaller. Measured on digits B1 seed 0 (docs/pruning.md):
    # 1e-5 -> 1e-3 cost 0.5 points in the warm-up and read off unpruned at 0.5; 1e-6 -> 1e-4 did not
    kl_start: float = 1e-6
    kl_end: float = 1e-4
    init_logvar: float = -9.0  # P1: initial log sigma^2 of the gates (VIBNet); mu ~ N(1, 0.01)
    hw_weighting: bool = True  # P1: a conv gate's KL counts once per output position (VIBNet)
    # P1: "threshold" masks every gate with log alpha >= 0 at once (VIBNet's literal rule; on digits
    # the first event took 60-89 % of the FLOPs, skipping the grid); "flops" masks them, largest
    # first, only down to the event's FLOPs target as P2 does (one seed: docs/pruning.md)
    vib_pace: str = "threshold"

    def __post_init__(self) -> None:
        for name in ("every", "events", "checkpoint_epochs"):
            v.positive_int(self, name)
        v.non_negative_int(self, "warmup_batches")
        v.choice(self, "pace", PACES)
        v.in_interval(self, "end_fraction", 0, 1)
        v.in_interval(self, "momentum", 0, 1)
        v.in_interval(self, "grid_step", 0, 1)
        for name in ("lr_end", "kl_start", "kl_end", "stop_margin"):
            v.finite_positive(self, name)
        v.finite(self, "init_logvar")
        v.boolean(self, "hw_weighting")
        v.choice(self, "vib_pace", VIB_PACES)
        v.choice(self, "end_unit", END_UNITS)
        v.choice(self, "grid", GRIDS)
        if self.kl_end < self.kl_start:
            v.fail(self, "kl_end", f"must be >= kl_start ({self.kl_start}), got {self.kl_end}")

    @property
    def total_batches(self) -> int:
        """Training minibatches of the schedule (the budget of every pruned network)."""
        return self.warmup_batches + self.events * self.every

    def trained_longer(self, factor: int) -> ScheduleConfig:
        """The same events, grid and checkpoint finetunes with ``factor`` times the training: the
        warm-up and the minibatches between events (a merged net of ``factor`` networks trained
        as long as they are alone; ExperimentConfig.merged_budget "total")."""
        return dataclasses.replace(self, warmup_batches=self.warmup_batches * factor,
                                   every=self.every * factor)


@dataclass(frozen=True)
class AdapMTLConfig:
    """AdapMTL settings (batch size, weight lr, seed and device come from PruneConfig).

    target_sparsity: overall fraction of zero thresholded weights at which thresholds freeze.
    epochs: total training epochs (thresholds rise, freeze, then the weights recover).
    theta_init: initial theta; threshold = sigmoid(theta). -8 gives 3.4e-4: only weights that
    carry (almost) nothing are zero at the start (on the embedded digits nets about half).
    theta_lr: Adam rate of the thetas, also the unit of the decoupled push.
    push: decoupled rise of every unfrozen theta per step, in units of theta_lr (> 1
    guarantees progress, see the module docstring). Defaults: thresholds grow >= 0.01 logit
    per step; the digits nets reach 90% after 7-9 of the 30 epochs.
    window: number of relative loss changes averaged for beta (Eq. 6); betas stay equal until
    a full window of losses exists (as in the reference trainer).
    lam: lambda of Eq. 6. shared_threshold: one threshold for all components (ablation "w/o
    adaptive thresholds"). adaptive_weighting: False gives beta_t = 1 (ablation).
    log_every: a log row every this many steps (and at every epoch end).
    """

    target_sparsity: float = 0.9
    epochs: int = 30
    theta_init: float = -8.0
    theta_lr: float = 0.01
    push: float = 2.0
    window: int = 50
    lam: float = 1.0
    shared_threshold: bool = False
    adaptive_weighting: bool = True
    log_every: int = 1

    def __post_init__(self) -> None:
        v.in_interval(self, "target_sparsity", 0, 1)
        for name in ("epochs", "window", "log_every"):
            v.positive_int(self, name)
        v.finite(self, "theta_init")
        for name in ("theta_lr", "lam"):
            v.finite_positive(self, name)
        v.finite_non_negative(self, "push")
        for name in ("shared_threshold", "adaptive_weighting"):
            v.boolean(self, name)


@dataclass(frozen=True)
class PruneConfig:
    """Settings of every pruning method (P1/P2 and later ones share the driver fields).

    delta: accuracy points a task may lose on validation vs its unpruned reference.
    step_fraction: fraction of the task subgraph's current neurons removed per step (>= min_step).
    finetune_batches: joint-finetuning minibatches after each step; score_batches: minibatches
    for importance estimation (P2). max_steps counts accepted and rejected steps.
    score_scope: "sharing" (default) scores task t's subgraph, and a neuron shared by tasks tau
    gets the sum of its importances for every task in tau; "task" scores against t's loss only
    (the literal alternating rule; it leaves shared neurons that serve the other task through
    zero-initialised connections at importance 0, so a fully shared B2 cannot be pruned).
    "sharing" adds, for a neuron shared by tasks tau, the importance for every task in tau
    (P2; P1's gates are always trained on every sharing task's loss).
    patience: consecutive rejected ``min_step`` steps of a task before it is frozen (validation
    accuracy moves a few tenths of a point between steps, so one rejection is weak evidence).
    flops_weight: neurons are ranked by importance / (FLOPs their removal saves)^flops_weight,
    FLOPs summed over every task subset; 1 (default) is the "flops-aware" rank (the FLOPs-aware
    criterion of Molchanov et al., ICLR 2017, in ratio form; measured the better one under the
    published schedule, docs/pruning.md); 0 (the "published" rank) ranks by the method's own
    importance alone, as P1 and P2 publish it; applied alike to every scheme (:data:`RANKS`).
    taylor_mode: P2's score. "batch" (default, Molchanov et al. 2019): per minibatch the gate
    gradient summed over the batch, times the gate, squared; averaged over score_batches
    minibatches. "sample": the same per sample, squared, averaged over the samples.
    reference_accuracy: {task: %} accuracy floor reference instead of the measured unpruned one.
    unit_flops: the all-task FLOPs of the largest original single-task network (set per stage by
    the schemes): the published schedule's end and its grid below it are measured in it when
    ``plan.end_unit`` is "original" (None: the pruned net's own start).
    adapmtl: an AdapMTLConfig for the "adapmtl" method (None: its defaults).
    schedule: "published" (default: P1/P2 prune while training continues and leave a curve of
    finetuned checkpoints, ``plan`` sets it; delta is then only the default read-off tolerance)
    or "floor-greedy" (the accept/reject loop above, the first version). AdapMTL ignores it.
    P1 (VIB): vib_epochs of gate + weight training with loss + kl_weight * KL, gates learnt at
    vib_lr; neurons with log(sigma^2 / mu^2) > log_alpha_threshold are removed first.
    """

    delta: float = 0.5
    step_fraction: float = 0.1
    min_step: int = 1
    finetune_batches: int = 40
    final_finetune_epochs: int = 2
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    device: str = "auto"
    max_steps: int = 200
    score_batches: int = 10
    vib_epochs: int = 3
    kl_weight: float = 1e-3
    vib_lr: float = 2e-2
    log_alpha_threshold: float = 3.0
    score_scope: str = "sharing"
    patience: int = 3
    flops_weight: float = 1.0
    taylor_mode: str = "batch"
    reference_accuracy: Mapping[str, float] | None = None
    unit_flops: int | None = None
    adapmtl: AdapMTLConfig | None = None
    schedule: str = "published"
    plan: ScheduleConfig = ScheduleConfig()

    def __post_init__(self) -> None:
        v.finite_non_negative(self, "delta")
        v.in_interval(self, "step_fraction", 0, 1, closed_high=True)
        for name in ("min_step", "batch_size", "score_batches", "patience"):
            v.positive_int(self, name)
        for name in ("finetune_batches", "final_finetune_epochs", "max_steps", "vib_epochs"):
            v.non_negative_int(self, name)
        for name in ("lr", "vib_lr"):
            v.finite_positive(self, name)
        v.finite_non_negative(self, "kl_weight")
        v.finite(self, "log_alpha_threshold")
        v.choice(self, "score_scope", SCORE_SCOPES)
        v.choice(self, "taylor_mode", TAYLOR_MODES)
        v.finite_non_negative(self, "flops_weight")
        ref = self.reference_accuracy
        if ref is not None and (not isinstance(ref, Mapping) or not all(
                isinstance(k, str) and v.is_number(a) for k, a in ref.items())):
            v.fail(self, "reference_accuracy", f"must be None or {{task: accuracy in %}}, got {ref!r}")
        if self.unit_flops is not None:
            v.positive_int(self, "unit_flops")
        if self.adapmtl is not None and not isinstance(self.adapmtl, AdapMTLConfig):
            v.fail(self, "adapmtl", f"must be None (defaults) or an AdapMTLConfig, got {self.adapmtl!r}")
        v.choice(self, "schedule", SCHEDULES)
        if not isinstance(self.plan, ScheduleConfig):
            v.fail(self, "plan", f"must be a ScheduleConfig, got {self.plan!r}")
        v.integer(self, "seed")
        v.device(self)


__all__ = ["SCORE_SCOPES", "TAYLOR_MODES", "RANKS", "SCHEDULES", "TOLERANCES", "VIB_PACES", "END_UNITS",
           "GRIDS", "ScheduleConfig", "AdapMTLConfig", "PruneConfig"]
