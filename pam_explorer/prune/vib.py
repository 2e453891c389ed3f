"""P1: variational information bottleneck gates (Dai et al., ICML 2018; gates in
:mod:`pam_explorer.prune.vib_gates`).

Two drivers, by ``PruneConfig.schedule``:

* "published" (default): VIBNet as its authors run it (zhuchen03/VIBNet), inside the schedule of
  :mod:`pam_explorer.prune.schedule`: gates initialised mu ~ N(1, 0.01), log sigma^2 ~ N(-9, 0.01),
  trained with the weights on sum_t L_t + kl_factor * KL, a conv gate's KL counted once per output
  position (H x W), neurons with log alpha >= 0 masked; the KL factor rises geometrically from
  ``plan.kl_start`` to ``plan.kl_end`` over the schedule, so one run leaves a curve.
* "floor-greedy": for ``vib_epochs`` the gates and the weights are trained on sum_t [L_t +
  kl_weight * KL_t] (KL_t over the gated neurons of task t's subgraph, no H x W factor); the
  importance of a neuron is mu^2 / sigma^2 = exp(-log alpha), fixed after the gate training and
  carried through every removal of the alternating accept/reject driver, whose step at task t's
  first turns is at least the number of t's neurons with log alpha above
  ``log_alpha_threshold``.

In both, a parameter shared by |tau| tasks (its group's gates included) gets the task-averaged
gradient, and gates learn at their own Adam rate ``vib_lr`` (a few epochs at the weights' rate
would barely move log sigma^2).
"""
from __future__ import annotations

import math
from typing import Any

import torch

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
from pam_explorer.prune.config import PruneConfig
from pam_explorer.prune.schedule import run_schedule
from pam_explorer.prune.vib_gates import INIT_LOGVAR, VIBGates, fold_gates, kl_divergence, log_alpha
from pam_explorer.train.finetune import grad_scales, joint_loss, scale_gradients


def train_gates(net: MergedNet, gates: VIBGates, data: TaskData, config: PruneConfig,
                stream: BatchStream, progress: Progress | None = None) -> None:
    """``vib_epochs`` epochs of weights (lr) + gates (vib_lr) on sum_t L_t + kl_weight * KL_t."""
    images, targets = data.train
    n_batches = math.ceil(images.shape[0] / config.batch_size)
    optim = torch.optim.Adam([
        {"params": [p for p in net.parameters() if p.requires_grad], "lr": config.lr},
        {"params": list(gates.parameters()), "lr": config.vib_lr}])
    scales = grad_scales(net)
    gates.attach(net)
    net.train(), gates.train()
    try:
        for epoch in range(1, config.vib_epochs + 1):
            total, total_kl = 0.0, 0.0
            for _ in range(n_batches):
                idx = stream.next().to(images.device)
                kl = sum(gates.kl(t) for t in net.tasks)
                loss = joint_loss(net, images[idx], {t: targets[t][idx] for t in net.tasks})
                optim.zero_grad(set_to_none=True)
                (loss + config.kl_weight * kl).backward()
                scale_gradients(net, scales)
                gates.scale_grads()
                optim.step()
                total, total_kl = total + float(loss.detach()), total_kl + float(kl.detach())
            if progress is not None:
                progress({"phase": "vib", "epoch": epoch, "loss": total / n_batches,
                          "kl": total_kl / n_batches})
    finally:
        gates.detach()
        gates.eval()


class VIBPruner(AlternatingPruner):
    """P1: VIBNet's schedule (default), or train VIB gates once, fold their means, then remove
    neurons by log alpha under the floor-greedy driver."""

    name = "vib"

    def prune(self, net: MergedNet, data: TaskData, config: PruneConfig,
              progress: Progress | None = None, store: Any = None, resume: Any = None) -> PruneResult:
        if config.schedule == "published":
            return run_schedule("vib", net, data, config, progress, store, resume)
        return super().prune(net, data, config, progress)

    def prepare(self, net: MergedNet, data: TaskData, config: PruneConfig, stream: BatchStream,
                progress: Progress | None) -> Scores:
        gates = VIBGates(net)
        if config.vib_epochs > 0:
            train_gates(net, gates, data, config, stream, progress)
        fold_gates(net, gates)
        scores = gates.scores()
        # empty groups have no gates; give them (empty) scores so every group is covered
        return {(layer, key): scores.get((layer, key), torch.zeros(n))
                for layer, ws in net.group_widths().items() for key, n in ws.items()}

    def forced_count(self, net: MergedNet, task: str, scores: Scores, config: PruneConfig) -> int:
        return int(sum(int((scores[g] < math.exp(-config.log_alpha_threshold)).sum())
                       for g in subgraph_groups(net, task)))


register_pruner("vib", VIBPruner)

__all__ = ["VIBPruner", "VIBGates", "kl_divergence", "log_alpha", "fold_gates", "train_gates",
           "INIT_LOGVAR"]
