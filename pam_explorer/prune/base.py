"""Pruning contract, registry, and the alternating accuracy-constrained driver shared by P1 and P2.

Every scheme is a :class:`~pam_explorer.merge.merged_net.MergedNet` (B1: one per task, B2: fully shared,
PAM: merged), so one code path prunes all of them with the same fair rule (DESIGN, "Pruning, fair
comparison"; PAM paper Sec. 5.1 and 6.1):

* step k prunes for the next not-yet-frozen task t in round-robin order (A -> B -> A ...), scoring
  only the neurons of t's subgraph (groups whose key contains t) against t's loss;
* the lowest-importance neurons are removed physically (never one whose removal would leave a
  task or a group without a path to the input), then the net is jointly finetuned for
  ``finetune_batches`` minibatches and every task's validation accuracy is measured;
* if some task lost more than ``delta`` points against its unpruned reference, the step is
  reverted; a rejected step larger than ``min_step`` halves task t's step cap (used at t's next
  turn, so turns stay strictly alternating) and an accepted one doubles it; the neurons of a
  rejected ``min_step`` step are not tried again for t, and ``patience`` such rejections in a
  row freeze t (one rejection is weak evidence: validation accuracy moves a few tenths of a
  point between steps, and the next-ranked neuron may well be removable);
* stop when every task is frozen (or cannot lose another neuron) or after ``max_steps`` turns,
  then finetune ``final_finetune_epochs`` epochs and report validation and test accuracy.

The input network is never modified: pruning runs on a deep copy. Progress goes to an optional
``progress(dict)`` callback; an exception raised by it cancels the run.
"""
from __future__ import annotations

import abc
import copy
import math
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from pam_explorer.core.config import FinetuneConfig
from pam_explorer.core.device import resolve_device
from pam_explorer.core.errors import ConfigError, StructureError
from pam_explorer.core.geometry import check_widths
from pam_explorer.cost.analytic import costs_from_widths, subset_costs
from pam_explorer.data.presets import get_preset, task_targets
from pam_explorer.merge.merged_net import MergedNet
from pam_explorer.prune.config import PruneConfig
from pam_explorer.train.finetune import evaluate, finetune, grad_scales, joint_loss, scale_gradients

Targets = Mapping[str, torch.Tensor]  # task -> (N, L_t) float {0, 1}
Split = tuple[torch.Tensor, Targets]  # images (N, C, H, W), targets
Progress = Callable[[dict], None]
GroupId = tuple[str, str]  # (layer, key)
Scores = dict[GroupId, torch.Tensor]  # (layer, key) -> (width,) importance >= 0, higher = keep


@dataclass
class TaskData:
    """train / val / test splits: (images (N, C, H, W), {task: (N, L_t) float {0, 1}})."""

    train: Split
    val: Split
    test: Split

    @classmethod
    def from_splits(cls, splits: Mapping[str, Any], preset: Any) -> TaskData:
        """From ``load_preset_data`` splits (MultiLabelSplit per name) and a Preset (or its name)."""
        preset = get_preset(preset) if isinstance(preset, str) else preset

        def split(name: str) -> Split:
            s = splits[name]
            return s.images, {t: task_targets(s.labels, preset, t) for t in preset.task_names}
        return cls(split("train"), split("val"), split("test"))

    def to(self, device: torch.device) -> TaskData:
        """A copy with every tensor on ``device`` (a no-op copy when already there)."""
        def move(s: Split) -> Split:
            return s[0].to(device), {t: y.to(device) for t, y in s[1].items()}
        return TaskData(move(self.train), move(self.val), move(self.test))


@dataclass
class PruneResult:
    """The pruned net and its history. Log rows: {"step", "task", "accepted", "removed",
    "widths", "flops", "val_accuracy", "seconds"}; accuracies in percent."""

    net: MergedNet
    log: list[dict] = field(default_factory=list)
    reference_accuracy: dict[str, float] = field(default_factory=dict)
    val_accuracy: dict[str, float] = field(default_factory=dict)
    test_accuracy: dict[str, float] = field(default_factory=dict)
    method: str = ""
    seconds: float = 0.0
    # method-specific results (AdapMTL: sparsity, Delta_T; the structured driver: "stopped", why
    # pruning ended: "frozen" (every task) or "max_steps" (the budget of turns ran out))
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- contract + registry
class Pruner(abc.ABC):
    """A pruning method. ``structured``: removes whole neurons (True) or single weights (False)."""

    name: ClassVar[str] = ""
    structured: ClassVar[bool] = True

    @abc.abstractmethod
    def prune(self, net: MergedNet, data: TaskData, config: PruneConfig,
              progress: Progress | None = None, store: Any = None, resume: Any = None) -> PruneResult:
        """Prune a copy of ``net``; the input is left unchanged. ``store``/``resume``: a
        schedule's checkpoint store and the state to resume from (prune.schedule; methods
        without a schedule ignore them)."""


_REGISTRY: dict[str, type[Pruner]] = {}


def register_pruner(name: str, cls: type[Pruner], overwrite: bool = False) -> type[Pruner]:
    """Make ``cls`` available as ``get_pruner(name)``; ConfigError on a duplicate name."""
    if not isinstance(cls, type) or not issubclass(cls, Pruner):
        raise ConfigError(f"pruner {name!r} must be a Pruner subclass, got {cls!r}")
    if name in _REGISTRY and not overwrite and _REGISTRY[name] is not cls:
        raise ConfigError(f"pruner {name!r} is already registered ({_REGISTRY[name].__name__})")
    _REGISTRY[name] = cls
    return cls


def get_pruner(name: str) -> Pruner:
    """A fresh instance of the pruner registered as ``name``."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown pruning method {name!r}; known: {list_pruners()}")
    return _REGISTRY[name]()


def list_pruners() -> list[str]:
    return sorted(_REGISTRY)


# --------------------------------------------------------------------------- helpers
class BatchStream:
    """Endless shuffled minibatch indices over n samples: a fresh permutation per pass; a
    trailing batch of one sample is skipped (BatchNorm needs two)."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size = n, batch_size
        self.gen = torch.Generator().manual_seed(seed)
        self._queue: list[torch.Tensor] = []

    def next(self) -> torch.Tensor:
        while not self._queue:
            chunks = list(torch.randperm(self.n, generator=self.gen).split(self.batch_size))
            self._queue = [c for c in chunks if c.numel() > 1 or self.n == 1]
        return self._queue.pop(0)


def subgraph_groups(net: MergedNet, task: str) -> list[GroupId]:
    """Non-empty (layer, key) groups whose key contains ``task``, in forward order; layers are
    neuron layers (a residual stage stream is one, whatever the number of its module layers)."""
    return [(layer, key) for layer, widths in net.group_widths().items() for key, n in widths.items()
            if task in key.split("+") and n > 0]


def removal_savings(net: MergedNet, groups: list[GroupId],
                    widths: Mapping[str, Mapping[str, int]] | None = None) -> dict[GroupId, int]:
    """FLOPs (summed over every task subset) saved by removing one neuron of each group: its own
    inputs, and its columns in the groups and heads that read it. ``widths``: the widths to
    start from (default the net's own; a masked net passes its live widths)."""
    widths = net.group_widths() if widths is None else {k: dict(v) for k, v in widths.items()}
    base = sum(c["flops"] for c in costs_from_widths(net.geometry, widths).values())
    out = {}
    for layer, key in groups:
        widths[layer][key] -= 1
        out[(layer, key)] = base - sum(c["flops"] for c in costs_from_widths(net.geometry, widths).values())
        widths[layer][key] += 1
    return out


def rank_neurons(net: MergedNet, task: str, scores: Scores, flops_weight: float
                 ) -> list[tuple[float, str, str, int]]:
    """(rank value, layer, key, position) of ``task``'s subgraph, ascending: importance divided
    by savings**flops_weight, so at equal importance the neuron that saves more goes first.

    Ties on the value go to the larger saving when flops_weight > 0: zero-importance neurons
    (dead ReLUs, often tens per merged fc layer) all have value 0 whatever they cost, and
    without this they would go in layer-name order, the published rank's order."""
    groups = subgraph_groups(net, task)
    savings = removal_savings(net, groups) if flops_weight > 0 else {}
    ranked = []
    for g in groups:
        div = float(max(savings.get(g, 1), 1)) ** flops_weight
        ranked.extend((float(s) / div, g[0], g[1], pos) for pos, s in enumerate(scores[g].tolist()))
    return sorted(ranked, key=lambda r: (r[0], -savings.get((r[1], r[2]), 0), r[1], r[2], r[3]))


def plan_removal(net: MergedNet, ranked: list[tuple[float, str, str, int]], size: int
                 ) -> dict[GroupId, list[int]]:
    """Positions to remove per group: the first ``size`` of ``ranked`` (ascending importance
    (score, layer, key, position)) whose removal keeps every task and group connected."""
    widths = net.group_widths()
    plan: dict[GroupId, list[int]] = defaultdict(list)
    taken = 0
    for _, layer, key, pos in ranked:
        if taken == size:
            break
        widths[layer][key] -= 1
        if widths[layer][key] == 0:  # only emptying a group can cut a path
            try:
                check_widths(net.geometry, widths)
            except StructureError:
                widths[layer][key] += 1
                continue
        plan[(layer, key)].append(pos)
        taken += 1
    return dict(plan)


def apply_removal(net: MergedNet, plan: Mapping[GroupId, list[int]], scores: Scores | None) -> None:
    """Remove the planned neurons and slice per-neuron ``scores`` alike, in place. The final
    widths are checked once, before any change: a group emptied at layer i may feed a group of
    layer i+1 that the plan also empties (and in a residual net a stage stream both feeds and is
    fed by the inner convs), so an intermediate net may be cut off from the input."""
    widths = net.group_widths()
    for (layer, key), positions in plan.items():
        widths[layer][key] -= len(set(positions))
    check_widths(net.geometry, widths)
    order = {name: i for i, name in enumerate(net.layer_names)}
    for layer, key in sorted(plan, key=lambda g: -order[g[0]]):
        keep = torch.ones(net.width(layer, key), dtype=torch.bool)
        keep[plan[(layer, key)]] = False
        net.remove_neurons(layer, key, keep, check=False)
        if scores is not None and (layer, key) in scores:
            scores[(layer, key)] = scores[(layer, key)][keep.to(scores[(layer, key)].device)]


def train_batches(net: MergedNet, train: Split, n_batches: int, stream: BatchStream, lr: float) -> None:
    """Jointly train ``n_batches`` minibatches with a fresh Adam (modules were replaced by the
    surgery); shared groups get the task-averaged gradient (train.finetune.scale_gradients)."""
    params = [p for p in net.parameters() if p.requires_grad]
    if n_batches == 0 or not params:
        return
    images, targets = train
    scales = grad_scales(net)
    optim = torch.optim.Adam(params, lr=lr)
    net.train()
    for _ in range(n_batches):
        idx = stream.next().to(images.device)
        optim.zero_grad(set_to_none=True)
        joint_loss(net, images[idx], {t: targets[t][idx] for t in net.tasks}).backward()
        scale_gradients(net, scales)
        optim.step()


def _given_reference(given: Mapping[str, float], tasks: tuple[str, ...]) -> dict[str, float]:
    missing = [t for t in tasks if t not in given]
    if missing:
        raise ConfigError(f"PruneConfig.reference_accuracy has no value for task(s) {missing}")
    return {t: float(given[t]) for t in tasks}


# --------------------------------------------------------------------------- the driver
@dataclass
class _RunState:
    net: MergedNet
    scores: Scores | None  # static per-neuron scores (P1), sliced with every removal
    reference: dict[str, float]
    stream: BatchStream
    caps: dict[str, float]
    frozen: set[str] = field(default_factory=set)
    misses: dict[str, int] = field(default_factory=dict)  # consecutive rejected min_step steps
    blocked: dict[str, set] = field(default_factory=dict)  # task -> {(layer, key, provenance)}
    log: list[dict] = field(default_factory=list)
    turn: int = 0


class AlternatingPruner(Pruner):
    """Structured pruning by the alternating accuracy-constrained driver. Subclasses give
    :meth:`importance` (recomputed every step) or a static order from :meth:`prepare`."""

    structured: ClassVar[bool] = True

    def prepare(self, net: MergedNet, data: TaskData, config: PruneConfig, stream: BatchStream,
                progress: Progress | None) -> Scores | None:
        """Before the first step (after the reference accuracy); static scores or None."""
        return None

    def importance(self, net: MergedNet, task: str, data: TaskData, config: PruneConfig,
                   stream: BatchStream) -> Scores:
        """{(layer, key): (width,) importance} for the groups of ``task``'s subgraph."""
        raise NotImplementedError(f"{type(self).__name__} gives no per-step importance")

    def forced_count(self, net: MergedNet, task: str, scores: Scores, config: PruneConfig) -> int:
        """Neurons of ``task``'s subgraph the method wants gone at once (P1: above threshold)."""
        return 0

    def prune(self, net: MergedNet, data: TaskData, config: PruneConfig,
              progress: Progress | None = None, store: Any = None, resume: Any = None) -> PruneResult:
        start = time.perf_counter()
        emit = progress or (lambda _: None)
        device = resolve_device(config.device)
        work = copy.deepcopy(net).to(device)
        data = data.to(device)
        reference = evaluate(work, *data.val)
        emit({"phase": "reference", "val_accuracy": dict(reference)})
        if config.reference_accuracy is not None:
            reference = _given_reference(config.reference_accuracy, work.tasks)
        stream = BatchStream(data.train[0].shape[0], config.batch_size, config.seed)
        torch.manual_seed(config.seed)  # gate noise (P1), dropout
        scores = self.prepare(work, data, config, stream, progress)
        state = _RunState(work, scores, reference, stream, {t: math.inf for t in work.tasks})
        while len(state.log) < config.max_steps and len(state.frozen) < len(work.tasks):
            task = work.tasks[state.turn % len(work.tasks)]
            state.turn += 1
            if task not in state.frozen:
                self._step(state, task, data, config, emit)
        ft = finetune(state.net, data.train, data.val, FinetuneConfig(
            epochs=config.final_finetune_epochs, batch_size=config.batch_size, lr=config.lr,
            seed=config.seed, device=config.device),
            lambda rec: emit({"phase": "final_finetune", **rec}))
        test = evaluate(state.net, *data.test)
        result = PruneResult(state.net.eval(), state.log, reference, dict(ft.val_accuracy), test,
                             self.name, time.perf_counter() - start,
                             {"stopped": "frozen" if len(state.frozen) == len(work.tasks) else "max_steps"})
        emit({"phase": "done", "val_accuracy": result.val_accuracy, "test_accuracy": test,
              "flops": {k: v["flops"] for k, v in subset_costs(state.net).items()}})
        return result

    def _step(self, state: _RunState, task: str, data: TaskData, config: PruneConfig,
              emit: Progress) -> None:
        """One turn for ``task``: remove, finetune, evaluate, accept or revert (and log it)."""
        t0 = time.perf_counter()
        net = state.net
        plan = self._plan(state, task, data, config)
        if not plan:  # every remaining candidate carries a path or already failed alone
            state.frozen.add(task)
            emit({"phase": "frozen", "task": task, "reason": "no removable neuron"})
            return
        tried = {(layer, key, net.provenance(layer, key)[p]) for (layer, key), ps in plan.items() for p in ps}
        backup = copy.deepcopy((net, state.scores))
        apply_removal(net, plan, state.scores)
        train_batches(net, data.train, config.finetune_batches, state.stream, config.lr)
        acc = evaluate(net, *data.val)
        accepted = all(acc[t] >= state.reference[t] - config.delta - 1e-9 for t in net.tasks)
        row = {"step": len(state.log), "task": task, "accepted": accepted, "removed": len(tried),
               "widths": net.group_widths(),
               "flops": {k: v["flops"] for k, v in subset_costs(net).items()},
               "val_accuracy": acc, "seconds": time.perf_counter() - t0}
        if not accepted:  # the row keeps what was tried; the net goes back
            state.net, state.scores = backup
        self._judge(state, task, accepted, tried, config)
        state.log.append(row)
        emit({"phase": "prune", **row, "frozen": sorted(state.frozen)})

    def _plan(self, state: _RunState, task: str, data: TaskData, config: PruneConfig
              ) -> dict[GroupId, list[int]]:
        """This turn's removal: the lowest-ranked neurons not yet failed alone, up to the cap."""
        net = state.net
        scores = state.scores if state.scores is not None else self.importance(
            net, task, data, config, state.stream)
        blocked = state.blocked.setdefault(task, set())
        ranked = [r for r in rank_neurons(net, task, scores, config.flops_weight)
                  if (r[1], r[2], net.provenance(r[1], r[2])[r[3]]) not in blocked]
        size = max(config.min_step, int(config.step_fraction * len(ranked)),
                   self.forced_count(net, task, scores, config))
        return plan_removal(net, ranked, int(min(size, state.caps[task])))

    @staticmethod
    def _judge(state: _RunState, task: str, accepted: bool, tried: set, config: PruneConfig) -> None:
        """Step-size control: double the cap after an accepted step, halve it after a rejected
        one; a rejected min_step removal blocks those neurons for ``task`` (the next turn tries
        the next candidates), and ``patience`` such rejections in a row freeze the task."""
        if accepted:
            state.misses[task] = 0
            state.caps[task] = state.caps[task] * 2
        elif len(tried) > config.min_step:
            state.caps[task] = max(config.min_step, len(tried) // 2)
        else:
            state.blocked[task] |= tried
            state.misses[task] = state.misses.get(task, 0) + 1
            if state.misses[task] >= config.patience:
                state.frozen.add(task)


__all__ = ["TaskData", "PruneResult", "Pruner", "AlternatingPruner", "register_pruner",
           "get_pruner", "list_pruners", "BatchStream", "subgraph_groups", "plan_removal",
           "apply_removal", "train_batches", "removal_savings", "rank_neurons", "Scores", "Progress", "Split"]
