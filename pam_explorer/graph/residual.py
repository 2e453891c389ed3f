"""Residual networks (torchvision ResNets, BasicBlock) as module layers and coupled neuron layers.

What merging, cost and the explorer need to know about single-task ResNets (PAM Sec. 5.3; the
rules are argued in docs/residual.md). Module layers, in forward order, named after torchvision's
modules with "." -> "_" (a module name may not contain "."):

* ``conv1``: the stem (conv, bn1, ReLU, max pool unless the small-input stem); reads the image;
* per block ``layer{s}_{b}_conv1``: conv1, bn1, ReLU; reads the block input; its own neuron layer;
* ``layer{s}_{b}_downsample`` (first block of a stage that changes width or stride): the 1x1 conv
  + BN shortcut, an ordinary weighted connection reading the block input;
* ``layer{s}_{b}_conv2``: conv2, bn2; reads ``..._conv1``; the shortcut (the block input, or the
  downsample's output) is added, then ReLU (and, after the last block, the global average pool).

Every addition ties channels: a block's conv2 channels, its shortcut's channels and its output are
one *neuron layer* (``LayerGeometry.grouping``). An identity shortcut carries the stream through
the whole stage, so a stage's block outputs, conv2 outputs and first-block downsample form one
neuron layer named after the stage (``layer2``); the stem joins ``layer1`` because torchvision's
``layer1`` has identity shortcuts from the stem's output. Inner ``..._conv1`` layers are their own
neuron layers. MI activations (:func:`capture_points`): an inner conv after its ReLU; a stage
stream at its last block's output (after the addition and ReLU, the value the next stage reads),
spatially pooled like any conv channel.

Shapes: images (N, C_in, H, W); values (N, C, H', W'); the head reads (N, C) after the pool.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from pam_explorer.core.errors import StructureError
from pam_explorer.core.geometry import LayerGeometry, NetGeometry
from pam_explorer.core.subsets import check_tasks
from pam_explorer.graph.followers import follower_spec
from pam_explorer.graph.probe import probe
from pam_explorer.zoo.resnet import ResidualNet, resnet_blocks

Transform = Callable[[torch.Tensor], torch.Tensor] | None


class _Layer:
    """One module layer of a single net while it is being described (mutable, private)."""

    def __init__(self, name: str, core: nn.Conv2d, followers: Sequence[nn.Module], source: str | None,
                 grouping: str, add: str = "", post: Sequence[nn.Module] = ()) -> None:
        self.name, self.core = name, core
        self.followers = [f for f in followers if type(f) is not nn.Identity]  # the small stem's pool
        self.source, self.grouping, self.add, self.post = source, grouping, add, list(post)


def _layers(net: ResidualNet) -> list[_Layer]:
    """The module layers of ``net`` with their modules and wiring (module docstring)."""
    if not isinstance(net, ResidualNet):
        raise StructureError(f"expected a residual network (zoo.resnet.ResidualNet), got "
                             f"{type(net).__name__}")
    out = [_Layer("conv1", net.conv1, [net.bn1, net.relu, net.maxpool], None, "conv1")]
    value, blocks = "conv1", resnet_blocks(net)
    for i, (path, blk) in enumerate(blocks):
        name, stage = path.replace(".", "_"), path.split(".")[0]
        out.append(_Layer(f"{name}_conv1", blk.conv1, [blk.bn1, blk.relu], value, f"{name}_conv1"))
        add, grouping = value, _grouping(out, value)  # identity shortcut: the stream goes on
        if blk.downsample is not None:  # a weighted shortcut starts the stage's stream
            add, grouping = f"{name}_downsample", stage
            out.append(_Layer(add, blk.downsample[0], list(blk.downsample)[1:], value, stage))
        post = [blk.relu] + ([net.avgpool] if i == len(blocks) - 1 else [])
        out.append(_Layer(f"{name}_conv2", blk.conv2, [blk.bn2], f"{name}_conv1", grouping, add, post))
        value = f"{name}_conv2"
    _name_streams(out, [p.split(".")[0] for p, _ in blocks])
    return out


def _grouping(layers: Sequence[_Layer], name: str) -> str:
    return next(lay.grouping for lay in layers if lay.name == name)


def _name_streams(layers: list[_Layer], stages: Sequence[str]) -> None:
    """A stream the stem starts takes the name of the first stage whose blocks it carries."""
    conv2 = [lay for lay in layers if lay.name.endswith("_conv2")]
    for lay, stage in zip(conv2, stages):
        if lay.grouping == "conv1":
            for other in layers:
                if other.grouping == "conv1":
                    other.grouping = stage
            return


def _shapes(net: ResidualNet, layers: Sequence[_Layer]) -> dict[str, tuple[torch.Size, torch.Size]]:
    """{module layer: (core output shape, value shape)} for one zero image (eval mode)."""
    cores: dict[str, torch.Size] = {}
    handles = [lay.core.register_forward_hook(lambda _m, _i, o, n=lay.name: cores.__setitem__(n, o.shape))
               for lay in layers]
    try:
        probe(net, net)
    finally:
        for h in handles:
            h.remove()
    values = {}
    for lay in layers:  # followers and post ops are per channel: run them on the core's shape
        v = torch.zeros(cores[lay.name])
        with torch.no_grad():
            for m in [*lay.followers, *lay.post]:
                v = v if isinstance(m, nn.BatchNorm2d) else m(v)  # the others hold no state
        values[lay.name] = (cores[lay.name], v.shape)
    return values


def _geometry_of(lay: _Layer, shapes: tuple[torch.Size, torch.Size]) -> LayerGeometry:
    core = lay.core
    if core.groups != 1 or core.padding_mode != "zeros" or isinstance(core.padding, str):
        raise StructureError(f"layer {lay.name!r}: only convs with groups=1 and numeric zero padding merge")
    n_follow = sum(p.numel() for f in lay.followers for p in f.parameters())
    return LayerGeometry(lay.name, "conv", tuple(core.kernel_size), tuple(core.stride), tuple(core.padding),
                         tuple(core.dilation), tuple(shapes[0][-2:]), tuple(shapes[1][-2:]), 1,
                         core.bias is not None, tuple(follower_spec(f) for f in lay.followers),
                         n_follow // core.out_channels, lay.source, lay.grouping, lay.add,
                         tuple(follower_spec(f) for f in lay.post))


def _net_layers(net: ResidualNet) -> tuple[LayerGeometry, ...]:
    layers = _layers(net)
    shapes = _shapes(net, layers)
    return tuple(_geometry_of(lay, shapes[lay.name]) for lay in layers)


def residual_geometry(nets: Sequence[ResidualNet], tasks: Sequence[str]) -> NetGeometry:
    """The geometry of the merged network of residual nets (one per task; StructureError naming
    the layer if their architectures differ: same blocks, strides, stem; widths may differ)."""
    tasks = check_tasks(tasks)
    if not nets or len(nets) != len(tasks):
        raise StructureError(f"need one network per task; got {len(nets)} networks for tasks {list(tasks)}")
    per_net = [_net_layers(net) for net in nets]
    for t, own in enumerate(per_net):
        if [lg.name for lg in own] != [lg.name for lg in per_net[0]]:
            raise StructureError(f"network {t} ({tasks[t]!r}) has layers {[lg.name for lg in own]}, network "
                                 f"0 {[lg.name for lg in per_net[0]]}; residual nets merge only with the "
                                 "same blocks (networks of different depth merge only as chains)")
        for a, b in zip(per_net[0], own):
            if a != b:
                raise StructureError(f"layer {a.name!r} of network {t} ({tasks[t]!r}) differs from network 0 "
                                     f"in kernel, stride, padding, sizes, ops or wiring: {b} vs {a}")
        if (nets[t].in_channels, nets[t].image_size, nets[t].fc.bias is not None) != (
                nets[0].in_channels, nets[0].image_size, nets[0].fc.bias is not None):
            raise StructureError(f"network {t} ({tasks[t]!r}) has a different input size or head bias "
                                 "than network 0")
    layers = per_net[0]
    return NetGeometry(tasks, nets[0].in_channels, nets[0].image_size, layers,
                       tuple(int(net.fc.out_features) for net in nets), 1, nets[0].fc.bias is not None)


def residual_modules(net: ResidualNet) -> dict[str, tuple[nn.Conv2d, list[nn.Module]]]:
    """{module layer: (core conv, per-neuron ops)} of one single-task net."""
    return {lay.name: (lay.core, lay.followers) for lay in _layers(net)}


def residual_layer_widths(nets: Sequence[ResidualNet]) -> dict[str, list[int]]:
    """{neuron layer: [its channels in network t, for each t]} in the order of first appearance."""
    out: dict[str, list[int]] = {}
    for t, net in enumerate(nets):
        for lay in _layers(net):
            out.setdefault(lay.grouping, [0] * len(nets))[t] = int(lay.core.out_channels)
    return out


def capture_points(net: ResidualNet) -> dict[str, tuple[nn.Module, Transform]]:
    """{neuron layer: (module to hook, transform of its output)}: where the MI activations of a
    neuron layer are read (module docstring). Inner convs: bn1's output through ReLU (the block's
    ReLU module runs twice per block, so it cannot be hooked); streams: the output of the block
    whose conv2 is the last member; an uncoupled stem: its (max-pool) output."""
    layers = _layers(net)
    blocks = dict(resnet_blocks(net))
    last = {lay.grouping: lay for lay in layers}  # the last module layer of each neuron layer
    out: dict[str, tuple[nn.Module, Transform]] = {}
    for name, lay in last.items():
        if lay.name == "conv1":
            out[name] = (lay.followers[-1], None)
        elif lay.name.endswith("_conv2"):
            out[name] = (blocks[_block_path(lay.name)], None)
        else:  # an inner conv1: its BN, then the ReLU it feeds
            out[name] = (lay.followers[0], torch.relu)
    return out


def _block_path(layer: str) -> str:
    """"layer2_0_conv2" -> "layer2.0"."""
    stage, block, _ = layer.split("_", 2)
    return f"{stage}.{block}"


__all__ = ["residual_geometry", "residual_modules", "residual_layer_widths", "capture_points"]
