"""Measured latency (torch.utils.benchmark): of a merged network per task subset, and of plain
modules such as the fused subset models of :mod:`pam_explorer.merge.fuse`.

A figure is the median of ``blocked_autorange`` over at least ``min_run_time`` seconds of one
forward pass under ``torch.no_grad()`` in eval mode, CUDA synchronised inside the timed call.
Threads: torch's intra-op threads while timing (None: the current setting).
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from pam_explorer.core.device import quiet_cuda_probe, resolve_device
from pam_explorer.core.subsets import parse_key, subset_key, subset_masks


def _on(model: nn.Module, dev: torch.device) -> nn.Module:
    """``model`` itself if it already lives on ``dev``, else a copy moved there (never moves it)."""
    param = next(model.parameters(), None)
    return model if param is None or param.device == dev else copy.deepcopy(model).to(dev)


def _median_seconds(call: Callable[[], object], dev: torch.device, threads: int | None,
                    min_run_time: float) -> float:
    # imported here: torch.utils.benchmark loads cpp_extension, which warns on machines with a
    # CUDA toolkit but no GPU; that warning is dropped (it would open every run log)
    quiet_cuda_probe()
    from torch.utils.benchmark import Timer

    def run() -> None:
        with torch.no_grad():
            call()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
    n = threads if threads is not None else torch.get_num_threads()
    timer = Timer(stmt="run()", globals={"run": run}, num_threads=n)
    return float(timer.blocked_autorange(min_run_time=min_run_time).median)


def measure_latency(net: nn.Module, subsets: Sequence[str | Sequence[str]] | None = None,
                    input_shape: Sequence[int] | None = None, device: str | torch.device = "cpu",
                    min_run_time: float = 0.2, threads: int | None = None) -> dict[str, float]:
    """{subset name: median seconds of one forward pass ``net(x, tasks)``} of a merged network.

    input_shape defaults to (1, C, S, S) of the network's geometry. The net is copied when it has
    to move to ``device``, so the caller's net is never moved; its train/eval mode is restored.
    """
    dev = resolve_device(device)
    geo = net.geometry
    shape = tuple(input_shape or (1, geo.in_channels, geo.image_size, geo.image_size))
    model = _on(net, dev)
    names = [subset_key(parse_key(s, net.tasks)) for s in subsets] if subsets is not None else \
        list(subset_masks(net.tasks))
    x = torch.randn(shape, device=dev)
    was_training = model.training
    model.eval()
    try:
        return {name: _median_seconds(lambda t=tuple(name.split("+")): model(x, t), dev, threads,
                                      min_run_time) for name in names}
    finally:
        model.train(was_training)


def measure_models_latency(models: Mapping[str, nn.Module], input_shape: Sequence[int], batch: int = 1,
                           threads: int | None = None, device: str | torch.device = "cpu",
                           min_run_time: float = 0.2) -> dict[str, float]:
    """{name: median seconds of one forward pass ``model(x)``} with x of shape (batch, *input_shape).

    input_shape: (C, H, W). Models are put in eval mode (their mode is restored) and copied when
    they have to move to ``device``. One input, drawn once, is shared by all models.
    """
    dev = resolve_device(device)
    x = torch.randn((batch, *input_shape), device=dev)
    out = {}
    for name, model in models.items():
        m = _on(model, dev)
        was_training = m.training
        m.eval()
        try:
            out[name] = _median_seconds(lambda m=m: m(x), dev, threads, min_run_time)
        finally:
            m.train(was_training)
    return out


__all__ = ["measure_latency", "measure_models_latency"]
