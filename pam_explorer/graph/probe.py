"""A shape probe: one zero image through a single-task network, changing nothing in it.

The geometry of a family of networks (:mod:`.build` for chain nets, :mod:`.residual` for residual
nets) needs the spatial size of every layer's output; one forward pass on a zero image gives it.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def probe(net: nn.Module, run: Callable[[torch.Tensor], object]) -> None:
    """Call ``run`` on one zero image (1, C, H, W) of ``net``'s input channels, image size,
    device and dtype, with ``net`` in eval mode (BatchNorm reads its running statistics and
    updates none) and no autograd; ``net``'s mode is restored afterwards, also on an error."""
    p = next(net.parameters())
    x = torch.zeros(1, net.in_channels, net.image_size, net.image_size, device=p.device, dtype=p.dtype)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            run(x)
    finally:
        net.train(was_training)


__all__ = ["probe"]
