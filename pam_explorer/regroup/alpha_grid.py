"""The alphas worth sweeping: where the grouping changes, thinned to a few log-spaced values.

A layer's groups at alpha are prefix cuts of its trajectories (``algorithms.cut``): the cut of a
trajectory grows exactly when alpha reaches one of the distinct values of its running maximum
score (MI minus chance level, bits). Those values, over every layer, every exclusive subset and
every MI sample (one per seed), are the *change points*; between two consecutive ones no grouping
changes, so sweeping anything else repeats a grouping.

``auto_alphas`` keeps the change points that span the flat phase to the rising phase
(``algorithms.phases``) and thins them to at most ``max_count`` log-spaced values:

* upper end ``hi``: the largest running-maximum value inside any trajectory's flat or rising
  phase (the step before its saturating phase starts); above it every trajectory only saturates;
* lower end ``lo``: the smallest positive change point not below ``hi / 10**decades`` (default
  three decades): lower scores are the estimator's noise on dead neurons (about 1e-6 bits);
* if more than ``max_count`` change points lie in [lo, hi], the one nearest (in log alpha) to
  each of ``max_count`` log-spaced targets from lo to hi is kept (each once, so lo and hi always
  are). Every returned alpha is a change point itself: the grouping at it includes the step that
  scores exactly alpha (cuts take scores <= alpha).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pam_explorer.core.errors import ConfigError
from pam_explorer.regroup.algorithms import Trajectory, phases

MAX_COUNT = 8  # alphas kept by default
DECADES = 3.0  # lo is at least hi / 10**DECADES

LayerTrajs = Mapping[str, Mapping[tuple[str, ...], Trajectory]]  # layer -> subset -> trajectory


@dataclass(frozen=True)
class AutoAlphas:
    """The chosen alphas (bits, ascending) and how they were chosen."""

    alphas: tuple[float, ...]
    lo: float  # lower end of the span
    hi: float  # upper end of the span
    candidates: int  # change points in [lo, hi] before thinning
    max_count: int
    decades: float

    def as_dict(self) -> dict:
        return {"rule": "auto", "alphas": list(self.alphas), "lo": self.lo, "hi": self.hi,
                "candidates": self.candidates, "max_count": self.max_count, "decades": self.decades}


def change_points(traj: Trajectory) -> list[float]:
    """Distinct values of the running maximum score, ascending: the alphas at which the cut of
    ``traj`` grows."""
    return sorted(set(traj.running_max))


def _span_top(traj: Trajectory) -> float | None:
    """Running maximum at the last step of the flat or rising phase (None: no such step)."""
    end = phases(traj)[1][2]  # the rising phase's end = the saturating phase's start
    return traj.running_max[end - 1] if end > 0 else None


def auto_alphas(sets: Iterable[LayerTrajs], max_count: int = MAX_COUNT,
                decades: float = DECADES) -> AutoAlphas:
    """The sweep's alphas from one or more sets of layer trajectories (one per seed's MI sample).

    Raises ConfigError if no positive change point exists (no alpha changes any grouping) or if
    ``max_count`` < 2 or ``decades`` <= 0.
    """
    if not (isinstance(max_count, int) and max_count >= 2) or not decades > 0:
        raise ConfigError(f"auto_alphas: need max_count >= 2 and decades > 0, got {max_count!r}, {decades!r}")
    trajs = [t for layers in sets for subsets in layers.values() for t in subsets.values() if t.mi]
    tops = [top for top in map(_span_top, trajs) if top is not None and top > 0]
    if not tops:
        raise ConfigError("--alphas auto: no trajectory rises above 0 bits, so no alpha changes the "
                          "grouping; give the alphas yourself (e.g. --alphas 0,0.1)")
    hi = max(tops)
    floor = hi / 10 ** decades
    points = sorted({v for t in trajs for v in change_points(t) if floor <= v <= hi})
    lo = points[0]
    if len(points) <= max_count:
        chosen = points
    else:
        chosen = _thin(points, lo, hi, max_count)
    return AutoAlphas(tuple(chosen), lo, hi, len(points), max_count, float(decades))


def _thin(points: list[float], lo: float, hi: float, n: int) -> list[float]:
    """For each of ``n`` log-spaced targets from lo to hi, the nearest unused point in log alpha."""
    logs = [math.log(p) for p in points]
    left = set(range(len(points)))
    chosen = []
    for i in range(n):
        target = math.log(lo) + (math.log(hi) - math.log(lo)) * i / (n - 1)
        j = min(left, key=lambda k: (abs(logs[k] - target), k))
        left.discard(j)
        chosen.append(points[j])
    return sorted(chosen)


__all__ = ["AutoAlphas", "auto_alphas", "change_points", "MAX_COUNT", "DECADES"]
