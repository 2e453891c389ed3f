"""Chain networks: an ordered dict of neuron-holding blocks followed by a linear head.

Each block starts with the layer that holds the neurons (``nn.Conv2d`` or ``nn.Linear``) and is
followed only by per-neuron operations (BatchNorm, ReLU, max pooling, dropout). That is the
structure the paper's Algorithm 1 yields for chain networks, and it lets the layer map and the
merger treat every block as one layer of neurons.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from pam_explorer.core.errors import StructureError


class ChainNet(nn.Module):
    """blocks: name -> nn.Sequential(neuron layer, per-neuron ops...); head: nn.Linear.

    forward: (N, C_in, H, W) -> (N, num_outputs); a conv feature map is flattened (channel-major)
    before the first linear block.
    """

    kind = "chain"  # zoo.registry.model_kind: the dispatch key of layer map, geometry and merging

    def __init__(self, blocks: OrderedDict[str, nn.Sequential], head: nn.Linear, arch: str,
                 in_channels: int, image_size: int, hparams: dict | None = None) -> None:
        super().__init__()
        for name, block in blocks.items():
            if not isinstance(block[0], (nn.Conv2d, nn.Linear)):
                raise StructureError(f"block {name!r} must start with Conv2d or Linear")
        self.blocks = nn.ModuleDict(blocks)
        self.head = head
        self.arch = arch
        self.in_channels = in_channels
        self.image_size = image_size
        self.hparams = dict(hparams or {})

    @property
    def num_outputs(self) -> int:
        return self.head.out_features

    def body(self, x: torch.Tensor) -> torch.Tensor:
        """Run every block: (N, C, H, W) -> (N, F) features read by the head."""
        for block in self.blocks.values():
            if isinstance(block[0], nn.Linear) and x.dim() > 2:
                x = x.flatten(1)
            x = block(x)
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def flat_features(blocks: OrderedDict[str, nn.Sequential], in_channels: int, image_size: int) -> int:
    """Number of features a (1, C, H, W) input has after the given conv blocks, flattened."""
    # two samples so BatchNorm in training mode accepts a 1x1 map
    x = torch.zeros(2, in_channels, image_size, image_size)
    with torch.no_grad():
        for block in blocks.values():
            x = block(x)
    return int(x[0].numel())
