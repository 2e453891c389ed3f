"""Baseline B2: Multi-Task Zipping (He, Zhou, Thiele, NeurIPS 2018), written from the paper's idea.

Two single-task chain networks are zipped layer by layer, bottom up, into one fully shared trunk
with one head per task. For layer l (the layers below already zipped):

1. Input Hessians H_t = E[x x^T] of the layer's input (conv: over batch, output positions and
   kernel positions of the im2col columns, one C_in x C_in matrix shared by every kernel
   position; fc after conv: the flattened C*H*W features), plus a ridge eps * mean(diag(H)) * I
   so the inverses exist (dead ReLU inputs and zero padding make H singular; eps is relative, so
   it does not depend on the activation scale; default 1e-3).
2. H^ = (H_A^-1 + H_B^-1)^-1, computed as H_A (H_A + H_B)^-1 H_B (one solve, no explicit
   inverse). The cost of zipping neuron i of A with neuron j of B is
   dE = 1/2 (w_A,i - w_B,j)^T H^ (w_A,i - w_B,j), summed over kernel positions for a conv.
   It is the minimum over w of 1/2 (w - w_A)^T H_A (w - w_A) + 1/2 (w - w_B)^T H_B (w - w_B),
   attained at the merged weight (H_A + H_B)^-1 (H_A w_A + H_B w_B) (per kernel position).
3. Pairs are taken greedily, cheapest first among still unpaired neurons, until every neuron of the
   narrower network is paired; the wider network's extra neurons join the shared layer unpaired.
   Biases of a pair are averaged (the Hessian models the weights only; the bias is a weight on
   a constant input whose second moment both tasks share, so its merge is the plain mean).
   Per-neuron ops of a pair (BatchNorm affine parameters and running statistics) are averaged
   too: exact when the two neurons agree, and a cheap start that the retraining then corrects.
4. The next layer (or the heads) of each task has its input columns re-indexed to the zipped
   order (a conv channel feeding an fc layer is H*W consecutive features); a short joint
   retraining (``retrain_batches`` minibatches, task-averaged gradients on shared weights) follows.

The partially zipped network is a :class:`MergedNet`: layers <= l hold only the "A+B" group,
layers > l the exclusive groups "A" and "B" with their original weights, so "A" at layer l + 1
reads the shared trunk (connectivity tau2 ⊆ tau1) and finetune's loss machinery applies as is.

Hessian source (``MTZConfig.hessian``). "zipped" (default, the paper's Algorithm: the Hessians of
the current, partially zipped networks): the layer-l input of each task is the shared trunk's
output, i.e. the input the zipped layer will actually see. All tasks here see the same pictures,
so H_A == H_B: H^ = H / 2, the merged weight is the mean, and the pair cost is still
Hessian-weighted. "original": each original network's own layer-l input, with its columns placed
at the merged positions of its neurons (columns of the other net's extra neurons get only the
ridge); this keeps H_A != H_B but measures inputs that the zipped layer no longer receives.

Only K = 2 tasks are supported (StructureError otherwise): zipping a third network into a trunk would
need a Hessian of a merged pair, which the paper does not define. Residual networks are zipped by
:mod:`.mtz_residual` (one pairing per neuron layer: a stage's shortcut-tied stream or a block's
inner conv); the formulas, settings and retraining both zippers share live in :mod:`.mtz_core`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from pam_explorer.baselines.mtz_core import (
    MTZConfig,
    MTZResult,
    Progress,
    Split,
    conv_hessian,
    conv_moment,
    conv_padding,
    core_weight,
    greedy_pairs,
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
from pam_explorer.baselines.mtz_residual import zip_residual
from pam_explorer.core.device import resolve_device
from pam_explorer.core.errors import StructureError
from pam_explorer.core.geometry import LayerGeometry, NetGeometry
from pam_explorer.core.subsets import check_tasks, subset_key
from pam_explorer.graph.activations import run_hooked
from pam_explorer.graph.build import chain_geometry, is_residual
from pam_explorer.merge.build import exclusive_grouping, merge_networks
from pam_explorer.merge.group_modules import make_core, make_group
from pam_explorer.merge.merged_net import MergedNet
from pam_explorer.train.finetune import evaluate
from pam_explorer.zoo.chain import ChainNet


# --------------------------------------------------------------------------- Hessians
@torch.no_grad()
def _input_hessian(model: nn.Module, core: nn.Module, lg: LayerGeometry, images: torch.Tensor,
                   forward: Callable[[torch.Tensor], object] | None = None,
                   batch_size: int = 256) -> torch.Tensor:
    """E[x x^T] (float64) of ``core``'s input while ``forward`` (default ``model``) runs on
    ``images`` in batches, with ``model`` in eval mode (no BatchNorm statistic changes)."""
    acc: dict[str, object] = {"sum": 0.0, "count": 0}

    def hook(_module: nn.Module, args: tuple) -> None:
        x = args[0].detach().double()
        if lg.kind == "conv":
            total, count = conv_moment(x, lg.kernel, lg.stride, conv_padding(lg), lg.dilation)
        else:
            total, count = x.T @ x, x.shape[0]
        acc["sum"], acc["count"] = acc["sum"] + total, acc["count"] + count

    run_hooked(model, [core.register_forward_pre_hook(hook)], images, batch_size, forward)
    return acc["sum"] / acc["count"]


def _hessians(cur: MergedNet, nets: Sequence[ChainNet], lg: LayerGeometry, images: torch.Tensor,
              prev_maps: Sequence[torch.Tensor] | None, prev_width: int,
              config: MTZConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridged input Hessians (H_A, H_B) of layer ``lg`` in the merged input column order."""
    device = next(cur.parameters()).device
    if config.hessian == "zipped":  # "A" and "B" read the same trunk (or image): one Hessian
        task = cur.tasks[0]
        h = _input_hessian(cur, cur.groups[lg.name][task][0], lg, images, lambda x: cur(x, [task]))
        return ridge(h, config.eps), ridge(h, config.eps)
    out = []
    for t, net in enumerate(nets):
        h = _input_hessian(net, net.blocks[lg.name][0], lg, images)
        h = scatter_hessian(h.to(device), None if prev_maps is None else prev_maps[t].to(device), prev_width,
                     1 if lg.kind == "conv" else lg.in_factor)
        out.append(ridge(h, config.eps))
    return out[0], out[1]


# --------------------------------------------------------------------------- surgery
def _zip_group(lg: LayerGeometry, ga: nn.Sequential, gb: nn.Sequential, h_a: torch.Tensor,
               h_b: torch.Tensor) -> tuple[nn.Sequential, dict]:
    """Zip groups "A" and "B" (reading the same inputs) of one layer into one group.

    Returns the group and {"pairs", "mean_cost", "maps": (A's (n_A,), B's (n_B,) zipped
    positions), "prov"}; the zipped order is the pairs by A's index, then the extras."""
    wa, wb = (neuron_weights(g[0].weight.detach().double()) for g in (ga, gb))
    pz = pairing(pair_costs(wa, wb, hessian_hat(h_a, h_b)))
    ia, jb, extra, wide = pz.ia.to(wa.device), pz.jb.to(wa.device), pz.extra.to(wa.device), pz.wide
    merged = merge_weights(wa[ia], wb[jb], h_a, h_b)
    weight = core_weight(pair_or_own(wa, wb, ia, jb, extra, wide, merged), ga[0].weight)
    group = make_group(lg, ga[0].weight.shape[1], int(weight.shape[0])).to(ga[0].weight.device)
    with torch.no_grad():
        group[0].weight.copy_(weight)
        if group[0].bias is not None:
            group[0].bias.copy_(pair_or_own(ga[0].bias, gb[0].bias, ia, jb, extra, wide))
        for k in range(1, len(group)):  # BatchNorm: averaged parameters and running statistics
            sa, sb = ga[k].state_dict(), gb[k].state_dict()
            group[k].load_state_dict({n: pair_or_own(v, sb[n], ia, jb, extra, wide) for n, v in sa.items()})
    info = {"pairs": list(pz.pairs), "mean_cost": pz.mean_cost, "maps": list(pz.maps), "prov": list(pz.prov)}
    return group.train(ga.training), info


def _reindex(module: nn.Module, pos: torch.Tensor, width: int, factor: int,
             lg: LayerGeometry | None, head_bias: bool = True) -> nn.Module:
    """A group (Sequential) or head (Linear) whose input neuron i moves to column ``pos[i]`` of
    ``width`` input neurons (``factor`` consecutive features each); new columns are zero."""
    core = module[0] if isinstance(module, nn.Sequential) else module
    w = core.weight
    if lg is None:  # a head
        new = make_core("fc", width * factor, w.shape[0], bias=head_bias, device=w.device, dtype=w.dtype)
    else:
        new = make_core(lg.kind, width * factor, w.shape[0], lg.kernel, lg.stride, lg.padding,
                        lg.dilation, lg.bias, w.device, w.dtype)
    cols = (pos.to(w.device)[:, None] * factor + torch.arange(factor, device=w.device)).flatten()
    with torch.no_grad():
        new.weight[:, cols] = w
        if core.bias is not None:
            new.bias.copy_(core.bias)
    if isinstance(module, nn.Sequential):
        return nn.Sequential(new, *list(module)[1:]).train(module.training)
    return new.train(module.training)


def _rebuild(cur: MergedNet, geo: NetGeometry, index: int, group: nn.Sequential, info: dict) -> MergedNet:
    """``cur`` with layer ``index`` replaced by the zipped group and its readers re-indexed."""
    names, tasks = geo.layer_names, geo.tasks
    groups = {n: dict(cur.groups[n].items()) for n in names}
    prov = cur.provenance_map()
    groups[names[index]], prov[names[index]] = {subset_key(tasks): group}, {subset_key(tasks): info["prov"]}
    width = len(info["prov"])
    heads = dict(cur.heads.items())
    if index + 1 < len(names):
        nxt = geo.layers[index + 1]
        for t, task in enumerate(tasks):
            groups[nxt.name][task] = _reindex(groups[nxt.name][task], info["maps"][t], width,
                                              nxt.in_factor, nxt)
    else:
        for t, task in enumerate(tasks):
            heads[task] = _reindex(heads[task], info["maps"][t], width, geo.head_in_factor, None,
                                   geo.head_bias)
    return MergedNet(geo, groups, heads, prov).train(cur.training)


# --------------------------------------------------------------------------- driver
def zip_networks(nets: Sequence[ChainNet], tasks: Sequence[str], train: Split, val: Split,
                 config: MTZConfig = MTZConfig(), progress: Progress | None = None) -> MTZResult:
    """Zip two single-task networks (one per task, in task order) into one shared trunk.

    train/val: (images (N, C, H, W), {task: (N, L_t) float {0, 1}}). The input networks are not
    modified. The result is on ``config.device``, in eval mode; ``progress`` gets each layer's
    log record (without the pairs) after its retraining. StructureError unless exactly 2 tasks.
    """
    tasks = check_tasks(tasks)
    if len(tasks) != 2 or len(nets) != 2:
        raise StructureError(f"MTZ zips exactly 2 networks for 2 tasks; got {len(nets)} networks for "
                             f"tasks {list(tasks)} (more tasks are not supported)")
    if is_residual(nets):
        return zip_residual(nets, tasks, train, val, config, progress)
    geo = chain_geometry(nets, tasks)
    if len(set(geo.head_layers)) > 1:
        raise StructureError("MTZ zips networks of equal depth only; these end at layers "
                             f"{dict(zip(tasks, geo.head_layers))} (PAM merges them by taking over the "
                             "deeper layers)")
    device = resolve_device(config.device)
    cur = merge_networks(nets, tasks, exclusive_grouping(nets, tasks)).to(device).eval()
    images = train[0][:config.n_samples]
    log: list[dict] = []
    maps, width = None, geo.in_channels
    for index, lg in enumerate(geo.layers):
        h_a, h_b = _hessians(cur, nets, lg, images, maps, width, config)
        ga, gb = (cur.groups[lg.name][t] for t in tasks)
        group, info = _zip_group(lg, ga, gb, h_a, h_b)
        cur = _rebuild(cur, geo, index, group, info)
        loss = retrain(cur, train, config, config.seed + index)
        maps, width = info["maps"], len(info["prov"])
        record = {"layer": lg.name, "width": width, "pairs": info["pairs"], "mean_cost": info["mean_cost"],
                  "retrain_loss": loss, "val_accuracy": evaluate(cur, val[0], val[1])}
        log.append(record)
        if progress is not None:
            progress({k: v for k, v in record.items() if k != "pairs"})
    return MTZResult(cur.eval(), log)


__all__ = ["MTZConfig", "MTZResult", "zip_networks", "conv_hessian", "conv_moment", "ridge",
           "hessian_hat", "pair_costs", "merge_weights", "greedy_pairs", "neuron_weights"]
