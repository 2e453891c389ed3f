"""Where a published schedule goes (pure arithmetic, :mod:`pam_explorer.prune.schedule` runs it):
the all-task FLOPs each removal event brings the net to, and the FLOPs levels at which a
checkpoint is taken.

Pace: linear in the events from the start to the end, or geometric (the same factor every event:
a net several times one network's size then removes the same fraction of what is left at every
event as that network, where a linear pace makes it remove several times more near the end).
Grid: every ``step`` of the start down to the unit, then of the unit ("linear"), or each level
``step`` below the one before ("geometric": the same relative resolution at every size).
"""
from __future__ import annotations

import math


def event_target(start: float, end: float, event: int, events: int, pace: str) -> float:
    """The FLOPs after event ``event`` (0-based) of ``events``: linear from ``start`` to ``end``
    in the events, or (``pace="geometric"``) ``start * (end / start)^((event + 1) / events)``."""
    done = (event + 1) / events
    if pace == "geometric":
        return start * (end / start) ** done
    return start - (start - end) * (event + 1) / events


def grid_levels(start: float, unit: float, step: float, grid: str = "linear",
                floor: float = 0.0) -> list[float]:
    """The FLOPs of the grid points above ``floor``, descending. "linear": every ``step`` of
    ``start`` down to ``unit``, then the unit itself (when below the start) and every ``step`` of
    it, down to zero; with the unit at the start, every multiple of ``step`` of the start (the first
    version's grid). "geometric": each point ``step`` below the one before: start x (1 - step)^g
    down to the unit, then the unit and unit x (1 - step)^k (needs ``floor`` > 0)."""
    if grid == "geometric":
        if floor <= 0:  # the levels never reach zero: the list would run until floats underflow
            raise ValueError(f"a geometric grid needs floor > 0, got {floor}")
        q = 1 - step
        levels, g = [], 1
        while start * q ** g > unit * (1 + 1e-12) and start * q ** g > floor:
            levels.append(start * q ** g)
            g += 1
        k = 0 if unit < start else 1
        while unit * q ** k > floor:
            levels.append(unit * q ** k)
            k += 1
        return levels
    above = [start * (1 - g * step) for g in range(1, math.ceil(1 / step) + 1)
             if start * (1 - g * step) > unit * (1 + 1e-12)]
    below = [unit * (1 - k * step) for k in range(0 if unit < start else 1, math.ceil(1 / step) + 1)
             if k * step < 1 - 1e-9]
    return above + below


def _powers_at_or_above(flops: float, top: float, q: float, tol: float) -> int:
    """How many k >= 1 have flops <= top * q^k (+ tol); 0 FLOPs is below every one (a large count)."""
    if flops - tol <= 0:
        return 10 ** 12
    return max(0, math.floor(math.log(min(1.0, (flops - tol) / top)) / math.log(q) + 1e-9))


def crossed_levels(flops: float, start: float, unit: float, step: float, grid: str = "linear") -> int:
    """How many of :func:`grid_levels` ``flops`` is at or below, counted arithmetically (a grid
    of 1e9 points is never built)."""
    tol = 1e-9 * step * start
    if grid == "geometric":
        q = 1 - step
        reached = _powers_at_or_above(flops, start, q, tol)
        if unit >= start or flops - tol > unit:
            return reached  # only the points above the unit are at or above the FLOPs
        n_above = _powers_at_or_above(unit * (1 + 1e-12) + tol, start, q, tol)
        return n_above + 1 + _powers_at_or_above(flops, unit, q, tol)
    n_above = max(0, math.ceil((1 - unit * (1 + 1e-12) / start) / step) - 1)
    reached = max(0, math.floor((1 - (flops - tol) / start) / step + 1e-9))
    if reached < n_above:
        return reached
    first = 0 if unit < start else 1
    last = math.ceil((1 - 1e-9) / step) - 1  # the largest k with k * step < 1 - 1e-9
    k = min(math.floor((1 - (flops - tol) / unit) / step + 1e-9), last)
    return n_above + max(0, k - first + 1)


__all__ = ["event_target", "grid_levels", "crossed_levels"]
