"""Summary statistics over seeds: mean, sample std and a 95 % CI of the mean.

Pure computation on lists of floats. The interval (:func:`ci`) is a percentile bootstrap for 5
or more values (seeded, so a report is reproducible) and a Student-t interval for 2-4 values (a
percentile bootstrap of 3 values is just [min, max]); :func:`summary` says which (``method``).
With one value the interval is that value (no spread can be estimated, and the report says
n = 1). Either is shown as what it is: a statement about these seeds.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from scipy import stats as sps

N_BOOT = 10_000
LEVEL = 0.95
MIN_BOOTSTRAP = 5  # fewer values: a t-interval


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


def t_ci(xs: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """Student-t interval of the mean: mean -+ t_{n-1} * std / sqrt(n) (n >= 2)."""
    n, m = len(xs), mean(xs)
    half = float(sps.t.ppf((1 + level) / 2, n - 1)) * std(xs) / math.sqrt(n)
    return m - half, m + half


def ci_method(n: int) -> str:
    return "bootstrap" if n >= MIN_BOOTSTRAP else "t" if n >= 2 else "none"


def ci(xs: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """The 95 % interval of the mean of ``xs`` by :func:`ci_method` (one value: itself)."""
    if not xs:
        raise ValueError("ci of no values")
    method = ci_method(len(xs))
    if method == "t":
        return t_ci(xs, level)
    return bootstrap_ci(xs, level)


def summary(xs: Sequence[float]) -> dict:
    """{"mean", "std", "ci95": [lo, hi], "method": "bootstrap" | "t" | "none", "n", "values"}."""
    lo, hi = ci(xs)
    return {"mean": mean(xs), "std": std(xs), "ci95": [lo, hi], "method": ci_method(len(xs)),
            "n": len(xs), "values": [float(x) for x in xs]}


SINGLE = "single seed"  # the verdict of one value: no interval, so no claim


def verdict(ci: Sequence[float], null: float = 1.0, n: int = 2) -> str:
    """"above" / "below" when the interval excludes ``null`` (e.g. gain 1 = no difference),
    else "no difference" (the interval includes it); :data:`SINGLE` when ``n`` < 2 values made
    the interval (it is then the value itself, and excludes nothing)."""
    if n < 2:
        return SINGLE
    lo, hi = ci
    return "above" if lo > null else "below" if hi < null else "no difference"


__all__ = ["mean", "std", "bootstrap_ci", "t_ci", "ci", "ci_method", "summary", "verdict", "SINGLE",
           "N_BOOT", "LEVEL"]
