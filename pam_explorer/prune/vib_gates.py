"""The gates of P1 (variational information bottleneck, Dai et al., ICML 2018), per group output.

Every group's output channel c is multiplied by a Gaussian gate z_c = mu_c + eps * sigma_c
(eps ~ N(0, 1), one draw per sample and channel, shared over spatial positions). At evaluation a
gate is its mean mu, which :func:`fold_gates` folds into the net: the group output (after its
per-neuron ops) feeds its readers linearly, so scaling the readers' input columns by mu is exact
for any per-neuron op (ReLU, pooling, BN). Residual nets: a stage stream's channel is gated at
each module layer's output before the shortcut addition (conv2, downsample; folded into their
BatchNorm), not at the stem (its ReLU output is also added, so a gate there would not fold
exactly); see :func:`fold_kind`. Used by both P1 drivers: the floor-greedy one
(:mod:`pam_explorer.prune.vib`) and the published schedule (:mod:`pam_explorer.prune.schedule`).
"""
from __future__ import annotations

import torch
from torch import nn

from pam_explorer.merge.merged_net import MergedNet
from pam_explorer.prune.base import GroupId, Scores

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

    def __init__(self, net: MergedNet, init_logvar: float = INIT_LOGVAR, init_std: float = 0.0,
                 generator: torch.Generator | None = None) -> None:
        """Gates with mu = 1 and log sigma^2 = ``init_logvar``, each plus N(0, init_std^2) noise
        (VIBNet: 0.01) drawn from ``generator``."""
        super().__init__()
        device = next(net.parameters()).device
        kinds = {m: fold_kind(net, m) for m in net.module_layers}
        self.positions: list[GroupId] = [(m, key) for m in net.module_layers for key in net.groups[m]
                                         if kinds[m] is not None and net.width(m, key) > 0]
        self.kinds = {p: kinds[p[0]] for p in self.positions}
        self.owner = {p: net.geometry.grouping_of(p[0]) for p in self.positions}  # its neuron layer
        geo = net.geometry
        # positions per neuron of a conv output (VIBNet's H x W factor of a conv layer's KL), 1 for fc
        self.hw = {p: (lambda lg: lg.conv_out_hw[0] * lg.conv_out_hw[1] if lg.kind == "conv" else 1)(
            geo.layers[geo.layer_names.index(p[0])]) for p in self.positions}

        def init(value: float, g: GroupId) -> nn.Parameter:
            x = torch.full((net.width(*g),), float(value))
            if init_std > 0:
                x = x + init_std * torch.randn(x.shape, generator=generator)
            return nn.Parameter(x.to(device))
        self.mu = nn.ParameterDict({_name(g): init(1.0, g) for g in self.positions})
        self.logvar = nn.ParameterDict({_name(g): init(init_logvar, g) for g in self.positions})
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

    def kl(self, task: str, hw_weighting: bool = False) -> torch.Tensor:
        """Sum of the KL terms over the gated neurons of ``task``'s subgraph (a scalar); with
        ``hw_weighting`` a conv neuron's term counts once per output position (H x W of its
        conv output, as VIBNet weighs a conv layer's KL)."""
        terms = [kl_divergence(*self.params(g)).sum() * (self.hw[g] if hw_weighting else 1)
                 for g in self.positions if task in g[1].split("+")]
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


__all__ = ["VIBGates", "kl_divergence", "log_alpha", "fold_gates", "fold_kind", "INIT_LOGVAR"]
