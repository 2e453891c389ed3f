"""Layer map: which layers of a network hold neurons (the paper's Algorithm 1).

For a chain network Algorithm 1 puts every hidden conv/FC layer in its own layer of neurons:
each block's first module is the neuron layer (a conv channel or an FC unit is one neuron) and
the modules after it in the block are per-neuron (BN, ReLU, pooling) and follow their neuron.
The head is the output layer and is not regrouped. Residual nets (PAM Sec. 5.3) are mapped by
:func:`residual_layer_map`: inner convs, and one layer per stage stream at the block outputs.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pam_explorer.core.errors import StructureError
from pam_explorer.graph.residual import residual_geometry, residual_layer_widths
from pam_explorer.zoo.chain import ChainNet
from pam_explorer.zoo.registry import model_kind


@dataclass(frozen=True)
class LayerInfo:
    """One layer of neurons.

    out_hw is the spatial size of the block's output (after pooling) for conv layers, None for FC.
    followers names the per-neuron modules applied after the neuron layer, in order.
    """

    name: str
    kind: str  # "conv" | "fc"
    width: int
    out_hw: tuple[int, int] | None
    followers: tuple[str, ...]
    index: int


def layer_map(model: nn.Module) -> list[LayerInfo]:
    """The neuron layers of ``model`` in forward order (input and head excluded); a residual
    net's are those of :func:`residual_layer_map`."""
    if model_kind(model) == "residual":
        return residual_layer_map(model)
    if not isinstance(model, ChainNet):
        raise StructureError(f"layer_map supports chain networks (ChainNet) and residual ones "
                             f"(ResidualNet); got {type(model).__name__}")
    shapes = _block_output_shapes(model)
    out = []
    for i, (name, block) in enumerate(model.blocks.items()):
        core = block[0]
        kind = "conv" if isinstance(core, nn.Conv2d) else "fc"
        width = core.out_channels if kind == "conv" else core.out_features
        shape = shapes[name]
        hw = (int(shape[-2]), int(shape[-1])) if kind == "conv" else None
        followers = tuple(type(m).__name__ for m in list(block)[1:])
        out.append(LayerInfo(name, kind, int(width), hw, followers, i))
    return out


def residual_layer_map(model: nn.Module) -> list[LayerInfo]:
    """The regrouped layers of a residual net (PAM Sec. 5.3, :mod:`pam_explorer.graph.residual`):
    per block its inner conv1, and per stage stream one layer, which holds the stage's block
    outputs (after the addition), conv2 outputs, downsample output and, for ``layer1``, the stem.
    Forward order of first appearance; out_hw and followers are where the MI activations are
    read (the stream: its last block's output). ``index`` counts neuron layers."""
    geo = residual_geometry([model], ("_",))
    widths = residual_layer_widths([model])
    out = []
    for i, name in enumerate(geo.neuron_layers):
        last = geo.layers[geo.layer_names.index(geo.members(name)[-1])]
        hw = last.conv_out_hw if last is geo.layers[-1] else last.out_hw  # the head's pool is not MI's
        ops = tuple(spec[0] for spec in (*last.followers, *last.post) if spec[0] != "AdaptiveAvgPool2d")
        out.append(LayerInfo(name, "conv", widths[name][0], hw, ops, i))
    return out


def _block_output_shapes(model: ChainNet) -> dict[str, torch.Size]:
    shapes: dict[str, torch.Size] = {}
    x = torch.zeros(2, model.in_channels, model.image_size, model.image_size)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for name, block in model.blocks.items():
                if isinstance(block[0], nn.Linear) and x.dim() > 2:
                    x = x.flatten(1)
                x = block(x)
                shapes[name] = x.shape
    finally:
        model.train(was_training)
    return shapes
