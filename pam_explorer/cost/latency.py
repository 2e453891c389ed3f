"""Measured latency of a merged network per task subset (torch.utils.benchmark)."""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from pam_explorer.core.device import resolve_device
from pam_explorer.core.subsets import parse_key, subset_key, subset_masks


def measure_latency(net: nn.Module, subsets: Sequence[str | Sequence[str]] | None = None,
                    input_shape: Sequence[int] | None = None, device: str | torch.device = "cpu",
                    min_run_time: float = 0.2) -> dict[str, float]:
    """{subset name: median seconds of one forward pass} (torch.utils.benchmark, no grad, eval).

    input_shape defaults to (1, C, S, S) of the network's geometry. The net is copied when it has
    to move to ``device``, so the caller's net is never moved; its train/eval mode is restored.
    """
    # imported here: torch.utils.benchmark loads cpp_extension, which warns on machines without CUDA
    from torch.utils.benchmark import Timer

    dev = resolve_device(device)
    geo = net.geometry
    shape = tuple(input_shape or (1, geo.in_channels, geo.image_size, geo.image_size))
    param = next(net.parameters(), None)
    model = net if param is None or param.device == dev else copy.deepcopy(net).to(dev)
    names = [subset_key(parse_key(s, net.tasks)) for s in subsets] if subsets is not None else \
        list(subset_masks(net.tasks))
    x = torch.randn(shape, device=dev)
    was_training = model.training
    model.eval()
    try:
        out = {}
        for name in names:
            def run(tasks: tuple[str, ...] = tuple(name.split("+"))) -> None:
                with torch.no_grad():
                    model(x, tasks)
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
            timer = Timer(stmt="run()", globals={"run": run}, num_threads=torch.get_num_threads())
            out[name] = float(timer.blocked_autorange(min_run_time=min_run_time).median)
        return out
    finally:
        model.train(was_training)



__all__ = ["measure_latency"]
