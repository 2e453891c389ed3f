"""Summary statistics over seeds: mean, sample std and a percentile-bootstrap 95 % CI of the mean.

Pure computation on lists of floats. The bootstrap is seeded, so a report is reproducible; with
one value the interval is that value (no spread can be estimated, and the report says n = 1).
With few seeds (5) the percentile bootstrap is narrower than a t-interval; both are shown only
as what they are: a statement about these seeds.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

N_BOOT = 10_000
LEVEL = 0.95


def mean(xs: Sequence[float]) -> float:
    return float(sum(xs) / len(xs))


def std(xs: Sequence[float]) -> float:
    """Sample standard deviation (n - 1); 0 for a single value."""
    if len(xs) < 2:
        return 0.0
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def bootstrap_ci(xs: Sequence[float], level: float = LEVEL, n_boot: int = N_BOOT,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of ``xs`` (resampling the values with
    replacement ``n_boot`` times, generator seeded by ``seed``)."""
    if not xs:
        raise ValueError("bootstrap_ci of no values")
    if len(xs) == 1:
        return float(xs[0]), float(xs[0])
    x = torch.tensor(list(xs), dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(xs), (n_boot, len(xs)), generator=gen)
    means = x[idx].mean(1)
    lo, hi = torch.quantile(means, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64))
    return float(lo), float(hi)


def summary(xs: Sequence[float]) -> dict:
    """{"mean", "std", "ci95": [lo, hi], "n", "values"} of ``xs``."""
    lo, hi = bootstrap_ci(xs)
    return {"mean": mean(xs), "std": std(xs), "ci95": [lo, hi], "n": len(xs),
            "values": [float(x) for x in xs]}


SINGLE = "single seed"  # the verdict of one value: no interval, so no claim


def verdict(ci: Sequence[float], null: float = 1.0, n: int = 2) -> str:
    """"above" / "below" when the interval excludes ``null`` (e.g. gain 1 = no difference),
    else "no difference" (the interval includes it); :data:`SINGLE` when ``n`` < 2 values made
    the interval (it is then the value itself, and excludes nothing)."""
    if n < 2:
        return SINGLE
    lo, hi = ci
    return "above" if lo > null else "below" if hi < null else "no difference"


__all__ = ["mean", "std", "bootstrap_ci", "summary", "verdict", "SINGLE", "N_BOOT", "LEVEL"]
