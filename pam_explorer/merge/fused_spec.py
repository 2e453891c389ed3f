"""A fused subset model as plain JSON (its architecture) + a state dict, and back.

The description is what an export's manifest records under ``architecture`` so that the weights
(safetensors) can be run without this project: it names every tensor of the state dict and says
how the ops are wired. Layout (all indices 0-based, ranges [start, stop)):

    {"layers": [{"name", "flatten_input", "ops": [op, ...]}, ...],   # forward order
     "heads": [{"task", "input_layer", "flatten_input", "ops": [op]}, ...]}   # task order
    op = {"core": {"type": "Conv2d"|"Linear", "in", "out", "kernel", "stride", "padding",
                   "dilation", "weight", "bias"},           # tensor names (bias: null if none)
          "followers": [[torch.nn class name, {constructor args}, {attribute: tensor name}], ...],
          "reads": null | [[start, stop], ...]}          # input channels/columns it reads

A layer flattens its input (N, C, H, W) -> (N, C*H*W) first when ``flatten_input``, then runs each
op on the channels it reads (all when ``reads`` is null), then concatenates the op outputs along
the channel axis. A head reads the output of layer ``input_layer``. The outputs are the heads' in
task order.

Residual nets (``FusedNet.wired``) add three keys to every layer; a chain's description has none
of them and means: layer i reads layer i-1 (the first reads the image) and adds nothing.

    "source": null | j          # the input is layer j's output (null: the image)
    "add": null | j             # layer j's output is added to the concatenated op outputs
    "post": [[torch.nn class name, {constructor args}], ...]   # parameter-free, after the addition
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from pam_explorer.core.errors import ExportError, StructureError
from pam_explorer.graph.followers import follower_spec, make_follower, make_post_op
from pam_explorer.merge.fuse import FusedLayer, FusedNet
from pam_explorer.merge.group_modules import make_core


def describe(fused: FusedNet) -> dict[str, Any]:
    """The JSON-able architecture of ``fused`` (tensor names are its state_dict keys)."""
    layers = [{"name": name, "flatten_input": layer.flatten,
               "ops": _ops(layer, f"layers.{i}.")}
              for i, (name, layer) in enumerate(zip(fused.layer_names, fused.layers))]
    if fused.wired:
        for i, (d, (src, add)) in enumerate(zip(layers, fused.wiring)):
            post = fused.posts[str(i)] if str(i) in fused.posts else []
            d.update({"source": src if src >= 0 else None, "add": add if add >= 0 else None,
                      "post": [list(_spec(m)) for m in post]})
    heads = [{"task": t, "input_layer": at, "flatten_input": head.flatten,
              "ops": _ops(head, f"heads.{j}.")}
             for j, (t, head, at) in enumerate(zip(fused.tasks, fused.heads, fused.head_at))]
    return {"layers": layers, "heads": heads}


def _ops(layer: FusedLayer, prefix: str) -> list[dict[str, Any]]:
    return [{"core": _core(op[0], f"{prefix}ops.{k}.0."),
             "followers": [_follower(f, f"{prefix}ops.{k}.{j}.") for j, f in enumerate(list(op)[1:], 1)],
             "reads": [list(r) for r in reads] if reads is not None else None}
            for k, (op, reads) in enumerate(zip(layer.ops, layer.reads))]


def _core(core: nn.Module, name: str) -> dict[str, Any]:
    conv = isinstance(core, nn.Conv2d)
    return {"type": "Conv2d" if conv else "Linear",
            "in": core.in_channels if conv else core.in_features,
            "out": core.out_channels if conv else core.out_features,
            "kernel": list(core.kernel_size) if conv else None,
            "stride": list(core.stride) if conv else None,
            "padding": (list(core.padding) if not isinstance(core.padding, str) else core.padding)
            if conv else None,
            "dilation": list(core.dilation) if conv else None,
            "weight": name + "weight", "bias": name + "bias" if core.bias is not None else None}


def _spec(module: nn.Module) -> tuple[str, dict[str, Any]]:
    cls, args = follower_spec(module)
    return cls, {k: v for k, v in args}


def _follower(module: nn.Module, name: str) -> list[Any]:
    cls, args = follower_spec(module)
    tensors = {k: name + k for k in module.state_dict()}
    return [cls, {k: v for k, v in args}, tensors]


# --------------------------------------------------------------------------- rebuild
def build(spec: Mapping[str, Any], state: Mapping[str, torch.Tensor], tasks: list[str],
          layout: str = "dense") -> FusedNet:
    """The FusedNet a description + state dict describe (eval mode); ExportError if they disagree
    or the description is malformed."""
    try:
        layers = [_layer(d) for d in spec["layers"]]
        heads = [_layer(d) for d in spec["heads"]]
        head_at = [int(d["input_layer"]) for d in spec["heads"]]
        names = [str(d["name"]) for d in spec["layers"]]
        wiring, posts = _wiring(spec["layers"])
    except (KeyError, TypeError, ValueError, IndexError, StructureError) as exc:
        raise ExportError(f"the manifest's architecture is malformed ({type(exc).__name__}: {exc})") from exc
    if len(heads) != len(tasks) or any(not 0 <= h < len(layers) for h in head_at):
        raise ExportError(f"the manifest's architecture has {len(heads)} heads for tasks {tasks}, or a head "
                          "reads a layer that does not exist")
    try:
        net = FusedNet(tasks, layers, heads, head_at, [[] for _ in layers], layout, names, wiring, posts)
    except StructureError as exc:
        raise ExportError(f"the manifest's architecture is malformed: {exc}") from exc
    expected = net.state_dict()
    bad = sorted(set(expected) ^ set(state))
    if bad:
        raise ExportError(f"the weights do not match the manifest's architecture: tensor(s) {bad[:5]} are "
                          "in one but not the other")
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise ExportError(f"tensor {k!r} has shape {tuple(state[k].shape)}, the architecture says "
                              f"{tuple(v.shape)}")
    net.load_state_dict(dict(state))
    return net.eval()


def _wiring(layers: list[Mapping[str, Any]]) -> tuple[list[tuple[int, int]] | None, dict[int, nn.Module]]:
    """(wiring, posts) of the layer descriptions: (None, {}) for a chain (no "source" keys)."""
    if not any("source" in d for d in layers):
        return None, {}
    wiring = [(-1 if d["source"] is None else int(d["source"]), -1 if d["add"] is None else int(d["add"]))
              for d in layers]
    posts = {i: nn.Sequential(*(make_post_op((cls, tuple(args.items()))) for cls, args in d["post"]))
             for i, d in enumerate(layers) if d["post"]}
    return wiring, posts


def _layer(d: Mapping[str, Any]) -> FusedLayer:
    ops, reads = [], []
    for op in d["ops"]:
        c = op["core"]
        kind = "conv" if c["type"] == "Conv2d" else "fc"
        if c["type"] not in ("Conv2d", "Linear"):
            raise ValueError(f"unknown core type {c['type']!r}")
        geo = (tuple(c["kernel"]), tuple(c["stride"]),
               c["padding"] if isinstance(c["padding"], str) else tuple(c["padding"]),
               tuple(c["dilation"])) if kind == "conv" else (1, 1, 0, 1)
        core = make_core(kind, int(c["in"]), int(c["out"]), *geo, bias=c["bias"] is not None)
        followers = [make_follower((cls, tuple(args.items())), int(c["out"]))
                     for cls, args, _ in op["followers"]]
        ops.append(nn.Sequential(core, *followers))
        reads.append(None if op["reads"] is None else tuple((int(a), int(b)) for a, b in op["reads"]))
    return FusedLayer(ops, reads, bool(d["flatten_input"]))


__all__ = ["describe", "build"]
