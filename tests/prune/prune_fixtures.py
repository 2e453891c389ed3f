"""Tiny networks and synthetic multi-label data shared by the pruning tests (not a test module)."""
from __future__ import annotations

import random

import torch

from pam_explorer.core.subsets import all_subsets
from pam_explorer.graph.build import layer_widths
from pam_explorer.merge.build import merge_networks
from pam_explorer.merge.merged_net import MergedNet
from pam_explorer.zoo import build_model

TASKS = ("A", "B")


def tiny_nets(seed: int = 0) -> list:
    """Half-width LeNet-5s: task A with 2 labels, task B with 1."""
    nets = []
    for t, n_out in enumerate((2, 1)):
        torch.manual_seed(seed + t)
        nets.append(build_model("lenet5", n_out, 1, 32, width=0.5))
    return nets


def random_grouping(nets, seed: int = 0, random_anchor: bool = False) -> dict:
    """A random task subset per neuron; one anchor neuron per layer (the first, or a random one)
    goes to the all-task group so that group is never empty."""
    rng = random.Random(seed)
    keys = all_subsets(TASKS)
    out = {}
    for layer, widths in layer_widths(nets).items():
        anchor = rng.randrange(sum(widths)) if random_anchor else 0
        groups = {key: [] for key in keys}
        for i in range(sum(widths)):
            groups[TASKS if i == anchor else rng.choice(keys)].append(i)
        out[layer] = groups
    return out


def merged_net(seed: int = 0) -> MergedNet:
    nets = tiny_nets(seed)
    return merge_networks(nets, TASKS, random_grouping(nets, seed))


def synthetic(n: int, seed: int, tasks=TASKS):
    """Noise + a fixed pattern per positive label: images (n, 1, 32, 32), A has 2 labels, B 1."""
    gen = torch.Generator().manual_seed(seed)
    patterns = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(99))
    labels = (torch.rand(n, 3, generator=gen) > 0.5).float()
    images = 0.5 * torch.randn(n, 1, 32, 32, generator=gen) + torch.einsum("nl,lchw->nchw", labels, patterns)
    targets = {"A": labels[:, :2], "B": labels[:, 2:]}
    return images, {t: targets[t] for t in tasks}
