"""Per-neuron ops of a neuron layer (BatchNorm, ReLU, pooling, dropout) as JSON-able specs.

A spec is ``(class name in torch.nn, ((constructor argument, value), ...))``
(:data:`~pam_explorer.core.geometry.FollowerSpec`): the geometry of a network records its
layers' ops by spec, and a merged network's groups are rebuilt from the specs alone.
"""
from __future__ import annotations

from torch import nn

from pam_explorer.core.errors import StructureError
from pam_explorer.core.geometry import FollowerSpec

_FOLLOWER_ARGS: dict[str, tuple[str, ...]] = {
    "ReLU": ("inplace",), "LeakyReLU": ("negative_slope", "inplace"), "ELU": ("alpha", "inplace"),
    "GELU": ("approximate",), "Sigmoid": (), "Tanh": (), "Identity": (),
    "MaxPool2d": ("kernel_size", "stride", "padding", "dilation", "ceil_mode"),
    "AvgPool2d": ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad"),
    "AdaptiveAvgPool2d": ("output_size",),
    "Dropout": ("p", "inplace"), "Dropout2d": ("p", "inplace"),
    "BatchNorm1d": ("eps", "momentum", "affine", "track_running_stats"),
    "BatchNorm2d": ("eps", "momentum", "affine", "track_running_stats"),
}


def follower_spec(module: nn.Module) -> FollowerSpec:
    """JSON-able (class name, constructor arguments) of a supported per-neuron op."""
    name = type(module).__name__
    if name not in _FOLLOWER_ARGS or type(module) is not getattr(nn, name, None):
        raise StructureError(f"unsupported per-neuron op {name}; supported: {sorted(_FOLLOWER_ARGS)}")
    args = [(a, getattr(module, a)) for a in _FOLLOWER_ARGS[name]]
    if name.startswith("BatchNorm") and module.affine and module.bias is None:
        args.append(("bias", False))
    return name, tuple(args)


def make_follower(spec: FollowerSpec, width: int) -> nn.Module:
    """A fresh per-neuron op of ``width`` neurons from its spec."""
    name, args = spec
    if name not in _FOLLOWER_ARGS:
        raise StructureError(f"unsupported per-neuron op {name}; supported: {sorted(_FOLLOWER_ARGS)}")
    cls = getattr(nn, name)
    return cls(width, **dict(args)) if name.startswith("BatchNorm") else cls(**dict(args))


def make_post_op(spec: FollowerSpec) -> nn.Module:
    """A parameter-free op applied after an addition (a residual block's ReLU, pooling), never in
    place (the summands may be kept); StructureError if the op holds parameters or buffers."""
    name, args = spec
    module = make_follower((name, tuple((a, False if a == "inplace" else v) for a, v in args)), 0)
    if any(True for _ in module.parameters()) or any(True for _ in module.buffers()):
        raise StructureError(f"op {name} after an addition must be parameter-free")
    return module


__all__ = ["follower_spec", "make_follower", "make_post_op"]
