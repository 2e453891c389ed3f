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

Residual nets (model kind "residual"): the grouping gives every neuron layer of
:func:`pam_explorer.graph.residual.residual_geometry` (inner convs, stage streams), all networks
have the same blocks, and the weights are copied by :mod:`pam_explorer.merge.residual`.
"""
from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from pam_explorer.core.errors import StructureError
from pam_explorer.core.geometry import NetGeometry, check_widths
from pam_explorer.core.subsets import connected, parse_key, subset_key, subset_masks
from pam_explorer.graph.build import common_layers, is_residual, layer_widths, net_geometry
from pam_explorer.merge.merged_net import MergedNet
from pam_explorer.merge.residual import build_residual
from pam_explorer.merge.weights import build_group, build_head
from pam_explorer.zoo.chain import ChainNet

GroupIds = dict[str, tuple[int, ...]]  # "+"-joined key -> sorted global neuron ids
Grouping = dict[str, dict[tuple[str, ...], tuple[int, ...]]]  # layer -> task subset -> global ids


# --------------------------------------------------------------------------- groupings
def exclusive_grouping(nets: Sequence[nn.Module], tasks: Sequence[str]) -> Grouping:
    """Every neuron in the group of its origin task (B1 as one net; PAM at alpha = inf-like)."""
    out = {}
    for layer, widths in layer_widths(nets).items():
        starts = [sum(widths[:t]) for t in range(len(widths))]
        out[layer] = {(task,): tuple(range(starts[t], starts[t] + widths[t]))
                      for t, task in enumerate(tasks) if widths[t] > 0}  # 0: net t lacks the layer
    return out


def _common(nets: Sequence[nn.Module]) -> list[str]:
    """Layers every network has: chain nets' first N_min; every neuron layer of residual nets."""
    return list(layer_widths(nets)) if is_residual(nets) else common_layers(nets)


def takeover_grouping(nets: Sequence[nn.Module], tasks: Sequence[str]) -> Grouping:
    """The layers after the common ones (paper step 3): each network's neurons exclusive to it."""
    common = set(_common(nets))
    return {layer: g for layer, g in exclusive_grouping(nets, tasks).items() if layer not in common}


def complete_grouping(nets: Sequence[nn.Module], tasks: Sequence[str],
                      grouping: Mapping[str, Any]) -> dict[str, Any]:
    """``grouping`` (of the common layers, or more) plus the takeover of every layer it omits
    after the common ones, e.g. before :func:`pam_explorer.cost.analytic.predicted_costs`."""
    return {**takeover_grouping(nets, tasks), **dict(grouping)}


def shared_grouping(nets: Sequence[nn.Module], tasks: Sequence[str]) -> Grouping:
    """Every neuron of every net of a common layer in the all-task group; later layers taken over."""
    widths = layer_widths(nets)
    return {**{layer: {tuple(tasks): tuple(range(sum(widths[layer])))} for layer in _common(nets)},
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
    dropped = set(getattr(entry, "dropped", ()))  # left out of the merged net (both_picked="drop")
    if any(not 0 <= i < total or i in owner for i in dropped):
        raise StructureError(f"layer {layer!r}: dropped neuron ids must be in [0, {total}) and in no group")
    lost = sorted(set(range(total)) - set(owner) - dropped)
    if lost:
        raise StructureError(f"layer {layer!r}: neuron id(s) {lost[:10]}{'...' if len(lost) > 10 else ''} "
                             f"are in no group; every id in [0, {total}) must be in exactly one group")
    return out


# --------------------------------------------------------------------------- merge
def merge_networks(nets: Sequence[nn.Module], tasks: Sequence[str], grouping: Mapping[str, Any]) -> MergedNet:
    """Merge single-task networks (one per task, in task order) by ``grouping`` into a MergedNet.

    grouping: {layer: LayerGroups-like object or {task subset: global neuron ids}}; it must give
    every common layer, and layers after those that it omits are taken over (see the module
    docstring). Raises StructureError for a malformed grouping (naming layer and group), for networks
    that cannot be merged, for a group with neurons but no non-empty input group, a task whose
    head reads no non-empty group, or a group naming a task whose network ends before its layer.
    The result is on network 0's device, in network 0's train/eval mode.
    """
    nets = list(nets)
    geo = net_geometry(nets, tasks)
    tasks = geo.tasks
    widths = layer_widths(nets)
    groups = normalize_grouping(complete_grouping(nets, tasks, grouping), tasks, widths)
    sizes = {layer: {k: len(v) for k, v in g.items()} for layer, g in groups.items()}
    check_widths(geo, sizes)
    if geo.kind == "residual":
        return build_residual(nets, geo, groups, widths)
    return _build_chain(nets, geo, groups, widths)


def _build_chain(nets: Sequence[ChainNet], geo: NetGeometry, groups: Mapping[str, GroupIds],
                 widths: Mapping[str, Sequence[int]]) -> MergedNet:
    """The merged chain net of normalised, checked ``groups`` (see :func:`merge_networks`)."""
    tasks = geo.tasks
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
                                                 if connected(masks[k], masks[key]) for p in ps]
            n_in = lg.in_factor * (geo.in_channels if in_prov is None else len(in_prov))
            modules[lg.name][key] = build_group(lg, blocks, prov[lg.name][key], in_prov, n_in)
        prev = lg.name
    heads = {}
    for t, task in enumerate(tasks):
        in_prov = [p for k, ps in prov[geo.head_layer(task)].items() if masks[k] >> t & 1 for p in ps]
        heads[task] = build_head(geo, t, nets[t].head, in_prov)
    merged = MergedNet(geo, modules, heads, prov)
    p = next(nets[0].parameters())
    return merged.to(device=p.device).train(nets[0].training)


def from_single(net: nn.Module, task: str) -> MergedNet:
    """K = 1: every neuron of ``net`` in the group (task,) (the B1 form)."""
    return merge_networks([net], [task], exclusive_grouping([net], [task]))


def fully_shared(nets: Sequence[nn.Module], tasks: Sequence[str]) -> MergedNet:
    """Every neuron of every net in the all-task group (the B2/MTZ form); layers past the
    shallowest network's are taken over."""
    return merge_networks(nets, tasks, shared_grouping(nets, tasks))


__all__ = ["Grouping", "GroupIds", "exclusive_grouping", "takeover_grouping", "complete_grouping",
           "shared_grouping", "normalize_grouping", "merge_networks", "from_single", "fully_shared"]
