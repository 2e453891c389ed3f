"""Grouping + single-task weights -> :class:`~pam_explorer.merged_net.MergedNet` (PAM Sec. 5.1, 5.4).

Neuron ids of a layer are global: network 0's C_0 neurons are 0..C_0-1, network 1's follow, and
so on in task order. A grouping gives, per layer, {task subset: neuron ids}; every id must be in
exactly one group. Group tau2 at layer i reads the groups tau1 ⊇ tau2 of layer i-1 (the image
for layer 0); the head of task t reads every last-layer group containing t.

Weights: a connection that existed in an original network keeps its weight (out neuron and in
neuron from the same origin network t: W_t[local_out, local_in]; each input neuron of an fc layer
reading a conv layer is H*W consecutive features, channel-major); a new connection (neurons of
different origins) starts at zero. Biases and per-neuron ops (BatchNorm parameters and running
statistics) follow their neuron.

Depth: the networks must have the same layers (names and kinds); widths may differ per network.
Networks of different depth are rejected: the paper's step 3 (taking over the deeper network's
extra layers as exclusive groups) is not implemented.
"""
from __future__ import annotations

import operator
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from pam_explorer.cost import (LayerGeometry, NetGeometry, check_structure, parse_key, subset_key,
                               subset_masks)
from pam_explorer.merged_net import MergedNet, check_tasks, follower_spec, make_core, make_group
from pam_explorer.zoo.chain import ChainNet

GroupIds = dict[str, tuple[int, ...]]  # "+"-joined key -> sorted global neuron ids


# --------------------------------------------------------------------------- groupings
def layer_widths(nets: Sequence[ChainNet]) -> dict[str, list[int]]:
    """{layer: [width in network t for each t]}."""
    return {name: [_out(net.blocks[name][0]) for net in nets] for name in nets[0].blocks}


def exclusive_grouping(nets: Sequence[ChainNet], tasks: Sequence[str]) -> dict[str, dict[tuple[str, ...], tuple[int, ...]]]:
    """Every neuron in the group of its origin task (B1 as one net; PAM at alpha = inf-like)."""
    out = {}
    for layer, widths in layer_widths(nets).items():
        starts = [sum(widths[:t]) for t in range(len(widths))]
        out[layer] = {(task,): tuple(range(starts[t], starts[t] + widths[t])) for t, task in enumerate(tasks)}
    return out


def shared_grouping(nets: Sequence[ChainNet], tasks: Sequence[str]) -> dict[str, dict[tuple[str, ...], tuple[int, ...]]]:
    """Every neuron of every net in the all-task group."""
    return {layer: {tuple(tasks): tuple(range(sum(w)))} for layer, w in layer_widths(nets).items()}


def normalize_grouping(grouping: Mapping[str, Any], tasks: Sequence[str],
                       widths: Mapping[str, Sequence[int]]) -> dict[str, GroupIds]:
    """Validate a grouping and return {layer: {"+"-joined key: sorted ids}} in canonical key order.

    Each layer's entry is an object with a ``.groups`` attribute (e.g. regroup's LayerGroups) or a
    plain mapping {key: ids}; keys are task-name tuples in task order (or "+"-joined strings).
    """
    missing = [layer for layer in widths if layer not in grouping]
    extra = [layer for layer in grouping if layer not in widths]
    if missing or extra:
        raise ValueError(f"grouping layers must be {list(widths)}; missing {missing}, unknown {extra}")
    order = list(subset_masks(tasks))
    out = {}
    for layer, per_net in widths.items():
        groups = _layer_groups(layer, grouping[layer], tasks, sum(per_net))
        out[layer] = {k: groups[k] for k in order if k in groups}
    return out


def _layer_groups(layer: str, entry: Any, tasks: Sequence[str], total: int) -> GroupIds:
    raw = getattr(entry, "groups", entry)
    if not isinstance(raw, Mapping):
        raise ValueError(f"layer {layer!r}: grouping must be a mapping task subset -> neuron ids, "
                         f"got {type(raw).__name__}")
    declared = getattr(entry, "width", None)
    if declared is not None and declared != total:
        raise ValueError(f"layer {layer!r}: grouping says width {declared}, the networks have {total} neurons")
    owner: dict[int, str] = {}
    out: GroupIds = {}
    for key, ids in raw.items():
        name = subset_key(parse_key(key, tasks, where=f"layer {layer!r}"))
        if name in out:
            raise ValueError(f"layer {layer!r}: group {name!r} is given twice")
        try:
            ids_t = tuple(sorted(operator.index(i) for i in ids))
        except TypeError as exc:
            raise ValueError(f"layer {layer!r}, group {name!r}: neuron ids must be integers ({exc})") from exc
        for i in ids_t:
            if not 0 <= i < total:
                raise ValueError(f"layer {layer!r}, group {name!r}: neuron id {i} is outside [0, {total})")
            if i in owner:
                where = "twice in that group" if owner[i] == name else f"also in group {owner[i]!r}"
                raise ValueError(f"layer {layer!r}, group {name!r}: neuron id {i} is {where}")
            owner[i] = name
        out[name] = ids_t
    lost = sorted(set(range(total)) - set(owner))
    if lost:
        raise ValueError(f"layer {layer!r}: neuron id(s) {lost[:10]}{'...' if len(lost) > 10 else ''} "
                         f"are in no group; every id in [0, {total}) must be in exactly one group")
    return out


# --------------------------------------------------------------------------- geometry
def _out(core: nn.Module) -> int:
    return int(core.out_channels if isinstance(core, nn.Conv2d) else core.out_features)


def _in(core: nn.Module) -> int:
    return int(core.in_channels if isinstance(core, nn.Conv2d) else core.in_features)


def _shapes(net: ChainNet) -> dict[str, tuple[torch.Size, torch.Size]]:
    """{block: (core output shape, block output shape)} for one zero image (eval mode)."""
    shapes: dict[str, tuple[torch.Size, torch.Size]] = {}
    p = next(net.parameters())
    x = torch.zeros(1, net.in_channels, net.image_size, net.image_size, device=p.device, dtype=p.dtype)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            for name, block in net.blocks.items():
                x = x.flatten(1) if isinstance(block[0], nn.Linear) else x
                core_out = block[0](x)
                x = block(x)
                shapes[name] = (core_out.shape, x.shape)
    finally:
        net.train(was_training)
    return shapes


def _layer_geometry(name: str, block: nn.Sequential, shapes: tuple[torch.Size, torch.Size],
                    in_factor: int) -> LayerGeometry:
    core = block[0]
    followers = tuple(follower_spec(f) for f in list(block)[1:])
    n_follow = sum(p.numel() for f in list(block)[1:] for p in f.parameters())
    if isinstance(core, nn.Conv2d):
        if core.groups != 1 or core.padding_mode != "zeros":
            raise ValueError(f"layer {name!r}: only conv layers with groups=1 and zero padding can be merged")
        return LayerGeometry(name, "conv", tuple(core.kernel_size), tuple(core.stride),
                             core.padding if isinstance(core.padding, str) else tuple(core.padding),
                             tuple(core.dilation), tuple(shapes[0][-2:]), tuple(shapes[1][-2:]), 1,
                             core.bias is not None, followers, n_follow // max(1, _out(core)))
    return LayerGeometry(name, "fc", (1, 1), (1, 1), (0, 0), (1, 1), None, None, in_factor,
                         core.bias is not None, followers, n_follow // max(1, _out(core)))


def _net_geometry(net: ChainNet, tasks: Sequence[str], head_outputs: tuple[int, ...]) -> NetGeometry:
    shapes = _shapes(net)
    layers: list[LayerGeometry] = []
    hw = net.image_size * net.image_size  # features per input "neuron" (channel) if flattened
    for name, block in net.blocks.items():
        kind = "conv" if isinstance(block[0], nn.Conv2d) else "fc"
        if kind == "conv" and layers and layers[-1].kind == "fc":
            raise ValueError(f"layer {name!r}: a conv layer after an fc layer cannot be merged")
        factor = 1 if kind == "conv" or (layers and layers[-1].kind == "fc") else hw
        layers.append(_layer_geometry(name, block, shapes[name], factor))
        if kind == "conv":
            hw = int(shapes[name][1][-2] * shapes[name][1][-1])
    head_factor = hw if layers[-1].kind == "conv" else 1
    return NetGeometry(tuple(tasks), net.in_channels, net.image_size, tuple(layers), head_outputs,
                       head_factor, net.head.bias is not None)


def chain_geometry(nets: Sequence[ChainNet], tasks: Sequence[str]) -> NetGeometry:
    """The shared geometry of the networks (ValueError naming the layer if they differ).

    Cheap enough to call once per dashboard session; :func:`pam_explorer.cost.predicted_costs`
    then needs only this and a grouping.
    """
    tasks = check_tasks(tasks)
    if not nets or len(nets) != len(tasks):
        raise ValueError(f"need one network per task; got {len(nets)} networks for tasks {list(tasks)}")
    for t, net in enumerate(nets):
        if not isinstance(net, ChainNet):
            raise TypeError(f"network {t} ({tasks[t]!r}) is a {type(net).__name__}; only ChainNet can be merged")
        if list(net.blocks) != list(nets[0].blocks):
            raise ValueError(
                f"network {t} ({tasks[t]!r}) has layers {list(net.blocks)} but network 0 has "
                f"{list(nets[0].blocks)}; networks of different depth/architecture are not merged "
                f"(the paper's step 3, taking over a deeper network's extra layers, is not supported)")
    heads = tuple(int(net.head.out_features) for net in nets)
    geos = [_net_geometry(net, tasks, heads) for net in nets]
    for t, geo in enumerate(geos[1:], start=1):
        for a, b in zip(geos[0].layers, geo.layers):
            if a != b:
                raise ValueError(f"layer {a.name!r} of network {t} ({tasks[t]!r}) differs from network 0 "
                                 f"in kind, kernel, stride, padding, sizes or per-neuron ops: {b} vs {a}")
        if (geo.in_channels, geo.image_size, geo.head_bias) != (geos[0].in_channels, geos[0].image_size,
                                                                geos[0].head_bias):
            raise ValueError(f"network {t} ({tasks[t]!r}) has a different input size or head bias than network 0")
    _check_in_sizes(nets, tasks, geos[0])
    return geos[0]


def _check_in_sizes(nets: Sequence[ChainNet], tasks: Sequence[str], geo: NetGeometry) -> None:
    """Each core reads exactly the previous layer's neurons (times the flatten factor)."""
    for t, net in enumerate(nets):
        prev = geo.in_channels
        for lg in geo.layers:
            core = net.blocks[lg.name][0]
            if _in(core) != prev * lg.in_factor:
                raise ValueError(f"layer {lg.name!r} of network {t} ({tasks[t]!r}) reads {_in(core)} inputs; "
                                 f"expected {prev} neurons x {lg.in_factor} features")
            prev = _out(core)
        if net.head.in_features != prev * geo.head_in_factor:
            raise ValueError(f"head of network {t} ({tasks[t]!r}) reads {net.head.in_features} inputs; "
                             f"expected {prev * geo.head_in_factor}")


# --------------------------------------------------------------------------- weights
Prov = Sequence[tuple[int, int]]


def _copy_existing(dst: torch.Tensor, srcs: Sequence[torch.Tensor], out_prov: Prov,
                   in_prov: Prov | None, factor: int) -> None:
    """dst[r, cols of input neuron c] = W_t[j, cols of k] where out neuron r = (t, j) and input
    neuron c = (t, k) have the same origin t; other entries keep their value (zero).

    dst/srcs: (out, in * factor[, kh, kw]). in_prov None means the shared image input: every
    origin reads every input channel with its own weights.
    """
    for t, src in enumerate(srcs):
        rows = [r for r, (o, _) in enumerate(out_prov) if o == t]
        if not rows:
            continue
        j = torch.tensor([out_prov[r][1] for r in rows])
        if in_prov is None:
            cols = k = torch.arange(src.shape[1] // factor)
        else:
            pos = [c for c, (o, _) in enumerate(in_prov) if o == t]
            cols, k = torch.tensor(pos, dtype=torch.long), torch.tensor([in_prov[c][1] for c in pos], dtype=torch.long)
        if not cols.numel():
            continue
        step = torch.arange(factor)
        cols_x, k_x = (cols[:, None] * factor + step).flatten(), (k[:, None] * factor + step).flatten()
        dst[torch.tensor(rows)[:, None], cols_x[None, :]] = src[j[:, None], k_x[None, :]]


def _copy_per_neuron(dst: dict[str, torch.Tensor], srcs: Sequence[Mapping[str, torch.Tensor]],
                     out_prov: Prov) -> None:
    """Per-neuron tensors (bias, BN weight/bias/running stats) follow their origin neuron;
    scalar buffers (BN num_batches_tracked) take the max over the origins present."""
    origins = sorted({t for t, _ in out_prov}) or [0]
    for key, value in dst.items():
        if value.dim() == 0:
            value.copy_(max(srcs[t][key] for t in origins))
            continue
        for t in origins:
            rows = [r for r, (o, _) in enumerate(out_prov) if o == t]
            if rows:
                value[torch.tensor(rows)] = srcs[t][key][torch.tensor([out_prov[r][1] for r in rows])]


def _build_group(lg: LayerGeometry, blocks: Sequence[nn.Sequential], out_prov: Prov,
                 in_prov: Prov | None, n_in: int) -> nn.Sequential:
    """The group module of neurons ``out_prov`` reading inputs ``in_prov`` (None: the image)."""
    group = make_group(lg, n_in, len(out_prov))
    with torch.no_grad():
        core = group[0]
        _copy_existing(core.weight, [b[0].weight.detach().cpu() for b in blocks], out_prov, in_prov,
                       lg.in_factor)
        if core.bias is not None:
            _copy_per_neuron({"bias": core.bias}, [{"bias": b[0].bias.detach().cpu()} for b in blocks], out_prov)
        for f_idx, follower in enumerate(list(group)[1:], start=1):
            state = follower.state_dict(keep_vars=True)
            if state:
                src = [{k: v.detach().cpu() for k, v in b[f_idx].state_dict().items()} for b in blocks]
                _copy_per_neuron({k: v.data for k, v in state.items()}, src, out_prov)
    return group


def _build_head(geo: NetGeometry, t: int, head: nn.Linear, in_prov: Prov) -> nn.Linear:
    """Head of task t reading the last-layer neurons ``in_prov``: only task t's neurons get weights."""
    new = make_core("fc", len(in_prov) * geo.head_in_factor, geo.head_outputs[t], bias=geo.head_bias)
    out_prov = [(t, j) for j in range(geo.head_outputs[t])]
    # every output row has origin t, so only srcs[t] is ever read
    srcs = [head.weight.detach().cpu()] * len(geo.tasks)
    with torch.no_grad():
        _copy_existing(new.weight, srcs, out_prov, in_prov, geo.head_in_factor)
        if new.bias is not None:
            new.bias.copy_(head.bias.detach().cpu())
    return new


# --------------------------------------------------------------------------- merge
def merge_networks(nets: Sequence[ChainNet], tasks: Sequence[str], grouping: Mapping[str, Any]) -> MergedNet:
    """Merge single-task networks (one per task, in task order) by ``grouping`` into a MergedNet.

    grouping: {layer: LayerGroups-like object or {task subset: global neuron ids}}. Raises
    ValueError for a malformed grouping (naming layer and group), for networks that cannot be
    merged, and for a group with neurons but no non-empty input group or a task whose head
    reads no non-empty group. The result is on network 0's device, in network 0's train/eval mode.
    """
    nets = list(nets)
    geo = chain_geometry(nets, tasks)
    tasks = geo.tasks
    widths = layer_widths(nets)
    groups = normalize_grouping(grouping, tasks, widths)
    check_structure(tasks, geo.layer_names, {l: {k: len(v) for k, v in g.items()} for l, g in groups.items()})
    masks = subset_masks(tasks)
    prov: dict[str, dict[str, tuple[tuple[int, int], ...]]] = {}
    modules: dict[str, dict[str, nn.Sequential]] = {}
    prev: str | None = None
    for lg in geo.layers:
        origin = [(t, j) for t, w in enumerate(widths[lg.name]) for j in range(w)]
        prov[lg.name] = {k: tuple(origin[i] for i in ids) for k, ids in groups[lg.name].items()}
        blocks = [net.blocks[lg.name] for net in nets]
        modules[lg.name] = {}
        for key in groups[lg.name]:
            in_prov = None if prev is None else [p for k, ps in prov[prev].items()
                                                 if masks[k] & masks[key] == masks[key] for p in ps]
            n_in = lg.in_factor * (geo.in_channels if in_prov is None else len(in_prov))
            modules[lg.name][key] = _build_group(lg, blocks, prov[lg.name][key], in_prov, n_in)
        prev = lg.name
    heads = {}
    for t, task in enumerate(tasks):
        in_prov = [p for k, ps in prov[prev].items() if masks[k] >> t & 1 for p in ps]
        heads[task] = _build_head(geo, t, nets[t].head, in_prov)
    merged = MergedNet(geo, modules, heads, prov)
    p = next(nets[0].parameters())
    return merged.to(device=p.device).train(nets[0].training)
