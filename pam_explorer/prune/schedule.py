"""Pruning as the papers publish it: prune while training continues, and leave a curve.

One persistent Adam trains the net on the training split (jointly, shared groups getting the
task-averaged gradient, as :mod:`pam_explorer.train.finetune`); neurons are removed by masking
(:mod:`pam_explorer.prune.masks`) at removal events every ``plan.every`` minibatches after
``plan.warmup_batches`` (:mod:`pam_explorer.prune.schedule_select`: P2 paced by FLOPs and
alternating over tasks, P1 by VIBNet's log alpha threshold under a rising KL factor). Whenever the
all-task FLOPs cross a multiple of ``plan.grid_step`` of the start, a checkpoint is taken: a copy
with the masked neurons removed physically gets the same converging finetune
(``checkpoint_epochs``, lr cosine-decayed to ``lr_end``; its own RNG, so the trajectory does not
depend on it) and is evaluated (validation and test accuracy with standard errors, FLOPs per
subset). The first point of a curve is the net as given (not trained); the schedule ends after
``plan.events`` events, or when two checkpoints in a row are ``plan.stop_margin`` points under the
reference on some task (everything further is below every tolerance read off).

Every pruned network of every scheme gets the same budget: ``plan.total_batches`` minibatches of
training inside the schedule plus ``checkpoint_epochs`` per checkpoint. There is no accuracy check
during the schedule; the cost at a tolerance is read off the curve afterwards
(:mod:`pam_explorer.prune.curve`).

A :class:`CheckpointStore` receives every checkpoint (its point, finetuned net and a way to get
the schedule's state), so a run folder can persist them and resume a stopped stage from its last
checkpoint (``resume=``).
"""
from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from typing import Protocol

import torch
from torch.nn import functional as F

from pam_explorer.core.config import FinetuneConfig
from pam_explorer.core.device import resolve_device
from pam_explorer.core.subsets import subset_key
from pam_explorer.cost.analytic import subset_costs
from pam_explorer.merge.merged_net import MergedNet
from pam_explorer.prune import schedule_state as ss
from pam_explorer.prune.base import (
    BatchStream,
    Progress,
    PruneResult,
    TaskData,
    _given_reference,
    apply_removal,
)
from pam_explorer.prune.config import TOLERANCES, PruneConfig
from pam_explorer.prune.curve import readoff
from pam_explorer.prune.masks import GroupId, NeuronMasks
from pam_explorer.prune.schedule_grid import crossed_levels, event_target
from pam_explorer.prune.schedule_select import all_task_flops, live_neurons, taylor_event, vib_event
from pam_explorer.prune.vib_gates import VIBGates, fold_gates
from pam_explorer.train.finetune import evaluate, evaluate_se, finetune, grad_scales, scale_gradients

METHODS = ("taylor", "vib")
VIB_INIT_STD = 0.01  # VIBNet's initial spread of mu and log sigma^2


class CheckpointStore(Protocol):
    """Receives a schedule's checkpoints; gives back their finetuned nets."""

    def save(self, point: dict, net: MergedNet, state: Callable[[], ss.ScheduleState]) -> None: ...

    def load_net(self, index: int) -> MergedNet: ...


class MemoryStore:
    """Keeps every checkpoint's finetuned net in memory (the default: no disk)."""

    def __init__(self) -> None:
        self.nets: dict[int, MergedNet] = {}

    def save(self, point: dict, net: MergedNet, state: Callable[[], ss.ScheduleState]) -> None:
        self.nets[point["index"]] = net

    def load_net(self, index: int) -> MergedNet:
        return self.nets[index]


@dataclasses.dataclass
class _Run:
    method: str
    net: MergedNet
    masks: NeuronMasks
    gates: VIBGates | None
    data: TaskData
    config: PruneConfig
    reference: dict[str, float]
    stream: BatchStream
    optim: torch.optim.Optimizer
    start_flops: int
    start_neurons: int
    unit_flops: int  # the end and the grid below it are in these FLOPs (<= start_flops)
    scales: dict[str, float]  # task-averaged gradients of shared groups (train.finetune)
    window: dict[GroupId, torch.Tensor] = dataclasses.field(default_factory=dict)
    window_batches: int = 0
    ema: dict[GroupId, torch.Tensor] = dataclasses.field(default_factory=dict)
    step: int = 0
    event: int = 0
    grid: int = 0  # the next grid point (1-based index into grid_levels): a checkpoint at or below it
    below: int = 0  # checkpoints in a row more than stop_margin under the reference
    points: list[dict] = dataclasses.field(default_factory=list)
    stopped: str = ""

    @property
    def plan(self):
        return self.config.plan

    @property
    def end_flops(self) -> float:
        """The FLOPs the schedule ends at: end_fraction of the unit."""
        return self.plan.end_fraction * self.unit_flops

    def attach(self) -> None:
        self.masks.attach(self.net)
        if self.gates is not None:
            self.gates.attach(self.net)

    def detach(self) -> None:
        self.masks.detach()
        if self.gates is not None:
            self.gates.detach()


# --------------------------------------------------------------------------- set-up and resume
def _new_run(method: str, net: MergedNet, data: TaskData, config: PruneConfig,
             reference: dict[str, float]) -> _Run:
    gates = None
    params = [{"params": [p for p in net.parameters() if p.requires_grad], "lr": config.lr}]
    if method == "vib":
        gen = torch.Generator().manual_seed(config.seed)
        gates = VIBGates(net, config.plan.init_logvar, VIB_INIT_STD, gen)
        params.append({"params": list(gates.parameters()), "lr": config.vib_lr})
    masks = NeuronMasks(net)
    stream = BatchStream(data.train[0].shape[0], config.batch_size, config.seed)
    start = all_task_flops(net, masks.widths(net))
    unit = min(start, config.unit_flops or start) if config.plan.end_unit == "original" else start
    return _Run(method, net, masks, gates, data, config, reference, stream, torch.optim.Adam(params),
                start, live_neurons(masks.widths(net)), unit, grad_scales(net))


def _state(run: _Run) -> ss.ScheduleState:
    """The run's state now (the trajectory net copied without hooks)."""
    run.detach()
    net = copy.deepcopy(run.net)
    run.attach()
    opt_tensors, groups = ss.optimizer_state(run.optim)
    tensors = {**run.masks.state(), **ss.group_tensors("ema", run.ema),
               **ss.group_tensors("window", run.window), **opt_tensors,
               **ss.stream_state(run.stream.gen, run.stream._queue), "rng": torch.get_rng_state()}
    if run.gates is not None:
        tensors.update({f"gates/{k}": v.detach().cpu() for k, v in run.gates.state_dict().items()})
    meta = {"method": run.method, "optim_groups": groups, "reference": run.reference,
            "start_flops": run.start_flops, "start_neurons": run.start_neurons, "unit_flops": run.unit_flops,
            "window_batches": run.window_batches, "step": run.step,
            "event": run.event, "grid": run.grid, "below": run.below, "points": run.points}
    return ss.ScheduleState(net, tensors, meta)


def _resumed(state: ss.ScheduleState, data: TaskData, config: PruneConfig, device: torch.device) -> _Run:
    meta, tensors = state.meta, state.tensors
    run = _new_run(meta["method"], state.net.to(device), data, config, dict(meta["reference"]))
    run.masks.load_state(tensors)
    if run.gates is not None:
        run.gates.load_state_dict({k[len("gates/"):]: v for k, v in tensors.items()
                                   if k.startswith("gates/")})
        run.gates.to(device)
    ss.load_optimizer(run.optim, tensors, meta["optim_groups"])
    run.stream._queue = ss.load_stream(run.stream.gen, tensors)
    run.ema, run.window = ss.read_groups("ema", tensors, device), ss.read_groups("window", tensors, device)
    for name in ("start_flops", "start_neurons", "window_batches", "step", "event", "grid", "below"):
        setattr(run, name, int(meta[name]))
    run.unit_flops = int(meta.get("unit_flops", run.start_flops))  # states saved before the unit
    run.points = list(meta["points"])
    torch.set_rng_state(tensors["rng"])
    return run


# --------------------------------------------------------------------------- training
def _train_step(run: _Run) -> None:
    """One minibatch of joint training; P2 also sums the squared per-task gate gradients of the
    minibatch (each task's own backward pass, so a shared neuron scores the sum over its tasks)."""
    net, images, targets = run.net, *run.data.train
    idx = run.stream.next().to(images.device)
    net.train()
    run.optim.zero_grad(set_to_none=True)
    run.masks.recording = run.method == "taylor"  # the hooks keep the outputs for the gate gradients
    logits = net(images[idx])
    losses = [F.binary_cross_entropy_with_logits(logits[t], targets[t][idx].to(logits[t].dtype))
              for t in net.tasks]
    if run.method == "taylor":
        for i, loss in enumerate(losses):
            loss.backward(retain_graph=i < len(losses) - 1)  # parameter gradients add up: the joint loss
            for g, c in run.masks.take_gradients().items():
                run.window[g] = run.window[g] + c.pow(2) if g in run.window else c.pow(2)
        run.masks.recording = False
        run.window_batches += 1
    else:
        total = run.plan.total_batches
        kl_fac = run.plan.kl_start * (run.plan.kl_end / run.plan.kl_start) ** (run.step / max(1, total - 1))
        kl = sum(run.gates.kl(t, run.plan.hw_weighting) for t in net.tasks)
        (sum(losses) + kl_fac * kl).backward()
        run.gates.scale_grads()
    scale_gradients(net, run.scales)
    run.optim.step()
    run.step += 1


def _flops_target(run: _Run) -> float:
    """The all-task FLOPs the current event brings the net to (:func:`event_target`)."""
    return event_target(run.start_flops, run.end_flops, run.event, run.plan.events, run.plan.pace)


def _event(run: _Run) -> int:
    """One removal event; returns the number of neurons masked."""
    plan = run.plan
    if run.method == "vib":
        target = _flops_target(run) if plan.vib_pace == "flops" else None
        removed = vib_event(run.net, run.masks, run.gates, target)
    else:
        n = max(1, run.window_batches)
        window = {g: run.window.get(g, torch.zeros(k.numel(), device=k.device))
                  for g, k in run.masks.keep.items()}
        # no gate gradient on any minibatch of the window, or no live reader with a non-zero weight
        dead = {g: (w == 0) | run.masks.silent(run.net, g) for g, w in window.items()}
        for g, w in window.items():
            m = plan.momentum if g in run.ema else 0.0
            run.ema[g] = m * run.ema.get(g, 0.0) + (1 - m) * w / n
        task = run.net.tasks[run.event % len(run.net.tasks)]
        if plan.pace != "neurons":
            target = _flops_target(run)
        else:
            target = run.start_neurons * (1 - (1 - plan.end_fraction) * (run.event + 1) / plan.events)
        removed = 0
        if all_task_flops(run.net, run.masks.widths(run.net)) > run.end_flops:
            removed = taylor_event(run.net, run.masks, task, run.ema, dead, target,
                                   run.config.flops_weight, "neurons" if plan.pace == "neurons" else "flops")
        run.window, run.window_batches = {}, 0
    run.event += 1
    return removed


# --------------------------------------------------------------------------- checkpoints
def _snapshot(run: _Run) -> MergedNet:
    """A copy of the trajectory net with the masked neurons removed (VIB gates folded: z = mu)."""
    run.detach()
    snap = copy.deepcopy(run.net)
    if run.gates is not None:
        fold_gates(snap, run.gates)
    run.attach()
    apply_removal(snap, run.masks.plan(), None)
    return snap.eval()


def _point(run: _Run, net: MergedNet, index: int, finetuned: bool) -> dict:
    val, test = evaluate_se(net, *run.data.val), evaluate_se(net, *run.data.test)
    costs = subset_costs(net)
    full = costs[subset_key(net.tasks)]["flops"]
    return {"index": index, "step": run.step, "event": run.event, "finetuned": finetuned,
            "fraction": full / run.start_flops, "flops": {k: c["flops"] for k, c in costs.items()},
            "params": {k: c["params"] for k, c in costs.items()}, "widths": net.group_widths(),
            "val_accuracy": {t: a for t, (a, _) in val.items()},
            "val_se": {t: s for t, (_, s) in val.items()},
            "test_accuracy": {t: a for t, (a, _) in test.items()},
            "test_se": {t: s for t, (_, s) in test.items()}}


def _checkpoint(run: _Run, store: CheckpointStore, emit: Progress) -> None:
    """Finetune a pruned copy, evaluate it, hand it to the store; update the stop counter."""
    t0 = time.perf_counter()
    net, index, cfg = _snapshot(run), len(run.points), run.config
    ft = FinetuneConfig(epochs=run.plan.checkpoint_epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                        lr_end=run.plan.lr_end, seed=cfg.seed * 1009 + index, device=cfg.device)
    with torch.random.fork_rng(devices=[]):  # the trajectory's RNG stays untouched
        finetune(net, run.data.train, run.data.val, ft)
    point = _point(run, net.eval(), index, True)
    point["seconds"] = round(time.perf_counter() - t0, 2)
    run.points.append(point)
    low = any(point["val_accuracy"][t] < run.reference[t] - run.plan.stop_margin for t in run.reference)
    run.below = run.below + 1 if low else 0
    store.save(point, net, lambda: _state(run))
    emit({"phase": "checkpoint", **{k: point[k] for k in ("index", "fraction", "flops", "val_accuracy")}})


def _due(run: _Run) -> bool:
    """True when the FLOPs reached the next grid point (:func:`grid_levels`); every point reached
    at once is passed over."""
    flops = all_task_flops(run.net, run.masks.widths(run.net))
    crossed = crossed_levels(flops, run.start_flops, run.unit_flops, run.plan.grid_step, run.plan.grid)
    if crossed < run.grid:
        return False
    run.grid = crossed + 1
    return True


# --------------------------------------------------------------------------- the schedule
def run_schedule(method: str, net: MergedNet, data: TaskData, config: PruneConfig,
                 progress: Progress | None = None, store: CheckpointStore | None = None,
                 resume: ss.ScheduleState | None = None) -> PruneResult:
    """Prune a copy of ``net`` by ``method`` ("taylor" | "vib") on ``config.plan``; the result's
    ``extra["curve"]`` is the list of points, ``extra["readoffs"]`` {str(delta): index} at
    :data:`TOLERANCES` and ``config.delta``, ``extra["nets"]`` {index: finetuned net} of those
    read-offs; ``net`` is the read-off at ``config.delta`` (the unpruned net when no point passes)."""
    start, emit = time.perf_counter(), progress or (lambda _: None)
    store = store if store is not None else MemoryStore()
    device = resolve_device(config.device)
    data = data.to(device)
    if resume is not None:
        run = _resumed(resume, data, config, device)
    else:
        work = copy.deepcopy(net).to(device)
        reference = evaluate(work, *data.val)
        if config.reference_accuracy is not None:
            reference = _given_reference(config.reference_accuracy, work.tasks)
        torch.manual_seed(config.seed)  # VIB gate noise, dropout
        run = _new_run(method, work, data, config, reference)
        point = _point(run, work.eval(), 0, False)
        run.points.append(point)
        store.save(point, copy.deepcopy(work), lambda: _state(run))
    run.attach()
    try:
        _loop(run, store, emit)
    finally:
        run.detach()
    return _result(run, store, method, time.perf_counter() - start)


def _loop(run: _Run, store: CheckpointStore, emit: Progress) -> None:
    plan = run.plan
    while run.step < plan.total_batches:
        if run.below >= 2:
            run.stopped = "below"
            return
        _train_step(run)
        after = run.step - plan.warmup_batches
        if after >= 0 and run.grid == 0:
            run.grid = 1
            _checkpoint(run, store, emit)  # the 100 % point: training alone
        if after > 0 and after % plan.every == 0:
            removed = _event(run)
            emit({"phase": "event", "event": run.event, "removed": removed, "step": run.step})
            if _due(run):
                _checkpoint(run, store, emit)
    last = run.points[-1]
    if run.below < 2 and (last["step"] != run.step or not last["finetuned"]):
        _checkpoint(run, store, emit)  # the end of the schedule
    run.stopped = run.stopped or "end"


def _result(run: _Run, store: CheckpointStore, method: str, seconds: float) -> PruneResult:
    deltas = sorted({*TOLERANCES, float(run.config.delta)})
    picks = {str(d): readoff(run.points, run.reference, d) for d in deltas}
    nets = {i: store.load_net(i) for i in {p for p in picks.values() if p is not None}}
    chosen = picks[str(float(run.config.delta))]
    point = run.points[chosen if chosen is not None else 0]
    net = nets[chosen] if chosen is not None else store.load_net(0)
    return PruneResult(net.eval(), [], dict(run.reference), dict(point["val_accuracy"]),
                       dict(point["test_accuracy"]), method, seconds,
                       {"curve": run.points, "readoffs": picks, "nets": nets, "stopped": run.stopped,
                        "schedule": dataclasses.asdict(run.plan), "budget_batches": run.plan.total_batches,
                        "trained_batches": run.step})


__all__ = ["run_schedule", "CheckpointStore", "MemoryStore", "METHODS"]
