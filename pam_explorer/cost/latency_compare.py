"""Latency of several schemes' subset models, measured so that the figures can be compared, and
checked before anything is called a gain (issue 26, point 1).

Measuring each scheme once, one after the other, lets a busy spell of the machine land on one
scheme only: a run once showed B1 343x slower than PAM for networks whose FLOPs differ by < 2x.
Here every (scheme, subset) model is timed once per *round*, round-robin, for ``rounds`` rounds
(round r starts at cell r mod n, so no cell always follows the same one), with a fixed number of
torch intra-op threads. A busy spell then costs every scheme a few samples alike, and the median
over rounds ignores it.

One sample = the mean time of ``number`` consecutive calls, ``number`` chosen once per cell from
a warm-up call so that a sample lasts at least ``min_sample_s`` (timer resolution and call
overhead stay small). Per cell: the median and the interquartile range (IQR, q75 - q25, linear
interpolation) of the samples, in ms.

A figure is **unreliable** (never charted or summed as a gain) when

* ``spread``: its IQR is above ``spread`` x its median (default 0.5: the middle half of the
  samples spans more than half the typical time), or
* ``flops``: its latency ratio to the other schemes' figures of the same subset disagrees with
  their FLOPs ratio by more than ``flops_factor`` (default 3x, either way) for a strict majority
  of those others (only figures that passed the spread check are references). With three
  schemes the odd one out is flagged, not the two that agree; with two schemes, both are (it
  cannot be told which is wrong).

:func:`compare_latency` is the one call: models (or zero-argument callables) and FLOPs in, the
report's ``latency_ms``, ``latency_measurement`` and ``latency_gains`` out. The clock is
injectable (``clock``: seconds as a float) so tests can slow a scheme down without sleeping.
"""
from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pam_explorer.core import validate as v
from pam_explorer.core.errors import ConfigError
from pam_explorer.cost.analytic import average_gain, peak_gain

Clock = Callable[[], float]
Model = nn.Module | Callable[[], object]
BASELINES = ("B1", "B2")


@dataclass(frozen=True)
class LatencySettings:
    """How figures are measured and judged (see the module docstring).

    rounds: samples per (scheme, subset), >= 3 (an IQR needs a few); threads: torch intra-op
    threads while timing; min_sample_s: shortest sample, seconds; warmup: untimed calls per cell
    before the rounds; spread: largest IQR / median of a reliable figure; flops_factor: largest
    disagreement (x, either way) of latency and FLOPs ratios of a reliable figure."""

    rounds: int = 21
    threads: int = 1
    min_sample_s: float = 0.005
    warmup: int = 2
    spread: float = 0.5
    flops_factor: float = 3.0

    def __post_init__(self) -> None:
        v.positive_int(self, "rounds")
        if self.rounds < 3:
            v.fail(self, "rounds", f"must be >= 3 (a median and an IQR need samples), got {self.rounds}")
        v.positive_int(self, "threads")
        v.finite_positive(self, "min_sample_s")
        v.non_negative_int(self, "warmup")
        v.finite_positive(self, "spread")
        v.in_interval(self, "flops_factor", 1.0, math.inf)

    @property
    def rule(self) -> str:
        return (f"interleaved: every (scheme, subset) timed once per round, round-robin, {self.rounds} "
                f"rounds, {self.threads} torch thread(s); median and IQR of the rounds' ms per call; "
                f"unreliable when IQR > {self.spread:g} x median, or when its latency ratio to most other "
                f"schemes' reliable figures of the subset differs from their FLOPs ratio by more than "
                f"{self.flops_factor:g}x")


# --------------------------------------------------------------------------- measuring
def measure_interleaved(calls: Mapping[str, Mapping[str, Callable[[], object]]],
                        settings: LatencySettings = LatencySettings(),
                        clock: Clock = time.perf_counter) -> dict[str, dict[str, list[float]]]:
    """{scheme: {subset: [ms per call, one per round]}} of zero-argument ``calls``, timed
    round-robin (see the module docstring) with ``settings.threads`` torch threads (the previous
    setting is restored)."""
    cells = [(s, k) for s, per in calls.items() for k in per]
    if not cells:
        raise ConfigError("compare_latency: no (scheme, subset) model to measure")
    before = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        number = {cell: _calibrate(calls[cell[0]][cell[1]], settings, clock) for cell in cells}
        out: dict[str, dict[str, list[float]]] = {s: {k: [] for k in per} for s, per in calls.items()}
        for r in range(settings.rounds):
            start = r % len(cells)
            for scheme, subset in cells[start:] + cells[:start]:
                fn, n = calls[scheme][subset], number[(scheme, subset)]
                t0 = clock()
                for _ in range(n):
                    fn()
                out[scheme][subset].append(1e3 * (clock() - t0) / n)
        return out
    finally:
        torch.set_num_threads(before)


def _calibrate(fn: Callable[[], object], settings: LatencySettings, clock: Clock) -> int:
    """Calls per sample: enough for ``min_sample_s`` at the last warm-up call's speed."""
    took = 0.0
    for _ in range(max(1, settings.warmup)):
        t0 = clock()
        fn()
        took = clock() - t0
    return max(1, math.ceil(settings.min_sample_s / took)) if took > 0 else 1


# --------------------------------------------------------------------------- judging
def _quartiles(xs: list[float]) -> tuple[float, float, float]:
    q1, q2, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return q1, q2, q3


def assess(samples: Mapping[str, Mapping[str, list[float]]], flops: Mapping[str, Mapping[str, float]],
           settings: LatencySettings = LatencySettings()) -> dict[str, dict[str, dict[str, Any]]]:
    """{scheme: {subset: {"median_ms", "iqr_ms", "reliable", "why"}}} of per-round samples (ms),
    judged by the spread and FLOPs rules of the module docstring; ``why`` is None when reliable."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for scheme, per in samples.items():
        out[scheme] = {}
        for subset, xs in per.items():
            q1, med, q3 = _quartiles(list(xs))
            iqr = q3 - q1
            why = (f"spread: IQR {iqr:.3g} ms > {settings.spread:g} x median {med:.3g} ms"
                   if iqr > settings.spread * med else None)
            out[scheme][subset] = {"median_ms": med, "iqr_ms": iqr, "reliable": why is None, "why": why}
    for subset in {k for per in out.values() for k in per}:
        _flops_check(out, flops, subset, settings.flops_factor)
    return out


def _flops_check(fig: dict, flops: Mapping[str, Mapping[str, float]], subset: str, factor: float) -> None:
    """Flag the figures of ``subset`` whose latency/FLOPs ratio disagrees with most references."""
    have = [s for s in fig if subset in fig[s] and (flops.get(s) or {}).get(subset, 0) > 0]
    refs = [s for s in have if fig[s][subset]["reliable"]]
    for s in have:
        cell = fig[s][subset]
        others = [o for o in refs if o != s and fig[o][subset]["median_ms"] > 0]
        if not others or cell["median_ms"] <= 0:
            continue
        off = {}
        for o in others:
            q = (cell["median_ms"] / fig[o][subset]["median_ms"]) / (flops[s][subset] / flops[o][subset])
            if max(q, 1 / q) > factor:
                off[o] = q
        if len(off) * 2 > len(others):
            text = ", ".join(f"vs {o} {q:.3g}x" for o, q in off.items())
            why = f"FLOPs: latency ratio / FLOPs ratio {text}, outside 1/{factor:g}-{factor:g}x"
            cell["why"] = f"{cell['why']}; {why}" if cell["why"] else why
            cell["reliable"] = False


def reliable_gains(figures: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
    """{"vs_B1"|"vs_B2": {"average", "peak", "subsets"}}: PAM's latency gains (baseline ms / PAM
    ms) over the subsets where both figures are reliable; a baseline with no such subset is left
    out. The shape of :func:`pam_explorer.runs.report.gains` (plus the subsets used)."""
    if "PAM" not in figures:
        return {}
    out = {}
    for base in BASELINES:
        if base not in figures:
            continue
        ok = [k for k, c in figures["PAM"].items()
              if c["reliable"] and (figures[base].get(k) or {}).get("reliable")]
        if not ok:
            continue
        b = {k: figures[base][k]["median_ms"] for k in ok}
        p = {k: figures["PAM"][k]["median_ms"] for k in ok}
        out[f"vs_{base}"] = {"average": average_gain(b, p), "peak": peak_gain(b, p), "subsets": ok}
    return out


# --------------------------------------------------------------------------- one call
def _callable(model: Model, x: torch.Tensor | None) -> Callable[[], object]:
    if not isinstance(model, nn.Module):
        if not callable(model):
            raise ConfigError(f"compare_latency: a model must be an nn.Module or a callable, got "
                              f"{type(model).__name__}")
        return model
    if x is None:
        raise ConfigError("compare_latency: nn.Module models need example_input (a (batch, C, H, W) tensor)")
    model.eval()
    sync = x.device.type == "cuda"

    def call() -> object:
        with torch.no_grad():
            out = model(x)
        if sync:
            torch.cuda.synchronize(x.device)
        return out
    return call


def compare_latency(models: Mapping[str, Mapping[str, Model]], flops: Mapping[str, Mapping[str, float]],
                    example_input: torch.Tensor | None = None,
                    settings: LatencySettings = LatencySettings(),
                    clock: Clock = time.perf_counter) -> dict[str, Any]:
    """Measure and judge every scheme's subset models in one interleaved measurement.

    models: {scheme: {subset: fused nn.Module (called as ``model(example_input)`` under no_grad,
    in eval mode) or a zero-argument callable}}; flops: {scheme: {subset: FLOPs}} of the same
    models (what the latency is checked against). Returns the report's keys::

        {"latency_ms": {scheme: {subset: median ms}},
         "latency_measurement": {"threads", "rounds", "rule",
                                 "schemes": {scheme: {subset: {"median_ms", "iqr_ms", "reliable", "why"}}}},
         "latency_gains": {"vs_B1"|"vs_B2": {"average", "peak", "subsets"}}}   # reliable figures only
    """
    calls = {s: {k: _callable(m, example_input) for k, m in per.items()} for s, per in models.items()}
    figures = assess(measure_interleaved(calls, settings, clock), flops, settings)
    return {"latency_ms": {s: {k: round(c["median_ms"], 4) for k, c in per.items()}
                           for s, per in figures.items()},
            "latency_measurement": {"threads": settings.threads, "rounds": settings.rounds,
                                    "rule": settings.rule, "schemes": figures},
            "latency_gains": reliable_gains(figures)}


__all__ = ["LatencySettings", "measure_interleaved", "assess", "reliable_gains", "compare_latency"]
