"""Geometry of single-task chain networks: their layer order, widths and shared NetGeometry.

Residual nets are described in :mod:`pam_explorer.graph.residual`; :func:`net_geometry` and
:func:`layer_widths` dispatch on the model kind (``zoo.registry.model_kind``).

What merging, cost prediction and the explorer need to know about the *original* networks before
any grouping: the networks must be of one family (each network's layers are the first layers of
the deepest one, same names and kinds; widths may differ per network); :func:`chain_geometry` is
the geometry of the merged network they give (the deepest network's layers, each task's head
reading its own network's last layer).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pam_explorer.core.errors import StructureError
from pam_explorer.core.geometry import LayerGeometry, NetGeometry
from pam_explorer.core.subsets import check_tasks
from pam_explorer.graph.followers import follower_spec
from pam_explorer.graph.probe import probe
from pam_explorer.graph.residual import residual_geometry, residual_layer_widths
from pam_explorer.zoo.chain import ChainNet
from pam_explorer.zoo.registry import model_kind


def layer_order(nets: Sequence[ChainNet]) -> list[str]:
    """Layer names of the deepest network; StructureError unless every network's layers are the first
    layers of that one (same family, possibly fewer layers)."""
    names = list(max(nets, key=lambda n: len(n.blocks)).blocks)
    for t, net in enumerate(nets):
        own = list(net.blocks)
        if own != names[:len(own)]:
            raise StructureError(
                f"network {t} has layers {own}, which are not the first layers {names[:len(own)]} of "
                f"the deepest network {names}; only networks of one family (the same first layers, "
                f"the deeper ones with more layers after them) can be merged")
    return names


def common_layers(nets: Sequence[ChainNet]) -> list[str]:
    """The layers every network has (1..N_min), the ones PAM regroups."""
    return layer_order(nets)[:min(len(net.blocks) for net in nets)]


def layer_widths(nets: Sequence[nn.Module]) -> dict[str, list[int]]:
    """{layer: [width in network t for each t, 0 where network t does not have the layer]}; for
    residual nets per neuron layer (:func:`pam_explorer.graph.residual.residual_layer_widths`)."""
    if is_residual(nets):
        return residual_layer_widths(nets)
    return {name: [_out(net.blocks[name][0]) if name in net.blocks else 0 for net in nets]
            for name in layer_order(nets)}


def net_geometry(nets: Sequence[nn.Module], tasks: Sequence[str]) -> NetGeometry:
    """The merged geometry of chain nets (:func:`chain_geometry`) or residual nets
    (:func:`~pam_explorer.graph.residual.residual_geometry`), by the networks' model kind."""
    return residual_geometry(nets, tasks) if is_residual(nets) else chain_geometry(nets, tasks)


def is_residual(nets: Sequence[nn.Module]) -> bool:
    """True for residual nets; StructureError for a mix of kinds."""
    kinds = {model_kind(net) for net in nets}
    if len(kinds) > 1:
        raise StructureError(f"networks of different kinds {sorted(kinds)} cannot be merged")
    return kinds == {"residual"}



def _out(core: nn.Module) -> int:
    return int(core.out_channels if isinstance(core, nn.Conv2d) else core.out_features)


def _in(core: nn.Module) -> int:
    return int(core.in_channels if isinstance(core, nn.Conv2d) else core.in_features)


def _shapes(net: ChainNet) -> dict[str, tuple[torch.Size, torch.Size]]:
    """{block: (core output shape, block output shape)} for one zero image (eval mode)."""
    shapes: dict[str, tuple[torch.Size, torch.Size]] = {}

    def walk(x: torch.Tensor) -> None:
        for name, block in net.blocks.items():
            x = x.flatten(1) if isinstance(block[0], nn.Linear) else x
            core_out = block[0](x)
            x = block(x)
            shapes[name] = (core_out.shape, x.shape)
    probe(net, walk)
    return shapes


def _layer_geometry(name: str, block: nn.Sequential, shapes: tuple[torch.Size, torch.Size],
                    in_factor: int) -> LayerGeometry:
    core = block[0]
    followers = tuple(follower_spec(f) for f in list(block)[1:])
    n_follow = sum(p.numel() for f in list(block)[1:] for p in f.parameters())
    if isinstance(core, nn.Conv2d):
        if core.groups != 1 or core.padding_mode != "zeros":
            raise StructureError(f"layer {name!r}: only conv layers with groups=1 and zero padding can be "
                                 "merged")
        return LayerGeometry(name, "conv", tuple(core.kernel_size), tuple(core.stride),
                             core.padding if isinstance(core.padding, str) else tuple(core.padding),
                             tuple(core.dilation), tuple(shapes[0][-2:]), tuple(shapes[1][-2:]), 1,
                             core.bias is not None, followers, n_follow // max(1, _out(core)))
    return LayerGeometry(name, "fc", (1, 1), (1, 1), (0, 0), (1, 1), None, None, in_factor,
                         core.bias is not None, followers, n_follow // max(1, _out(core)))


def _layers_of(net: ChainNet) -> tuple[LayerGeometry, ...]:
    """Geometry of each layer of one network, in forward order."""
    shapes = _shapes(net)
    layers: list[LayerGeometry] = []
    hw = net.image_size * net.image_size  # features per input "neuron" (channel) if flattened
    for name, block in net.blocks.items():
        kind = "conv" if isinstance(block[0], nn.Conv2d) else "fc"
        if kind == "conv" and layers and layers[-1].kind == "fc":
            raise StructureError(f"layer {name!r}: a conv layer after an fc layer cannot be merged")
        factor = 1 if kind == "conv" or (layers and layers[-1].kind == "fc") else hw
        layers.append(_layer_geometry(name, block, shapes[name], factor))
        if kind == "conv":
            hw = int(shapes[name][1][-2] * shapes[name][1][-1])
    return tuple(layers)


def chain_geometry(nets: Sequence[ChainNet], tasks: Sequence[str]) -> NetGeometry:
    """The shared geometry of the networks (StructureError naming the layer if they differ).

    Networks of different depth give the deepest one's layers, with each task's head layer its
    own network's last layer. Cheap enough to call once per dashboard session;
    :func:`pam_explorer.cost.analytic.predicted_costs` then needs only this and a (complete) grouping.
    """
    tasks = check_tasks(tasks)
    if not nets or len(nets) != len(tasks):
        raise StructureError(f"need one network per task; got {len(nets)} networks for tasks {list(tasks)}")
    for t, net in enumerate(nets):
        if not isinstance(net, ChainNet):
            raise StructureError(f"network {t} ({tasks[t]!r}) is a {type(net).__name__}; only ChainNet can "
                                 "be merged")
    layer_order(nets)  # one family, else a StructureError naming the network
    per_net = [_layers_of(net) for net in nets]
    layers = max(per_net, key=len)
    for t, own in enumerate(per_net):
        for a, b in zip(layers, own):
            if a != b:
                raise StructureError(f"layer {a.name!r} of network {t} ({tasks[t]!r}) differs from the "
                                     f"deepest network in kind, kernel, stride, padding, sizes or "
                                     f"per-neuron ops: {b} vs {a}")
        if (nets[t].in_channels, nets[t].image_size, nets[t].head.bias is not None) != (
                nets[0].in_channels, nets[0].image_size, nets[0].head.bias is not None):
            raise StructureError(f"network {t} ({tasks[t]!r}) has a different input size or head bias "
                                 f"than network 0")
    last = layers[-1]
    head_factor = last.out_hw[0] * last.out_hw[1] if last.kind == "conv" and last.out_hw else 1
    geo = NetGeometry(tasks, nets[0].in_channels, nets[0].image_size, layers,
                      tuple(int(net.head.out_features) for net in nets), head_factor,
                      nets[0].head.bias is not None, tuple(list(net.blocks)[-1] for net in nets))
    _check_in_sizes(nets, geo)
    return geo


def _check_in_sizes(nets: Sequence[ChainNet], geo: NetGeometry) -> None:
    """Each core reads exactly the previous layer's neurons (times the flatten factor)."""
    for t, (net, task) in enumerate(zip(nets, geo.tasks)):
        prev = geo.in_channels
        for lg in geo.layers[:len(net.blocks)]:
            core = net.blocks[lg.name][0]
            if _in(core) != prev * lg.in_factor:
                raise StructureError(f"layer {lg.name!r} of network {t} ({task!r}) reads {_in(core)} inputs; "
                                     f"expected {prev} neurons x {lg.in_factor} features")
            prev = _out(core)
        if net.head.in_features != prev * geo.head_factor(task):
            raise StructureError(f"head of network {t} ({task!r}) reads {net.head.in_features} inputs; "
                                 f"expected {prev * geo.head_factor(task)}")



__all__ = ["layer_order", "common_layers", "layer_widths", "chain_geometry", "net_geometry", "is_residual"]
