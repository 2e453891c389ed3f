"""How long training-like work takes, from a network's FLOPs and the number of pictures.

A picture costs ``FLOPs`` (2 x MACs, batch 1, :func:`forward_flops`) forward, and about three
times that forward + backward. The CPU throughput of PyTorch training grows with the network's
size (small layers are overhead-bound) about as FLOPs ** 0.25:
``rate = CPU_RATE_1MFLOP * (FLOPs / 1e6) ** 0.25`` FLOP/s for 2 threads, scaled by threads / 2.
The constant sits between two measurements on the 2-core machine (BENCHMARKS.md "Time
estimates"): batch 128 on one thread beside another job gave 11 GFLOP/s x (FLOPs / 1e6) ** 0.25
(LeNet-5 at 32 px 10.5, ResNet-18 at 224 px 66), and the first calibration, 2 threads under a load
of 7-9, 2.5 GFLOP/s; the rule is slower than the first on purpose (a busy machine). A CUDA device
is not modelled: the CPU figure is given and called an upper bound. A 224-px ResNet-18 (3.6
GFLOPs) finetuned 10 epochs on 10,000 pictures is about 4 h by this rule.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

CPU_RATE_1MFLOP = 1.0e10  # FLOP/s of training a 1-MFLOP network on 2 CPU threads (see above)
RATE_EXPONENT = 0.25
BACKWARD = 3.0  # forward + backward ~ 3 forward passes


@dataclass(frozen=True)
class Work:
    """``trained`` pictures forward + backward and ``evaluated`` pictures forward through a
    network of ``flops`` FLOPs per picture."""

    flops: float
    trained: float = 0.0
    evaluated: float = 0.0


def forward_flops(net: nn.Module, in_channels: int, image_size: int) -> int:
    """FLOPs of one (1, in_channels, image_size, image_size) picture through ``net`` (eval mode,
    no gradients), counted by torch's FlopCounterMode."""
    was = net.training
    net.eval()
    try:
        x = torch.zeros(1, in_channels, image_size, image_size, device=next(net.parameters()).device)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            net(x)
    finally:
        net.train(was)
    return int(counter.get_total_flops())


def rate(flops: float, threads: int = 2) -> float:
    """Training throughput in FLOP/s on ``threads`` CPU threads for a network of ``flops``."""
    return CPU_RATE_1MFLOP * max(flops / 1e6, 1e-3) ** RATE_EXPONENT * max(threads, 1) / 2


def seconds(works: Iterable[Work], threads: int = 2) -> float:
    """Estimated wall time of ``works`` in seconds."""
    return sum((w.trained * BACKWARD + w.evaluated) * w.flops / rate(w.flops, threads) for w in works)


def duration_text(s: float) -> str:
    """"about 40 s", "about 12 min", "about 3 h 10 min", "about 2.5 days"."""
    if s < 90:
        return f"about {max(1, round(s))} s"
    if s < 3600:
        return f"about {round(s / 60)} min"
    if s < 2 * 86400:
        h, m = divmod(round(s / 60), 60)
        return f"about {h} h {m} min" if m else f"about {h} h"
    return f"about {s / 86400:.1f} days"


__all__ = ["Work", "forward_flops", "rate", "seconds", "duration_text", "CPU_RATE_1MFLOP"]
