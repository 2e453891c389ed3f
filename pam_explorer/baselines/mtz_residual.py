"""Baseline B2 on residual networks: MTZ zipping of two BasicBlock ResNets, one neuron layer at a time.

A ResNet's neuron layers (:mod:`pam_explorer.graph.residual`) are each block's inner conv1 and one
*stream* per stage: the stem or the downsample, every conv2 and every block output, tied by the
shortcut additions. A zipped channel of a stream must be the same channel in every one of those
module layers, so MTZ's pairing (He, Zhou, Thiele, NeurIPS 2018; formulas in :mod:`.mtz`) is
chosen once per neuron layer and applied to every module layer that writes it (output rows, BN)
and to the input columns of every module layer that reads it (each block's conv1, the next
downsample, conv2 reading conv1, the heads).

Order and costs. Neuron layers are paired bottom up, in the order of their first module layer. A
neuron layer's pair cost is the MTZ cost dE summed over its module layers whose input is already
paired (or is the image): for an inner conv1 that is its only module layer; for a stream, the stem
or the downsample plus the conv2 of every block whose conv1 is already paired (from stage 2 on,
the first block's). The later conv2s of a stage read inner conv1s that read the stream itself, so
their input columns cannot be aligned before the stream is paired (a cycle that chain nets do not
have); they are zipped with the stream's pairing once their inputs are paired.

Hessians. Each module layer's input Hessian is the *original* network's (MTZConfig.hessian
"original"; for residual nets "zipped" means the same): a partially zipped ResNet, with a shared
stream read by not yet zipped inner layers, is not a valid merged network (a shared group may read
shared groups only), so the Hessians of the partially zipped net that chain MTZ uses do not exist
here. Columns of the other net's extra channels get only the ridge.

Retraining: ``retrain_batches`` joint minibatches once, after the whole zip (the chain zipper
retrains that many after every layer, about n_layers times as much in all; here there is no
valid net in between, and a ResNet-18's 12 neuron layers would make it 2,400 minibatches). The
experiment then finetunes B2 for as many epochs as PAM, which is where both recover.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pam_explorer.baselines.mtz_core import (
    MTZConfig,
    MTZResult,
    Pairing,
    Progress,
    Split,
    conv_moment,
    conv_padding,
    core_weight,
    hessian_hat,
    merge_weights,
    neuron_weights,
    pair_costs,
    pair_or_own,
    pairing,
    retrain,
    ridge,
    scatter_hessian,
)
from pam_explorer.core.device import resolve_device
from pam_explorer.core.errors import StructureError
from pam_explorer.core.geometry import NetGeometry
from pam_explorer.core.subsets import subset_key
from pam_explorer.graph.activations import run_hooked
from pam_explorer.graph.residual import residual_geometry, residual_modules
from pam_explorer.merge.group_modules import make_core, make_group
from pam_explorer.merge.merged_net import MergedNet
from pam_explorer.train.finetune import evaluate
from pam_explorer.zoo.resnet import ResidualNet

Modules = dict[str, tuple[nn.Conv2d, list[nn.Module]]]  # module layer -> (core, per-neuron ops)


@torch.no_grad()
def input_hessians(net: ResidualNet, geo: NetGeometry, images: torch.Tensor,
                   batch_size: int = 16) -> dict[str, torch.Tensor]:
    """{module layer: E[v v^T] (C_in, C_in), float64 on the CPU} of every core conv's input over
    ``images`` (N, C, H, W) and every output and kernel position, with ``net`` in eval mode."""
    acc: dict[str, list] = {lg.name: [0.0, 0] for lg in geo.layers}
    handles, modules = [], residual_modules(net)
    for lg in geo.layers:
        def hook(_m: nn.Module, args: tuple, lg=lg) -> None:
            total, count = conv_moment(args[0].detach().double(), lg.kernel, lg.stride, conv_padding(lg),
                                       lg.dilation)
            acc[lg.name][0] += total.cpu()
            acc[lg.name][1] += count
        handles.append(modules[lg.name][0].register_forward_pre_hook(hook))
    run_hooked(net, handles, images, batch_size)
    return {name: total / count for name, (total, count) in acc.items()}


def _aligned(weight: torch.Tensor, pz: Pairing | None, t: int) -> torch.Tensor:
    """Net t's core weight (n_out, C_t, kh, kw) with its input columns at their zipped positions
    (zeros for the other net's extra channels); unchanged for the image input (pz None)."""
    if pz is None:
        return weight
    out = weight.new_zeros(weight.shape[0], pz.width, *weight.shape[2:])
    out[:, pz.maps[t]] = weight
    return out


class _Zipper:
    """The two nets' weights and input Hessians, and the pairings chosen so far."""

    def __init__(self, nets: Sequence[ResidualNet], geo: NetGeometry, images: torch.Tensor,
                 config: MTZConfig) -> None:
        self.geo, self.eps, self.lgs = geo, config.eps, {lg.name: lg for lg in geo.layers}
        self.modules: list[Modules] = [residual_modules(net) for net in nets]
        self.hessians = [input_hessians(net, geo, images) for net in nets]
        self.pairings: dict[str, Pairing] = {}

    def operands(self, layer: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(W_A, W_B) as (n_t, K, C) over the zipped input columns, and the ridged (H_A, H_B)."""
        source = self.geo.input_of(layer)
        if source is not None and source not in self.pairings:
            raise StructureError(f"MTZ: {layer!r} reads {source!r}, which is not zipped yet")
        pz = None if source is None else self.pairings[source]
        ws, hs = [], []
        for t, mods in enumerate(self.modules):
            ws.append(neuron_weights(_aligned(mods[layer][0].weight.detach().double().cpu(), pz, t)))
            h = self.hessians[t][layer]
            hs.append(ridge(h if pz is None else scatter_hessian(h, pz.maps[t], pz.width, 1), self.eps))
        return ws[0], ws[1], hs[0], hs[1]

    def pair(self, neuron_layer: str) -> tuple[Pairing, list[str]]:
        """Pair ``neuron_layer`` from the summed costs of its module layers whose input is paired."""
        ready = [m for m in self.geo.members(neuron_layer)
                 if self.geo.input_of(m) is None or self.geo.input_of(m) in self.pairings]
        if not ready:
            raise StructureError(f"MTZ: no module layer of {neuron_layer!r} reads a zipped layer")
        costs = 0
        for m in ready:
            wa, wb, h_a, h_b = self.operands(m)
            costs = costs + pair_costs(wa, wb, hessian_hat(h_a, h_b))
        self.pairings[neuron_layer] = pairing(costs)
        return self.pairings[neuron_layer], ready

    def group(self, layer: str) -> nn.Sequential:
        """The zipped module of ``layer`` (every input and output neuron layer paired)."""
        lg, pz = self.lgs[layer], self.pairings[self.geo.grouping_of(layer)]
        wa, wb, h_a, h_b = self.operands(layer)
        ia, jb, extra, wide = pz.ia, pz.jb, pz.extra, pz.wide
        merged = merge_weights(wa[ia], wb[jb], h_a, h_b)
        (core_a, ops_a), (core_b, ops_b) = (mods[layer] for mods in self.modules)
        group = make_group(lg, int(wa.shape[2]), pz.width)
        with torch.no_grad():
            rows = pair_or_own(wa, wb, ia, jb, extra, wide, merged)
            group[0].weight.copy_(core_weight(rows, group[0].weight))
            if group[0].bias is not None:
                group[0].bias.copy_(pair_or_own(core_a.bias.detach().cpu(), core_b.bias.detach().cpu(),
                                                ia, jb, extra, wide))
            for k in range(1, len(group)):  # BatchNorm: averaged parameters and running statistics
                sa, sb = ({n: v.detach().cpu() for n, v in ops[k - 1].state_dict().items()}
                          for ops in (ops_a, ops_b))
                group[k].load_state_dict({n: pair_or_own(v, sb[n], ia, jb, extra, wide)
                                          for n, v in sa.items()})
        return group

    def head(self, net: ResidualNet, t: int) -> nn.Linear:
        """Task t's head reading the zipped last stream (zeros for the other net's extra channels)."""
        task = self.geo.tasks[t]
        pz = self.pairings[self.geo.grouping_of(self.geo.head_layer(task))]
        factor = self.geo.head_factor(task)
        new = make_core("fc", pz.width * factor, self.geo.head_outputs[t], bias=self.geo.head_bias)
        cols = (pz.maps[t][:, None] * factor + torch.arange(factor)).flatten()
        with torch.no_grad():
            new.weight.zero_()
            new.weight[:, cols] = net.fc.weight.detach().cpu()
            if new.bias is not None:
                new.bias.copy_(net.fc.bias.detach().cpu())
        return new


def zip_residual(nets: Sequence[ResidualNet], tasks: Sequence[str], train: Split, val: Split,
                 config: MTZConfig = MTZConfig(), progress: Progress | None = None) -> MTZResult:
    """Zip two residual nets (one per task, in task order) into one shared trunk (module docstring).

    train/val: (images (N, C, H, W), {task: (N, L_t) float {0, 1}}); the first ``n_samples``
    training pictures give the Hessians. The input networks are not modified; the result is on
    ``config.device``, in eval mode. Log: one record per neuron layer {"layer", "width", "pairs",
    "mean_cost", "cost_from" (the module layers whose costs were summed)}, then {"layer":
    "retrain", "retrain_batches", "retrain_loss", "hessian": "original", "val_accuracy"};
    ``progress`` gets each neuron layer's record
    without the pairs.
    """
    if len(nets) != 2 or len(tasks) != 2:
        raise StructureError(f"MTZ zips exactly 2 networks for 2 tasks; got {len(nets)} networks for "
                             f"tasks {list(tasks)}")
    geo = residual_geometry(nets, tasks)
    zipper = _Zipper(nets, geo, train[0][:config.n_samples], config)
    log: list[dict] = []
    for neuron_layer in geo.neuron_layers:
        pz, ready = zipper.pair(neuron_layer)
        log.append({"layer": neuron_layer, "width": pz.width, "pairs": list(pz.pairs),
                    "mean_cost": pz.mean_cost, "cost_from": ready})
        if progress is not None:
            progress({k: v for k, v in log[-1].items() if k != "pairs"})
    shared = subset_key(geo.tasks)
    groups = {lg.name: {shared: zipper.group(lg.name)} for lg in geo.layers}
    heads = {task: zipper.head(net, t) for t, (task, net) in enumerate(zip(geo.tasks, nets))}
    prov = {nl: {shared: zipper.pairings[nl].prov} for nl in geo.neuron_layers}
    device = resolve_device(config.device)
    net = MergedNet(geo, groups, heads, prov).to(device).train(nets[0].training)
    loss = retrain(net, train, config, config.seed)
    log.append({"layer": "retrain", "retrain_batches": config.retrain_batches, "retrain_loss": loss,
                "hessian": "original", "val_accuracy": evaluate(net, val[0], val[1])})
    return MTZResult(net.eval(), log)


__all__ = ["zip_residual", "input_hessians"]
