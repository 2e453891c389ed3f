"""P2: first-order Taylor importance of per-neuron gates (Molchanov et al., CVPR 2019).

Think of a gate g = 1 multiplying every output channel of every group (after its per-neuron ops:
what the readers consume). Its gradient is dL/dg = sum over spatial positions of a * dL/da, with
a the group output, so no gate parameters are needed: forward hooks keep the group outputs and
one autograd call gives dL/da. Importance of neuron c (``mode``):

* "batch" (Molchanov et al. 2019, Eq. 8 on the gate): (g * dL/dg)^2 with L the minibatch's mean
  loss, averaged over the ``score_batches`` minibatches;
* "sample": (g * dL_n/dg)^2 per sample n, averaged over all their samples.

The loss is task t's BCE (mean over its labels) per sample; "batch" averages it over the batch.
Scoring runs in eval mode (BatchNorm running statistics, no dropout), so it changes nothing in
the net. With ``score_scope="sharing"`` a neuron shared by tasks tau scores the sum of its
importances for every task in tau (else task t's only, as the paper's alternating rule: on a
fully shared net the other tasks' neurons then score exactly 0 for t). Importances are ranked
globally over the layers of t's subgraph, unnormalised, as in the gate formulation of the paper.
Channels tied by a residual shortcut share one gate (:func:`taylor_importance`), so they are
scored, ranked and removed together.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.nn import functional as F

from pam_explorer.core.errors import ConfigError
from pam_explorer.merge.merged_net import MergedNet
from pam_explorer.prune.base import (
    AlternatingPruner,
    BatchStream,
    Progress,
    PruneResult,
    Scores,
    TaskData,
    register_pruner,
    subgraph_groups,
)
from pam_explorer.prune.config import TAYLOR_MODES, PruneConfig
from pam_explorer.prune.schedule import run_schedule


def per_sample_task_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """logits, targets (N, L_t) -> scalar: sum over samples of the mean-over-labels BCE."""
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype),
                                              reduction="none").mean(1).sum()


def taylor_importance(net: MergedNet, task: str,
                      batches: Iterable[tuple[torch.Tensor, torch.Tensor]], mode: str = "batch") -> Scores:
    """{(layer, key): (width,) importance} for the non-empty groups of ``task``'s subgraph:
    mean over minibatches of (mean over the batch of c_n)^2 ("batch") or mean over samples of
    c_n^2 ("sample"), with c_n = sum over positions of a * dL_n/da (N, C) for sample n.
    batches: (images (N, C, H, W), targets (N, L_t)).

    A coupled neuron layer (a residual stage stream) has one gate per channel shared by all its
    module layers (the stem, the downsample and every conv2 output, before the addition): its
    gradient sums a * dL/da over every such output, the first-order change of the loss when the
    channel is removed from the whole stream."""
    if mode not in TAYLOR_MODES:
        raise ConfigError(f"Taylor mode must be one of {list(TAYLOR_MODES)}, got {mode!r}")
    groups = subgraph_groups(net, task)
    total = {g: torch.zeros(net.width(*g), device=next(net.parameters()).device) for g in groups}
    outputs: dict[tuple[str, str], torch.Tensor] = {}  # (module layer, key) -> its group's output
    where = [(g, (m, g[1])) for g in groups for m in net.members(g[0])]
    hooks = [net.groups[m][key].register_forward_hook(
        lambda _m, _i, out, p=(m, key): outputs.__setitem__(p, out)) for _, (m, key) in where]
    was_training = net.training
    net.eval()
    count = 0
    try:
        for images, targets in batches:
            outputs.clear()
            loss = per_sample_task_loss(net(images, [task])[task], targets)
            used = [(g, p) for g, p in where if outputs[p].requires_grad]
            # a group whose readers are all empty does not reach the loss: its gradient is zero
            grads = torch.autograd.grad(loss, [outputs[p] for _, p in used], allow_unused=True)
            contrib: dict[tuple[str, str], torch.Tensor] = {}  # group -> (N, C) gate gradient
            for (g, p), grad in zip(used, grads):
                if grad is not None:
                    a = outputs[p].detach()
                    c = (a * grad).flatten(2).sum(2) if a.dim() > 2 else a * grad  # (N, C)
                    contrib[g] = contrib[g] + c if g in contrib else c
            for g, c in contrib.items():
                total[g] += c.mean(0).pow(2) if mode == "batch" else c.pow(2).sum(0)
            count += 1 if mode == "batch" else images.shape[0]
    finally:
        for h in hooks:
            h.remove()
        net.train(was_training)
    return {g: v / max(1, count) for g, v in total.items()}


class TaylorPruner(AlternatingPruner):
    """P2: pruning while training continues, as published (default: :mod:`.schedule`), or the
    floor-greedy driver with the Taylor importance recomputed for the pruned task before every
    step."""

    name = "taylor"

    def prune(self, net: MergedNet, data: TaskData, config: PruneConfig,
              progress: Progress | None = None, store: Any = None, resume: Any = None) -> PruneResult:
        if config.schedule == "published":
            return run_schedule("taylor", net, data, config, progress, store, resume)
        return super().prune(net, data, config, progress)

    def importance(self, net: MergedNet, task: str, data: TaskData, config: PruneConfig,
                   stream: BatchStream) -> Scores:
        images, targets = data.train
        idx = [stream.next().to(images.device) for _ in range(config.score_batches)]
        mode = config.taylor_mode
        scores = taylor_importance(net, task, ((images[i], targets[task][i]) for i in idx), mode)
        if config.score_scope == "sharing":  # same minibatches, each other task's own loss
            for other in net.tasks:
                if other != task and any(other in key.split("+") for _, key in scores):
                    extra = taylor_importance(net, other, ((images[i], targets[other][i]) for i in idx),
                                              mode)
                    for g in scores:
                        if g in extra:
                            scores[g] = scores[g] + extra[g]
        return scores


register_pruner("taylor", TaylorPruner)

__all__ = ["TaylorPruner", "taylor_importance", "per_sample_task_loss"]
