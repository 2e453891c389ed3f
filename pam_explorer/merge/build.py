"""Grouping + single-task weights -> :class:`~pam_explorer.merge.merged_net.MergedNet` (PAM Sec. 5.1, 5.4).

Neuron ids of a layer are global: network 0's C_0 neurons are 0..C_0-1, network 1's follow, and
so on in task order (a network without the layer has 0 there). A grouping gives, per layer,
{task subset: neuron ids}; every id must be in exactly one group. Group tau2 at layer i reads the
groups tau1 ⊇ tau2 of layer i-1 (the image for layer 0); the head of task t reads every group of
its head layer (its own network's last layer) containing t.

Weights: a connection that existed in an original network keeps its weight (out neuron and in
neuron from the same origin network t: W_t[local_out, local_in]; each input neuron of an fc layer
reading a conv layer is H*W consecutive features, channel-major); a new connection (neurons of
different origins) starts at zero. Biases and per-neuron ops (BatchNorm parameters and running
statistics) follow their neuron.

Depth (PAM Sec. 5.1 step 3): the networks must be of one family: each network's layers are the
first layers of the deepest one, with the same names and kinds (widths may differ per network).
The common layers 1..N_min are regrouped by the grouping. The layers N_min+1.. are *taken over*:
unless the grouping gives them, each network's own neurons there form its exclusive group (key ==
that one task) with its original weights, for K >= 3 too (with depths d1 < d2 = d3 the layers
d1+1..d2 of tasks 2 and 3 are not regrouped; a grouping may still give them explicitly, with keys
that name only tasks whose network has the layer). Task t's head reads its layer N_t with its
original weights; no group after layer N_t contains t (``NetGeometry.head_layers``).
"""
from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from pam_explorer.core.errors import StructureError
from pam_explorer.core.geometry import LayerGeometry, NetGeometry, check_structure
from pam_explorer.core.subsets import parse_key, subset_key, subset_masks
from pam_explorer.graph.build import chain_geometry, common_layers, layer_widths
from pam_explorer.merge.group_modules import make_core, make_group
from pam_explorer.merge.merged_net import MergedNet
from pam_explorer.zoo.chain import ChainNet

GroupIds = dict[str, tuple[int, ...]]  # "+"-joined key -> sorted global neuron ids
Grouping = dict[str, dict[tuple[str, ...], tuple[int, ...]]]  # layer -> task subset -> global ids


# --------------------------------------------------------------------------- groupings
def exclusive_grouping(nets: Sequence[ChainNet], tasks: Sequence[str]) -> Grouping:
    """Every neuron in the group of its origin task (B1 as one net; PAM at alpha = inf-like)."""
    out = {}
    for layer, widths in layer_widths(nets).items():
        starts = [sum(widths[:t]) for t in range(len(widths))]
        out[layer] = {(task,): tuple(range(starts[t], starts[t] + widths[t]))
                      for t, task in enumerate(tasks) if layer in nets[t].blocks}
    return out


def takeover_grouping(nets: Sequence[ChainNet], tasks: Sequence[str]) -> Grouping:
    """The layers after the common ones (paper step 3): each network's neurons exclusive to it."""
    common = set(common_layers(nets))
    return {layer: g for layer, g in exclusive_grouping(nets, tasks).items() if layer not in common}


def complete_grouping(nets: Sequence[ChainNet], tasks: Sequence[str],
                      grouping: Mapping[str, Any]) -> dict[str, Any]:
    """``grouping`` (of the common layers, or more) plus the takeover of every layer it omits
    after the common ones, e.g. before :func:`pam_explorer.cost.analytic.predicted_costs`."""
    return {**takeover_grouping(nets, tasks), **dict(grouping)}


def shared_grouping(nets: Sequence[ChainNet], tasks: Sequence[str]) -> Grouping:
    """Every neuron of every net of a common layer in the all-task group; later layers taken over."""
    widths = layer_widths(nets)
    return {**{layer: {tuple(tasks): tuple(range(sum(widths[layer])))} for layer in common_layers(nets)},
            **takeover_grouping(nets, tasks)}


def normalize_grouping(grouping: Mapping[str, Any], tasks: Sequence[str],
                       widths: Mapping[str, Sequence[int]]) -> dict[str, GroupIds]:
    """Validate a grouping and return {layer: {"+"-joined key: sorted ids}} in canonical key order.

    Each layer's entry is an object with a ``.groups`` attribute (e.g. regroup's LayerGroups) or a
    plain mapping {key: ids}; keys are task-name tuples in task order (or "+"-joined strings).
    """
    missing = [layer for layer in widths if layer not in grouping]
    extra = [layer for layer in grouping if layer not in widths]
    if missing or extra:
        raise StructureError(f"grouping layers must be {list(widths)}; missing {missing}, unknown {extra}")
    order = list(subset_masks(tasks))
    out = {}
    for layer, per_net in widths.items():
        groups = _layer_groups(layer, grouping[layer], tasks, sum(per_net))
        out[layer] = {k: groups[k] for k in order if k in groups}
    return out


def _layer_groups(layer: str, entry: Any, tasks: Sequence[str], total: int) -> GroupIds:
    raw = getattr(entry, "groups", entry)
    if not isinstance(raw, Mapping):
        raise StructureError(f"layer {layer!r}: grouping must be a mapping task subset -> neuron ids, "
                             f"got {type(raw).__name__}")
    declared = getattr(entry, "width", None)
    if declared is not None and declared != total:
        raise StructureError(f"layer {layer!r}: grouping says width {declared}, the networks have {total} "
                             "neurons")
    owner: dict[int, str] = {}
    out: GroupIds = {}
    for key, ids in raw.items():
        name = subset_key(parse_key(key, tasks, where=f"layer {layer!r}"))
        if name in out:
            raise StructureError(f"layer {layer!r}: group {name!r} is given twice")
        try:
            ids_t = tuple(sorted(operator.index(i) for i in ids))
        except TypeError as exc:
            raise StructureError(f"layer {layer!r}, group {name!r}: neuron ids must be integers "
                                 f"({exc})") from exc
        for i in ids_t:
            if not 0 <= i < total:
                raise StructureError(f"layer {layer!r}, group {name!r}: neuron id {i} is outside [0, "
                                     f"{total})")
            if i in owner:
                where = "twice in that group" if owner[i] == name else f"also in group {owner[i]!r}"
                raise StructureError(f"layer {layer!r}, group {name!r}: neuron id {i} is {where}")
            owner[i] = name
        out[name] = ids_t
    lost = sorted(set(range(total)) - set(owner))
    if lost:
        raise StructureError(f"layer {layer!r}: neuron id(s) {lost[:10]}{'...' if len(lost) > 10 else ''} "
                             f"are in no group; every id in [0, {total}) must be in exactly one group")
    return out


# --------------------------------------------------------------------------- weights
Prov = Sequence[tuple[int, int]]


def _copy_existing(dst: torch.Tensor, srcs: Sequence[torch.Tensor | None], out_prov: Prov,
                   in_prov: Prov | None, factor: int) -> None:
    """dst[r, cols of input neuron c] = W_t[j, cols of k] where out neuron r = (t, j) and input
    neuron c = (t, k) have the same origin t; other entries keep their value (zero).

    dst/srcs: (out, in * factor[, kh, kw]). in_prov None means the shared image input: every
    origin reads every input channel with its own weights. srcs[t] is None where network t does
    not have the layer (then no out neuron has origin t).
    """
    for t, src in enumerate(srcs):
        rows = [r for r, (o, _) in enumerate(out_prov) if o == t]
        if not rows or src is None:
            continue
        j = torch.tensor([out_prov[r][1] for r in rows])
        if in_prov is None:
            cols = k = torch.arange(src.shape[1] // factor)
        else:
            pos = [c for c, (o, _) in enumerate(in_prov) if o == t]
            cols = torch.tensor(pos, dtype=torch.long)
            k = torch.tensor([in_prov[c][1] for c in pos], dtype=torch.long)
        if not cols.numel():
            continue
        step = torch.arange(factor)
        cols_x, k_x = (cols[:, None] * factor + step).flatten(), (k[:, None] * factor + step).flatten()
        dst[torch.tensor(rows)[:, None], cols_x[None, :]] = src[j[:, None], k_x[None, :]]


def _copy_per_neuron(dst: dict[str, torch.Tensor],
                     srcs: Sequence[Mapping[str, torch.Tensor] | None], out_prov: Prov) -> None:
    """Per-neuron tensors (bias, BN weight/bias/running stats) follow their origin neuron;
    scalar buffers (BN num_batches_tracked) take the max over the origins present (an empty
    group: the first network that has the layer; srcs[t] is None where t does not)."""
    present = [t for t, s in enumerate(srcs) if s is not None]
    origins = sorted({t for t, _ in out_prov}) or present[:1]
    for key, value in dst.items():
        if value.dim() == 0:
            value.copy_(max(srcs[t][key] for t in origins))
            continue
        for t in origins:
            rows = [r for r, (o, _) in enumerate(out_prov) if o == t]
            if rows:
                value[torch.tensor(rows)] = srcs[t][key][torch.tensor([out_prov[r][1] for r in rows])]


def _build_group(lg: LayerGeometry, blocks: Sequence[nn.Sequential | None], out_prov: Prov,
                 in_prov: Prov | None, n_in: int) -> nn.Sequential:
    """The group module of neurons ``out_prov`` reading inputs ``in_prov`` (None: the image);
    blocks[t] is network t's block of this layer, None if network t is shallower."""
    group = make_group(lg, n_in, len(out_prov))
    with torch.no_grad():
        core = group[0]
        weights = [b[0].weight.detach().cpu() if b is not None else None for b in blocks]
        _copy_existing(core.weight, weights, out_prov, in_prov, lg.in_factor)
        if core.bias is not None:
            _copy_per_neuron({"bias": core.bias}, [{"bias": b[0].bias.detach().cpu()} if b is not None
                                                   else None for b in blocks], out_prov)
        for f_idx, follower in enumerate(list(group)[1:], start=1):
            state = follower.state_dict(keep_vars=True)
            if state:
                src = [{k: v.detach().cpu() for k, v in b[f_idx].state_dict().items()} if b is not None
                       else None for b in blocks]
                _copy_per_neuron({k: v.data for k, v in state.items()}, src, out_prov)
    return group


def _build_head(geo: NetGeometry, t: int, head: nn.Linear, in_prov: Prov) -> nn.Linear:
    """Head of task t reading the neurons ``in_prov`` of its head layer: only task t's neurons
    get weights (its original head's)."""
    factor = geo.head_factor(geo.tasks[t])
    new = make_core("fc", len(in_prov) * factor, geo.head_outputs[t], bias=geo.head_bias)
    out_prov = [(t, j) for j in range(geo.head_outputs[t])]
    # every output row has origin t, so only srcs[t] is ever read
    srcs = [head.weight.detach().cpu()] * len(geo.tasks)
    with torch.no_grad():
        _copy_existing(new.weight, srcs, out_prov, in_prov, factor)
        if new.bias is not None:
            new.bias.copy_(head.bias.detach().cpu())
    return new


# --------------------------------------------------------------------------- merge
def merge_networks(nets: Sequence[ChainNet], tasks: Sequence[str], grouping: Mapping[str, Any]) -> MergedNet:
    """Merge single-task networks (one per task, in task order) by ``grouping`` into a MergedNet.

    grouping: {layer: LayerGroups-like object or {task subset: global neuron ids}}; it must give
    every common layer, and layers after those that it omits are taken over (see the module
    docstring). Raises StructureError for a malformed grouping (naming layer and group), for networks
    that cannot be merged, for a group with neurons but no non-empty input group, a task whose
    head reads no non-empty group, or a group naming a task whose network ends before its layer.
    The result is on network 0's device, in network 0's train/eval mode.
    """
    nets = list(nets)
    geo = chain_geometry(nets, tasks)
    tasks = geo.tasks
    widths = layer_widths(nets)
    groups = normalize_grouping(complete_grouping(nets, tasks, grouping), tasks, widths)
    sizes = {layer: {k: len(v) for k, v in g.items()} for layer, g in groups.items()}
    check_structure(tasks, geo.layer_names, sizes, head_layers=geo.head_layers)
    masks = subset_masks(tasks)
    prov: dict[str, dict[str, tuple[tuple[int, int], ...]]] = {}
    modules: dict[str, dict[str, nn.Sequential]] = {}
    prev: str | None = None
    for lg in geo.layers:
        origin = [(t, j) for t, w in enumerate(widths[lg.name]) for j in range(w)]
        prov[lg.name] = {k: tuple(origin[i] for i in ids) for k, ids in groups[lg.name].items()}
        blocks = [net.blocks[lg.name] if lg.name in net.blocks else None for net in nets]
        modules[lg.name] = {}
        for key in groups[lg.name]:
            in_prov = None if prev is None else [p for k, ps in prov[prev].items()
                                                 if masks[k] & masks[key] == masks[key] for p in ps]
            n_in = lg.in_factor * (geo.in_channels if in_prov is None else len(in_prov))
            modules[lg.name][key] = _build_group(lg, blocks, prov[lg.name][key], in_prov, n_in)
        prev = lg.name
    heads = {}
    for t, task in enumerate(tasks):
        in_prov = [p for k, ps in prov[geo.head_layer(task)].items() if masks[k] >> t & 1 for p in ps]
        heads[task] = _build_head(geo, t, nets[t].head, in_prov)
    merged = MergedNet(geo, modules, heads, prov)
    p = next(nets[0].parameters())
    return merged.to(device=p.device).train(nets[0].training)


def from_single(net: ChainNet, task: str) -> MergedNet:
    """K = 1: every neuron of ``net`` in the group (task,) (the B1 form)."""
    return merge_networks([net], [task], exclusive_grouping([net], [task]))


def fully_shared(nets: Sequence[ChainNet], tasks: Sequence[str]) -> MergedNet:
    """Every neuron of every net in the all-task group (the B2/MTZ form); layers past the
    shallowest network's are taken over."""
    return merge_networks(nets, tasks, shared_grouping(nets, tasks))


__all__ = ["Grouping", "GroupIds", "exclusive_grouping", "takeover_grouping", "complete_grouping",
           "shared_grouping", "normalize_grouping", "merge_networks", "from_single", "fully_shared"]
