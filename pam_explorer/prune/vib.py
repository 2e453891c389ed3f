"""P1: variational information bottleneck gates (Dai et al., ICML 2018).

Every group's output channel c is multiplied by a Gaussian gate z_c = mu_c + eps * sigma_c
(eps ~ N(0, 1), one draw per sample and channel, shared over spatial positions), with learnt
mu (init 1) and log sigma^2 (init ``INIT_LOGVAR``). For ``vib_epochs`` the gates and the weights
are trained on  sum_t [ L_t + kl_weight * KL_t ],  KL_t = sum over the gated neurons of task t's
subgraph of 1/2 log(1 + mu^2 / sigma^2); as in joint finetuning, a parameter shared by |tau|
tasks (its group's gates included) gets the task-averaged gradient. Gates use their own Adam rate
``vib_lr`` because a few epochs at the weights' rate would barely move log sigma^2.

Choices:
* at evaluation a gate is its mean mu, which is then *folded* into the net: the group output
  (after its per-neuron ops) feeds its readers linearly, so scaling the readers' input columns
  (next-layer groups, or the heads) by mu is exact for any per-neuron op (ReLU, pooling, BN);
* importance of a neuron = mu^2 / sigma^2 = exp(-log alpha), fixed after the gate training and
  carried through every removal; the alternating driver removes by that order, and at task t's
  first turns its step is at least the number of t's neurons with log alpha above
  ``log_alpha_threshold`` (Dai et al.'s pruning rule, here still subject to the accuracy check).
* residual nets: a stage stream's channel is gated at each module layer's output before the
  shortcut addition (conv2, downsample; folded into their BatchNorm), not at the stem (its
  ReLU output is also added, so a gate there would not fold exactly); its importance is the sum
  over those gates (:func:`fold_kind`, :meth:`VIBGates.scores`).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from pam_explorer.merge.merged_net import MergedNet
from pam_explorer.prune.base import (
    AlternatingPruner,
    BatchStream,
    GroupId,
    Progress,
    Scores,
    TaskData,
    register_pruner,
    subgraph_groups,
)
from pam_explorer.prune.config import PruneConfig
from pam_explorer.train.finetune import grad_scales, joint_loss, scale_gradients

INIT_LOGVAR = -6.0
_EPS = 1e-12  # keeps log(mu^2) finite where a gate's mean reached exactly zero


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-neuron KL term 1/2 log(1 + mu^2 / sigma^2); mu, logvar (C,) -> (C,)."""
    return 0.5 * torch.log1p(mu.pow(2) * torch.exp(-logvar))


def log_alpha(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log(sigma^2 / mu^2) per neuron, (C,) -> (C,); large = noisy = unimportant."""
    return logvar - torch.log(mu.pow(2) + _EPS)


def _name(group: GroupId) -> str:
    return f"{group[0]}:{group[1]}"  # ParameterDict names may not contain "."


def fold_kind(net: MergedNet, layer: str) -> str | None:
    """How a gate on module layer ``layer``'s group outputs folds into the net at evaluation:
    "readers" (its value feeds only linear readers: scale their input columns; every chain
    layer), "self" (its ops are affine BatchNorms only and its output meets a shortcut
    addition: scale the last BN's weight and bias), None (not gated: e.g. a residual stem,
    whose ReLU/pooling output is both read and added)."""
    geo = net.geometry
    lg = geo.layers[geo.layer_names.index(layer)]
    added = {other.add for other in geo.layers if other.add}
    if len(net.members(layer)) == 1 and not lg.add and not lg.post and layer not in added:
        return "readers"
    if lg.followers and all(name.startswith("BatchNorm") and dict(args).get("affine", True)
                            for name, args in lg.followers):
        return "self"
    return None


class VIBGates(nn.Module):
    """mu, logvar (width,) per gated non-empty group of every module layer (``positions``: for a
    chain net, every (layer, key)); :meth:`attach` hooks them onto the group outputs
    (N, C[, H, W]). Training mode samples z, eval mode uses z = mu."""

    def __init__(self, net: MergedNet, init_logvar: float = INIT_LOGVAR) -> None:
        super().__init__()
        device = next(net.parameters()).device
        kinds = {m: fold_kind(net, m) for m in net.module_layers}
        self.positions: list[GroupId] = [(m, key) for m in net.module_layers for key in net.groups[m]
                                         if kinds[m] is not None and net.width(m, key) > 0]
        self.kinds = {p: kinds[p[0]] for p in self.positions}
        self.owner = {p: net.geometry.grouping_of(p[0]) for p in self.positions}  # its neuron layer
        self.mu = nn.ParameterDict({_name(g): nn.Parameter(torch.ones(net.width(*g), device=device))
                                    for g in self.positions})
        self.logvar = nn.ParameterDict({_name(g): nn.Parameter(
            torch.full((net.width(*g),), float(init_logvar), device=device)) for g in self.positions})
        self._handles: list = []

    @property
    def groups(self) -> list[GroupId]:
        """The gated (module layer, key) positions (for a chain net: its non-empty groups)."""
        return list(self.positions)

    def params(self, position: GroupId) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mu[_name(position)], self.logvar[_name(position)]

    def attach(self, net: MergedNet) -> None:
        self.detach()
        for g in self.positions:
            self._handles.append(net.groups[g[0]][g[1]].register_forward_hook(self._hook(g)))

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _hook(self, position: GroupId):
        def hook(_module: nn.Module, _inp: tuple, out: torch.Tensor) -> torch.Tensor:
            mu, logvar = self.params(position)
            z = mu.expand(out.shape[0], -1)
            if self.training:
                z = z + torch.randn_like(z) * torch.exp(0.5 * logvar)
            return out * z.reshape(*z.shape, *[1] * (out.dim() - 2))  # (N, C) -> broadcast on H, W
        return hook

    def kl(self, task: str) -> torch.Tensor:
        """Sum of the KL terms over the gated neurons of ``task``'s subgraph (a scalar)."""
        terms = [kl_divergence(*self.params(g)).sum() for g in self.positions if task in g[1].split("+")]
        return torch.stack(terms).sum() if terms else torch.zeros(())

    def scale_grads(self) -> None:
        """Divide each gate's gradient by its group's task count (task-averaged, as weights)."""
        for g in self.positions:
            for p in self.params(g):
                if p.grad is not None:
                    p.grad.div_(len(g[1].split("+")))

    def scores(self) -> Scores:
        """{(neuron layer, key): (width,) mu^2 / sigma^2 = exp(-log alpha)}, detached, summed over
        the gated module layers of a coupled neuron layer: the same order as -log alpha for one
        gate, non-negative, so the driver may divide it by a neuron's FLOPs."""
        out: Scores = {}
        for g in self.positions:
            s = torch.exp(-log_alpha(*self.params(g)).detach().double()).float()
            key = (self.owner[g], g[1])
            out[key] = out[key] + s if key in out else s
        return out


@torch.no_grad()
def fold_gates(net: MergedNet, gates: VIBGates) -> None:
    """Fold the eval-mode gates (z = mu) into the net, in place (see :func:`fold_kind`); the
    gates are detached. Outputs of the net in eval mode are unchanged."""
    gates.detach()
    for layer, key in gates.positions:
        mu = gates.params((layer, key))[0].detach()
        if gates.kinds[(layer, key)] == "self":  # mu * BN(x): BN with weight and bias times mu
            bn = list(net.groups[layer][key])[-1]
            bn.weight.mul_(mu.to(bn.weight.dtype))
            bn.bias.mul_(mu.to(bn.bias.dtype))
            continue
        # every reader: next-layer groups and the heads of tasks whose head reads ``layer``
        for core, start, factor in net.reader_columns(layer, key):
            scale = mu.to(core.weight.dtype).repeat_interleave(factor)  # channel-major features
            w = core.weight
            w[:, start:start + scale.numel()] *= scale.reshape(1, -1, *[1] * (w.dim() - 2))


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
    """P1: train VIB gates once, fold their means, then remove neurons by log alpha."""

    name = "vib"

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
