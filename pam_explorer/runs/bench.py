"""Benchmark of the greedy MI trajectory: fast batched code vs the authors' approach.

The authors recompute every candidate's MI from scratch at every greedy step
(``greedy_reference``); the fast code scores all candidates of a step in one batched op on
incrementally updated kernels (``greedy_trajectory``). Pure computation: returns a dict.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from pam_explorer.core.device import resolve_device
from pam_explorer.regroup.greedy import greedy_reference, greedy_trajectory
from pam_explorer.regroup.mutual_info import mi_reference, rms_normalise

_NAIVE_SIZES = (16, 24, 32, 48, 64, 96, 128, 192, 256)


def synthetic_layer(neurons: int, samples: int, labels: int, seed: int = 0,
                    device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """ReLU activations (N, C), RMS-normalised, with a few label-correlated directions, and
    binary labels (N, L)."""
    g = torch.Generator().manual_seed(seed)
    Y = (torch.rand(samples, labels, generator=g) < 0.4).float()
    # ~10% of (label, neuron) pairs carry signal, so neurons range from pure noise to
    # strongly label-related, like a trained layer.
    V = torch.randn(labels, neurons, generator=g) * (torch.rand(labels, neurons, generator=g) < 0.1)
    acts = torch.relu(torch.randn(samples, neurons, generator=g) + 2.0 * Y @ V)
    return rms_normalise(acts).to(device), Y.to(device)


def _timed(fn: Any, *args: Any, device: str) -> tuple[float, Any]:
    """Wall time of fn(*args), synchronising an accelerator so queued work is counted."""
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    sync()
    t0 = time.perf_counter()
    out = fn(*args)
    sync()
    return time.perf_counter() - t0, out


def pick_naive_size(t: torch.Tensor, Y: torch.Tensor, sigma2: float,
                    budget_s: float = 60.0) -> int:
    """Largest neuron count from a fixed ladder whose from-scratch greedy is estimated to
    finish within ``budget_s``: one MI call costs about a + b |S| (pairwise distances over
    |S| neurons); a C-neuron run makes C - k calls with |S| = k + 1 at step k."""
    def call(k: int) -> float:
        t0 = time.perf_counter()
        for _ in range(3):
            mi_reference(t[:, :k], Y, sigma2)
        return (time.perf_counter() - t0) / 3

    k_hi = min(64, t.shape[1])
    call(1)  # warm-up
    a1, a2 = call(1), call(k_hi)
    b = max(0.0, (a2 - a1) / max(1, k_hi - 1))
    a = max(1e-6, a1 - b)
    best = min(_NAIVE_SIZES[0], t.shape[1])
    for c in _NAIVE_SIZES:
        if c > t.shape[1]:
            break
        est = sum((c - k) * (a + b * (k + 1)) for k in range(c))
        if est > budget_s:
            break
        best = c
    return best


def bench_greedy(neurons: int = 1024, samples: int = 128, labels: int = 5,
                 device: str = "cpu", naive_neurons: int | None = None, seed: int = 0,
                 sigma2: float = 0.1, naive_budget_s: float = 60.0,
                 threads: int | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Time one full greedy trajectory (fast code) and the from-scratch approach.

    ``seconds``: fast code, ``neurons`` x ``samples``. ``naive_seconds`` and
    ``fast_seconds_at_naive_size``: both codes on the first ``naive_neurons`` neurons of the
    same data (auto-picked so the naive run takes about ``naive_budget_s``);
    ``speedup`` = their ratio; ``naive_matches_fast``: same greedy order. ``threads`` sets
    torch's intra-op threads for the run (restored afterwards); None keeps the current.
    ``device``: "cpu", "cuda[:i]" or "auto" (:func:`~pam_explorer.core.device.resolve_device`).
    ``progress(message)`` is told when each of the three timed runs starts and ends.
    """
    say = progress or (lambda message: None)
    device = str(resolve_device(device))  # "auto" -> the GPU if present; "cuda" without one: ConfigError
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        t, Y = synthetic_layer(neurons, samples, labels, seed, device)
        greedy_trajectory(t[:, :8], Y, sigma2)  # warm-up (allocator, BLAS init)
        say(f"1/3 fast greedy trajectory, {neurons} neurons x {samples} samples ...")
        seconds, _ = _timed(greedy_trajectory, t, Y, sigma2, device=device)
        say(f"1/3 done in {seconds:.2f} s; sizing the from-scratch baseline (~{naive_budget_s:.0f} s budget)")
        n_naive = naive_neurons or pick_naive_size(t, Y, sigma2, naive_budget_s)
        n_naive = min(n_naive, neurons)
        fast_small, (o_fast, _) = _timed(greedy_trajectory, t[:, :n_naive], Y, sigma2,
                                         device=device)
        say(f"2/3 fast code on {n_naive} neurons: {fast_small:.3f} s; 3/3 from-scratch baseline on "
            f"{n_naive} neurons (the slow part: minutes) ...")
        naive, (o_naive, _, _) = _timed(greedy_reference, t[:, :n_naive], Y, sigma2, device=device)
        say(f"3/3 done in {naive:.1f} s")
        return {
            "seconds": seconds, "naive_seconds": naive,
            "fast_seconds_at_naive_size": fast_small, "speedup": naive / max(fast_small, 1e-12),
            "naive_neurons": n_naive, "neurons": neurons, "samples": samples, "labels": labels,
            "device": str(device), "torch_threads": torch.get_num_threads(),
            "naive_matches_fast": bool(torch.equal(o_fast, o_naive)),
        }
    finally:
        torch.set_num_threads(old_threads)


__all__ = ["bench_greedy", "synthetic_layer", "pick_naive_size"]
