"""Group modules of a merged network: building them empty and slicing them (neuron surgery).

A group is ``nn.Sequential(core, *per-neuron ops)`` where the core is a Conv2d or Linear holding
the group's neurons (output channels / units) and the per-neuron ops (BatchNorm, ReLU, pooling,
dropout) are described by JSON-able :data:`~pam_explorer.core.geometry.FollowerSpec` s
(:mod:`pam_explorer.graph.followers`), so a group can be rebuilt from its geometry alone.
Slicing keeps parameters' device, dtype, ``requires_grad`` and train/eval mode, so surgery in the
middle of training changes nothing but the shapes.
"""
from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from pam_explorer.core.geometry import LayerGeometry
from pam_explorer.graph.followers import follower_spec, make_follower


def _is_per_neuron_stateful(module: nn.Module) -> bool:
    # BatchNorm is the only supported op with per-neuron parameters/buffers
    return type(module).__name__.startswith("BatchNorm")


def make_core(kind: str, n_in: int, n_out: int, kernel: Any = 1, stride: Any = 1, padding: Any = 0,
              dilation: Any = 1, bias: bool = True, device: torch.device | None = None,
              dtype: torch.dtype | None = None) -> nn.Module:
    """An all-zero Conv2d (kind "conv") or Linear core; skip_init avoids a wasted random init."""
    where = {"device": device if device is not None else torch.device("cpu"), "dtype": dtype}
    with warnings.catch_warnings():  # an empty group's init on the meta device warns uselessly
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
        if kind == "conv":
            core = nn.utils.skip_init(nn.Conv2d, n_in, n_out, kernel, stride=stride, padding=padding,
                                      dilation=dilation, bias=bias, **where)
        else:
            core = nn.utils.skip_init(nn.Linear, n_in, n_out, bias=bias, **where)
    with torch.no_grad():
        for p in core.parameters():
            p.zero_()
    return core


def make_group(lg: LayerGeometry, n_in: int, n_out: int) -> nn.Sequential:
    """Sequential(all-zero core n_in -> n_out, fresh per-neuron ops) of layer ``lg``."""
    core = make_core(lg.kind, n_in, n_out, lg.kernel, lg.stride, lg.padding, lg.dilation, lg.bias)
    return nn.Sequential(core, *(make_follower(s, n_out) for s in lg.followers))


def _core_like(core: nn.Module, n_in: int, n_out: int) -> nn.Module:
    """An all-zero core of the same kind/options/device/dtype as ``core`` with new sizes."""
    w = core.weight
    if isinstance(core, nn.Conv2d):
        new = make_core("conv", n_in, n_out, core.kernel_size, core.stride, core.padding,
                        core.dilation, core.bias is not None, w.device, w.dtype)
    else:
        new = make_core("fc", n_in, n_out, bias=core.bias is not None, device=w.device, dtype=w.dtype)
    for p_new, p_old in zip(new.parameters(), core.parameters()):
        p_new.requires_grad_(p_old.requires_grad)
    return new.train(core.training)


def slice_group_out(group: nn.Sequential, idx: torch.Tensor) -> nn.Sequential:
    """The group keeping only output neurons ``idx`` (core rows, bias, BN params and stats)."""
    core = group[0]
    new_core = _core_like(core, core.weight.shape[1], int(idx.numel()))
    followers = []
    with torch.no_grad():
        new_core.weight.copy_(core.weight[idx])
        if core.bias is not None:
            new_core.bias.copy_(core.bias[idx])
        for f in list(group)[1:]:
            if _is_per_neuron_stateful(f):
                new_f = make_follower(follower_spec(f), int(idx.numel())).to(core.weight.device)
                new_state = {k: (v[idx] if v.dim() else v) for k, v in f.state_dict().items()}
                new_f.load_state_dict(new_state)
                for p_new, p_old in zip(new_f.parameters(), f.parameters()):
                    p_new.requires_grad_(p_old.requires_grad)
                f = new_f.train(f.training)
            followers.append(f)
    return nn.Sequential(new_core, *followers).train(group.training)


def slice_inputs(module: nn.Module, offset: int, factor: int, old_width: int,
                 idx: torch.Tensor) -> nn.Module:
    """A group (Sequential) or head (Linear) whose input block of ``old_width`` neurons starting at
    neuron ``offset`` (each ``factor`` consecutive columns) keeps only the neurons ``idx``."""
    core = module[0] if isinstance(module, nn.Sequential) else module
    n_in = core.weight.shape[1]
    dev = core.weight.device
    kept = (idx.to(dev)[:, None] * factor + torch.arange(factor, device=dev)).flatten() + offset * factor
    cols = torch.cat([torch.arange(offset * factor, device=dev), kept,
                      torch.arange((offset + old_width) * factor, n_in, device=dev)])
    new_core = _core_like(core, int(cols.numel()), core.weight.shape[0])
    with torch.no_grad():
        new_core.weight.copy_(core.weight[:, cols])
        if core.bias is not None:
            new_core.bias.copy_(core.bias)
    if isinstance(module, nn.Sequential):
        return nn.Sequential(new_core, *list(module)[1:]).train(module.training)
    return new_core


def group_width(group: nn.Sequential) -> int:
    """Number of neurons (core output channels or units) of a group."""
    core = group[0]
    return int(core.out_channels if isinstance(core, nn.Conv2d) else core.out_features)
