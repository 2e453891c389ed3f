"""PruneConfig: the settings every pruning method reads (driver fields shared by P1/P2/AdapMTL)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

SCORE_SCOPES = ("task", "sharing")

# --------------------------------------------------------------------------- configuration
def _fail(name: str, msg: str) -> None:
    raise ValueError(f"PruneConfig.{name}: {msg}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


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
    zero-initialised connections at importance 0, so a fully shared B2 cannot be pruned). "sharing" adds, for a neuron shared by tasks tau, the importance for every task in tau
    (P2; P1's gates are always trained on every sharing task's loss).
    patience: consecutive rejected ``min_step`` steps of a task before it is frozen (validation
    accuracy moves a few tenths of a point between steps, so one rejection is weak evidence).
    flops_weight: neurons are ranked by importance / (FLOPs their removal saves)^flops_weight,
    FLOPs summed over every task subset; 0 ranks by importance alone. Without it a few cheap fc
    neurons go first and the accuracy budget is spent before the costly conv channels are tried
    (the FLOPs-aware criterion of Molchanov et al., ICLR 2017, in ratio form).
    reference_accuracy: {task: %} accuracy floor reference instead of the measured unpruned one.
    adapmtl: an AdapMTLConfig for the "adapmtl" method (None: its defaults).
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
    reference_accuracy: Mapping[str, float] | None = None
    adapmtl: Any = None

    def __post_init__(self) -> None:
        if not _is_num(self.delta) or self.delta < 0:
            _fail("delta", f"must be a finite number >= 0, got {self.delta!r}")
        if not _is_num(self.step_fraction) or not 0 < self.step_fraction <= 1:
            _fail("step_fraction", f"must be in (0, 1], got {self.step_fraction!r}")
        for name in ("min_step", "batch_size", "score_batches"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                _fail(name, f"must be a positive integer, got {getattr(self, name)!r}")
        for name in ("finetune_batches", "final_finetune_epochs", "max_steps", "vib_epochs"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 0:
                _fail(name, f"must be an integer >= 0, got {getattr(self, name)!r}")
        for name in ("lr", "vib_lr"):
            if not _is_num(getattr(self, name)) or getattr(self, name) <= 0:
                _fail(name, f"must be a finite number > 0, got {getattr(self, name)!r}")
        if not _is_num(self.kl_weight) or self.kl_weight < 0:
            _fail("kl_weight", f"must be a finite number >= 0, got {self.kl_weight!r}")
        if not _is_num(self.log_alpha_threshold):
            _fail("log_alpha_threshold", f"must be a finite number, got {self.log_alpha_threshold!r}")
        if self.score_scope not in SCORE_SCOPES:
            _fail("score_scope", f"must be one of {list(SCORE_SCOPES)}, got {self.score_scope!r}")
        if not _is_num(self.flops_weight) or self.flops_weight < 0:
            _fail("flops_weight", f"must be a finite number >= 0, got {self.flops_weight!r}")
        if not _is_int(self.patience) or self.patience < 1:
            _fail("patience", f"must be a positive integer, got {self.patience!r}")
        ref = self.reference_accuracy
        if ref is not None and (not isinstance(ref, Mapping) or not all(
                isinstance(k, str) and _is_num(v) for k, v in ref.items())):
            _fail("reference_accuracy", f"must be None or {{task: accuracy in %}}, got {ref!r}")
        if self.adapmtl is not None:
            from pam_explorer.prune.adapmtl import AdapMTLConfig  # late: adapmtl imports this module
            if not isinstance(self.adapmtl, AdapMTLConfig):
                _fail("adapmtl", f"must be None (defaults) or an AdapMTLConfig, got {self.adapmtl!r}")
        if not _is_int(self.seed):
            _fail("seed", f"must be an integer, got {self.seed!r}")
        if not isinstance(self.device, str) or not self.device:
            _fail("device", f"must be 'auto', 'cpu' or 'cuda[:i]', got {self.device!r}")
