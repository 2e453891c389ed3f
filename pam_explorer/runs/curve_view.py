"""Accuracy-FLOPs curves of a report, per task subset and scheme, for the dashboard (pure, no
drawing): every seed's checkpoints, its monotone fit, its read-off at a tolerance, and the spread
of the fits over seeds.

Axes. x: the FLOPs of the task subset (batch 1). y: the criterion the read-off applies, as a
change from the original networks' validation accuracy (points), so the floor at tolerance delta
is the line y = -delta for every scheme: a merged network (B2, PAM) is judged on every task, so
its y is the worst task's change; B1's network of task t is judged on t alone. B1 on a subset of
several tasks has no checkpoints of its own (its cost is the sum of its networks' read-offs at
one tolerance): its curve is that sum for every tolerance at which each network's read-off
changes (:func:`_separate_curve`), its y the worse of the networks' fitted changes there.

Fits are :func:`pam_explorer.prune.curve.fitted_accuracy` (isotonic, per task) and read-offs
:func:`pam_explorer.prune.curve.readoff`, the functions the report's figures come from. Records
without a curve (the floor-greedy loop, AdapMTL) give one point per seed.
Shapes: a curve is a list of (FLOPs, y) pairs in pruning order (FLOPs non-increasing).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from pam_explorer.prune.curve import fitted_accuracy, readoff

GRID = 40  # FLOPs values on which the seeds' fits are compared for the band


def _tasks_of(subset: str) -> list[str]:
    return subset.split("+")


def _raw_points(curve: Sequence[Mapping], judged: Sequence[str], ref: Mapping[str, float],
                subset_flops) -> list[dict]:
    """One dict per checkpoint: FLOPs, y (worst judged task's validation change), its task and
    standard error, and the checkpoint's accuracies (validation and test, with SE) for hovers."""
    out = []
    for p in curve:
        drops = {t: float(p["val_accuracy"][t]) - ref[t] for t in judged}
        worst = min(drops, key=drops.get)
        out.append({"index": p.get("index"), "fraction": p.get("fraction"), "flops": subset_flops(p),
                    "y": drops[worst], "task": worst, "se": (p.get("val_se") or {}).get(worst),
                    "val": {t: p["val_accuracy"][t] for t in judged},
                    "val_se": {t: (p.get("val_se") or {}).get(t) for t in judged},
                    "test": {t: (p.get("test_accuracy") or {}).get(t) for t in judged},
                    "test_se": {t: (p.get("test_se") or {}).get(t) for t in judged}})
    return out


def _fit_drops(curve: Sequence[Mapping], judged: Sequence[str], ref: Mapping[str, float]) -> list[float]:
    """Per checkpoint, the worst judged task's monotone validation change (non-increasing over
    the finetuned checkpoints; a point marked ``"finetuned": False``, the net as given, is not
    fitted, as in the read-off (prune.curve.readoff), and keeps its measured change)."""
    trained = [i for i, p in enumerate(curve) if p.get("finetuned", True)]
    fits = fitted_accuracy([curve[i] for i in trained], list(judged))
    out = [min(float(p["val_accuracy"][t]) - ref[t] for t in judged) for p in curve]
    for j, i in enumerate(trained):
        out[i] = min(fits[t][j] - ref[t] for t in judged)
    return out


def _merged_curve(record: Mapping, subset: str, tasks: Sequence[str], delta: float) -> dict:
    curve, ref = record["curve"], record["reference_val_accuracy"]
    fit = _fit_drops(curve, tasks, ref)
    xs = [float(p["flops"][subset]) for p in curve]
    i = readoff(curve, {t: ref[t] for t in tasks}, delta)
    line = [(x, y) for j, (x, y) in enumerate(zip(xs, fit)) if curve[j].get("finetuned", True) or j == i]
    return {"raw": _raw_points(curve, tasks, ref, lambda p: float(p["flops"][subset])),
            "fit": line, "readoff": None if i is None else
            {"flops": xs[i], "y": fit[i], "points": i, "fraction": curve[i].get("fraction")}}


def _separate_curve(record: Mapping, subset: str, delta: float) -> dict:
    """B1: one network per task. A single task: its network's curve. Several: the sum of the
    networks' read-offs at every level y where one of them changes (the read-off at tolerance
    -y), so that the read-off at ``delta`` lies on it."""
    curves, ref = record["curve"], record["reference_val_accuracy"]
    judged = _tasks_of(subset)
    fits = {t: _fit_drops(curves[t], [t], ref) for t in judged}
    flops = {t: [float(p["flops"][t]) for p in curves[t]] for t in judged}
    picks = {t: readoff(curves[t], {t: ref[t]}, delta) for t in judged}
    at = None if any(i is None for i in picks.values()) else {
        "flops": sum(flops[t][picks[t]] for t in judged), "y": min(fits[t][picks[t]] for t in judged),
        "points": dict(picks)}
    if len(judged) == 1:
        t = judged[0]
        raw = _raw_points(curves[t], [t], ref, lambda p: float(p["flops"][t]))
        return {"raw": raw, "fit": list(zip(flops[t], fits[t])), "readoff": at}
    fit = []
    for level in sorted({y for t in judged for y in fits[t]}, reverse=True):
        last = {t: max((i for i, y in enumerate(fits[t]) if y >= level - 1e-9), default=None) for t in judged}
        if any(i is None for i in last.values()):
            continue
        pt = (sum(flops[t][last[t]] for t in judged), min(fits[t][last[t]] for t in judged))
        if not fit or fit[-1] != pt:
            fit.append(pt)
    return {"raw": [], "fit": fit, "readoff": at}


def _point(record: Mapping, scheme: str, subset: str, tasks: Sequence[str]) -> dict | None:
    """A record without a curve: its own figures as one point (None if it has none)."""
    flops, val, ref = record.get("flops"), record.get("val_accuracy"), record.get("reference_val_accuracy")
    if not all(isinstance(x, Mapping) for x in (flops, val, ref)) or subset not in flops:
        return None
    judged = _tasks_of(subset) if scheme == "B1" else list(tasks)
    if not all(t in val and t in ref for t in judged):
        return None
    drops = {t: float(val[t]) - float(ref[t]) for t in judged}
    worst = min(drops, key=drops.get)
    return {"flops": float(flops[subset]), "y": drops[worst], "task": worst,
            "se": (record.get("val_se") or {}).get(worst), "val": {t: val[t] for t in judged},
            "test": {t: (record.get("accuracy") or {}).get(t) for t in judged}}


def seed_curve(record: Mapping, scheme: str, subset: str, tasks: Sequence[str], delta: float) -> dict:
    """One seed's view of a scheme at ``subset``: {"raw": checkpoints, "fit": [(FLOPs, y)],
    "readoff": {"flops", "y", "points"} or None (no checkpoint above the floor)}; a record
    without a curve: {"raw": [], "fit": [], "readoff": None, "point": its figures or None}."""
    curve = record.get("curve")
    if curve is None:
        return {"raw": [], "fit": [], "readoff": None, "point": _point(record, scheme, subset, tasks)}
    if isinstance(curve, Mapping):
        return _separate_curve(record, subset, delta)
    return _merged_curve(record, subset, tasks, delta)


def band(fits: Sequence[Sequence[tuple[float, float]]], n: int = GRID) -> dict | None:
    """The spread of several seeds' fits: on ``n`` FLOPs values spanning the range every seed
    covers, the lowest, median and highest y (each fit linearly interpolated between its
    checkpoints; at equal FLOPs the better y). None with fewer than two fits or no common range."""
    fits = [f for f in fits if len(f) >= 1]
    if len(fits) < 2:
        return None
    funcs = []
    for f in fits:
        best: dict[float, float] = {}
        for x, y in f:
            best[x] = max(y, best.get(x, -np.inf))
        xs = np.array(sorted(best))
        funcs.append((xs, np.array([best[x] for x in xs])))
    lo, hi = max(xs[0] for xs, _ in funcs), min(xs[-1] for xs, _ in funcs)
    if not hi > lo:
        return None
    grid = np.linspace(lo, hi, n)
    ys = np.array([np.interp(grid, xs, vs) for xs, vs in funcs])  # (seeds, n)
    return {"flops": grid.tolist(), "low": ys.min(axis=0).tolist(), "median": np.median(ys, axis=0).tolist(),
            "high": ys.max(axis=0).tolist()}


def scheme_view(per_seed: Mapping[str, Mapping], scheme: str, subset: str, tasks: Sequence[str],
                delta: float) -> dict:
    """{"seeds": {seed: :func:`seed_curve`}, "band": :func:`band` of their fits, "missing":
    [seeds with a curve but no checkpoint above the floor]} of one scheme."""
    seeds = {s: seed_curve(recs[scheme], scheme, subset, tasks, delta)
             for s, recs in per_seed.items() if isinstance(recs.get(scheme), Mapping)}
    missing = [s for s, c in seeds.items() if c["fit"] and c["readoff"] is None]
    return {"seeds": seeds, "band": band([c["fit"] for c in seeds.values() if c["fit"]]), "missing": missing}


def curves_view(report: Mapping, subset: str, delta: float) -> dict[str, dict]:
    """{scheme: :func:`scheme_view`} of every scheme in the report's ``per_seed`` records, in
    the report's scheme order; {} for a report without per-seed records."""
    per = report.get("per_seed")
    if not isinstance(per, Mapping):
        return {}
    per_seed = {str(s): v["schemes"] for s, v in per.items()
                if isinstance(v, Mapping) and isinstance(v.get("schemes"), Mapping)}
    names = list(dict.fromkeys(n for recs in per_seed.values() for n in recs))
    return {n: scheme_view(per_seed, n, subset, list(report["tasks"]), delta) for n in names}


__all__ = ["GRID", "seed_curve", "band", "scheme_view", "curves_view"]
