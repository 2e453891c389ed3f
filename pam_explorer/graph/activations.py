"""Activation capture by forward hooks: per layer, one number per neuron and sample.

A conv channel's map is pooled over space (max by default, mean as option) so that each neuron
is one scalar per sample, as the MI estimator needs. Residual nets are read where
:func:`~pam_explorer.graph.residual.capture_points` says (a stage stream: its last block's output).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from pam_explorer.core.config import POOLINGS
from pam_explorer.core.errors import ConfigError
from pam_explorer.graph.layer_map import layer_map
from pam_explorer.graph.residual import Transform, capture_points
from pam_explorer.zoo.registry import model_kind


def pool_channels(x: torch.Tensor, pooling: str = "max") -> torch.Tensor:
    """(N, C, H, W) -> (N, C) by spatial max or mean; (N, C) passes through."""
    if x.dim() == 2:
        return x
    if pooling == "max":
        return x.flatten(2).amax(dim=2)
    if pooling == "mean":
        return x.flatten(2).mean(dim=2)
    raise ConfigError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


@torch.no_grad()
def capture_activations(model: nn.Module, images: torch.Tensor, pooling: str = "max",
                        batch_size: int = 256, device: str | torch.device = "cpu",
                        layers: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Outputs of every neuron layer (after its per-neuron ops) on ``images``.

    images: (N, C, H, W). Returns {layer name: (N, width)} float32 on ``device``. Runs in eval
    mode, in batches of ``batch_size`` so memory stays bounded for large N.
    """
    if pooling not in POOLINGS:
        raise ConfigError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    points = _capture_points(model)
    names = layers or list(points)
    chunks: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    handles = [points[n][0].register_forward_hook(_collector(chunks[n], pooling, points[n][1]))
               for n in names]
    run_hooked(model.to(device), handles, images, batch_size)
    return {n: torch.cat(c).float() for n, c in chunks.items()}


@torch.no_grad()
def run_hooked(model: nn.Module, handles: list, images: torch.Tensor, batch_size: int,
               forward: Callable[[torch.Tensor], object] | None = None) -> None:
    """Run ``model`` over ``images`` (N, C, H, W) in batches, in eval mode, on its own device, for
    the forward hooks behind ``handles``; then remove them and restore the model's mode.
    ``forward`` (default ``model``) is what each batch is given to, e.g. a merged net on one task."""
    was_training, device = model.training, next(model.parameters()).device
    forward = model if forward is None else forward
    model.eval()
    try:
        for start in range(0, images.shape[0], batch_size):
            forward(images[start:start + batch_size].to(device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)


def _capture_points(model: nn.Module) -> dict[str, tuple[nn.Module, Transform]]:
    """{layer: (module whose output is the layer's activation, transform or None)}: a chain
    net's blocks; a residual net's inner convs and stage streams (:func:`capture_points`)."""
    if model_kind(model) == "residual":
        return capture_points(model)
    return {info.name: (model.blocks[info.name], None) for info in layer_map(model)}


def _collector(store: list[torch.Tensor], pooling: str, transform: Transform = None):
    def hook(_module: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        store.append(pool_channels(out if transform is None else transform(out), pooling))
    return hook
