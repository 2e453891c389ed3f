"""Merging residual networks (PAM Sec. 5.3): a grouping per neuron layer -> a residual MergedNet.

The grouping gives one {task subset: global channel ids} per neuron layer of
:func:`pam_explorer.graph.residual.residual_geometry` (each block's inner conv1, and one per
stage stream, which also holds the stem for ``layer1``). Channel ids are global as for chain
nets: network 0's C_0 channels, then network 1's, ...; a stream channel is the same channel in
every module layer of the stream, so the conv2 outputs, the downsample output and the block
outputs of a stage are grouped alike and the identity shortcuts add group tau to group tau.

Weights are copied module layer by module layer with :func:`~pam_explorer.merge.weights.build_group`:
group tau of a module layer reads the groups tau1 ⊇ tau of the neuron layer of its source (a
downsample: the previous stage's stream; conv1: the block input; conv2: conv1), existing
connections keep their weights and new ones start at zero, so with every channel shared, or
every channel exclusive to its origin task, the merged net reproduces each original network.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import nn

from pam_explorer.core.geometry import NetGeometry
from pam_explorer.core.subsets import connected, subset_masks
from pam_explorer.graph.residual import residual_modules
from pam_explorer.merge.merged_net import MergedNet
from pam_explorer.merge.weights import Prov, build_group, build_head
from pam_explorer.zoo.resnet import ResidualNet

GroupIds = dict[str, tuple[int, ...]]  # "+"-joined key -> sorted global channel ids


def build_residual(nets: Sequence[ResidualNet], geo: NetGeometry, groups: Mapping[str, GroupIds],
                   widths: Mapping[str, Sequence[int]]) -> MergedNet:
    """The merged residual net of normalised ``groups`` ({neuron layer: {key: global ids}},
    canonical key order, checked by the caller); widths: {neuron layer: [channels per net]}.
    The result is on network 0's device, in network 0's train/eval mode."""
    masks = subset_masks(geo.tasks)
    prov: dict[str, dict[str, Prov]] = {}
    for layer, per_net in widths.items():
        origin = [(t, j) for t, w in enumerate(per_net) for j in range(w)]
        prov[layer] = {k: tuple(origin[i] for i in ids) for k, ids in groups[layer].items()}
    modules_of = [residual_modules(net) for net in nets]
    modules: dict[str, dict[str, nn.Sequential]] = {}
    for lg in geo.layers:
        inp = geo.input_of(lg.name)
        blocks = [[core, *followers] for core, followers in (m[lg.name] for m in modules_of)]
        modules[lg.name] = {}
        for key, out_prov in prov[geo.grouping_of(lg.name)].items():
            in_prov = None if inp is None else [p for k, ps in prov[inp].items()
                                                if connected(masks[k], masks[key]) for p in ps]
            n_in = geo.in_channels if in_prov is None else len(in_prov)
            modules[lg.name][key] = build_group(lg, blocks, out_prov, in_prov, n_in)
    heads = {}
    for t, task in enumerate(geo.tasks):
        at = prov[geo.grouping_of(geo.head_layer(task))]  # the last stage's stream
        heads[task] = build_head(geo, t, nets[t].fc, [p for k, ps in at.items() if masks[k] >> t & 1
                                                      for p in ps])
    merged = MergedNet(geo, modules, heads, prov)
    p = next(nets[0].parameters())
    return merged.to(device=p.device).train(nets[0].training)


__all__ = ["build_residual"]
