"""Helpers shared by test modules in different folders (import as ``tests.helpers``)."""
from __future__ import annotations

import random
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pam_explorer.core.subsets import all_subsets
from pam_explorer.graph.build import layer_widths
from pam_explorer.merge.merged_net import MergedNet
from pam_explorer.runs import jobs
from pam_explorer.zoo import build_model


def randomise_bn(net: nn.Module, seed: int) -> nn.Module:
    """Give every BatchNorm2d non-trivial running statistics and affine parameters, in place,
    so that equality tests would notice a BN applied to the wrong neurons."""
    gen = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.2)
    return net


def random_grouping(nets, tasks, seed: int, empty: tuple[str, ...] | None = None) -> dict:
    """Random assignment of every neuron to a task subset; the all-task group is never empty (so
    every group has an input and every head a path); ``empty`` is present with no neurons."""
    rng = random.Random(seed)
    keys = all_subsets(tasks)
    out = {}
    for layer, widths in layer_widths(nets).items():
        total = sum(widths)
        groups = {key: [] for key in keys}
        anchor = rng.randrange(total)
        for i in range(total):
            key = tuple(tasks) if i == anchor else rng.choice(keys)
            groups[tuple(tasks) if key == empty else key].append(i)
        out[layer] = groups
    return out


def measured(net: MergedNet, tasks) -> tuple[int, int]:
    """(FLOPs by FlopCounterMode, parameters of the modules that actually ran) at batch 1."""
    ran: list[nn.Module] = []
    mods = [m for g in net.groups.values() for m in g.values()] + list(net.heads.values())
    handles = [m.register_forward_hook(lambda m, *_: ran.append(m)) for m in mods]
    x = torch.randn(1, net.geometry.in_channels, net.geometry.image_size, net.geometry.image_size)
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            net(x, tasks)
    finally:
        for h in handles:
            h.remove()
    return counter.get_total_flops(), sum(p.numel() for m in ran for p in m.parameters())


def tiny_resnets(k: int, seed: int = 0, arch: str = "resnet18", size: int = 16,
                 outputs: tuple[int, ...] | None = None) -> list[nn.Module]:
    """k tiny single-task ResNets (width 1/16: 4-8-16-32 channels, small-input stem, 1 input
    channel, size x size pictures), task t with outputs[t] (default 2 + t) logits, random BN
    statistics, eval mode."""
    nets = []
    for t in range(k):
        torch.manual_seed(seed + t)
        net = build_model(arch, (outputs or tuple(2 + i for i in range(k)))[t], 1, size, width=1 / 16,
                          small_input=True)
        nets.append(randomise_bn(net, seed + t).eval())
    return nets


def wait_for(root, run_id, states=jobs.FINAL, timeout=30.0) -> dict:
    """Poll the dashboard's job queue in ``root`` until run ``run_id`` reaches one of ``states``;
    its status. AssertionError naming the state it is stuck in after ``timeout`` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        jobs.poll(root)
        st = jobs.read_status(run_id, root)
        if st["state"] in states:
            return st
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} stuck in {jobs.read_status(run_id, root)['state']}")
