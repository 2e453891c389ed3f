"""Accuracy-FLOPs curves of a pruning schedule and the cost read off them at a tolerance.

A curve is the list of a schedule's checkpoints in pruning order (FLOPs non-increasing), each a
JSON-able dict with at least ``"val_accuracy": {task: %}`` and ``"flops": {subset: FLOPs}``.
The cost of a network at tolerance delta (points) is read off the most-pruned checkpoint at which
every task's validation accuracy is at least its reference minus delta.

Validation accuracies are noisy (one checkpoint's finetune moves them by tenths of a point), so a
curve is first made monotone: per task, the least-squares non-increasing fit of the accuracies in
pruning order (isotonic regression, pool-adjacent-violators: scikit-learn's
``isotonic_regression``). Then the checkpoints that pass form a prefix, and the read-off is its
last point. Compared with the raw curve this neither rewards a lucky far-pruned checkpoint after
a failing one nor lets one unlucky checkpoint end the curve: neighbours are pooled where they
disagree with the monotone shape. Pure functions, no torch.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

Point = Mapping[str, object]


def monotone(values: Sequence[float]) -> list[float]:
    """The non-increasing least-squares fit of ``values`` (in pruning order)."""
    if len(values) == 0:
        return []
    # imported here: scikit-learn takes about a second to import, and a first dashboard visit or
    # `--help` must not pay it
    from sklearn.isotonic import isotonic_regression
    return [float(x) for x in isotonic_regression(np.asarray(values, dtype=np.float64), increasing=False)]


def fitted_accuracy(points: Sequence[Point], tasks: Sequence[str], key: str = "val_accuracy"
                    ) -> dict[str, list[float]]:
    """{task: monotone fit of the points' ``key`` accuracies}."""
    return {t: monotone([float(p[key][t]) for p in points]) for t in tasks}  # type: ignore[index]


def _last_passing(points: Sequence[Point], reference: Mapping[str, float], delta: float) -> int | None:
    """The last index whose monotone fit passes on every task (the passing ones are a prefix)."""
    fits = fitted_accuracy(points, list(reference))
    best = None
    for i in range(len(points)):
        if all(fits[t][i] >= reference[t] - delta - 1e-9 for t in reference):
            best = i
        else:
            break  # the fits are non-increasing: no later point passes
    return best


def readoff(points: Sequence[Point], reference: Mapping[str, float], delta: float) -> int | None:
    """Index of the most-pruned point whose monotone validation accuracy is >= reference - delta
    on EVERY task of ``reference``; None when no point passes.

    Points marked ``"finetuned": False`` (a schedule's first point: the net as given, before any
    training) are a different measurement from the finetuned checkpoints, so they are left out of
    the fit (an untrained merged net far below its finetuned checkpoints would otherwise pool
    them under the floor); such a point is the read-off only when no finetuned checkpoint passes
    and it passes on its own accuracy (B1's: the original network, exactly at its reference)."""
    trained = [i for i, p in enumerate(points) if p.get("finetuned", True)]
    best = _last_passing([points[i] for i in trained], reference, delta) if trained else None
    if best is not None:
        return trained[best]
    for i, p in enumerate(points):
        if not p.get("finetuned", True) and all(
                float(p["val_accuracy"][t]) >= reference[t] - delta - 1e-9 for t in reference):  # type: ignore[index]
            return i
    return None


def readoffs(points: Sequence[Point], reference: Mapping[str, float], deltas: Sequence[float]
             ) -> dict[str, int | None]:
    """{str(delta): read-off index} for every tolerance."""
    return {str(float(d)): readoff(points, reference, d) for d in deltas}


__all__ = ["monotone", "fitted_accuracy", "readoff", "readoffs"]
