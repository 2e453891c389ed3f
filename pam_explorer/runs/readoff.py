"""A scheme's figures at a tolerance, read off its schedule curves (pure, JSON in, JSON out).

A stage record of the published schedule holds its curve(s) (:mod:`pam_explorer.prune.curve`):
a merged scheme (B2, PAM) one curve of the merged net, judged on every task at once; B1 one curve
per task network, each judged on its own task. The figures at tolerance delta are those of the
read-off checkpoint(s): per-subset FLOPs and parameters (B1: the sum of the subset's task
networks), per-task test and validation accuracy with standard errors. Records of the
floor-greedy loop and of AdapMTL have no curve: their figures do not depend on the tolerance and
are returned as they are. The report and the dashboard's tolerance slider both call this, so a
slider move is a read-off, never a recomputation.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from pam_explorer.core.subsets import all_subsets, subset_key
from pam_explorer.prune.curve import readoff

FIGURES = ("flops", "params", "accuracy", "val_accuracy", "accuracy_se", "val_se")


def _point_figures(point: Mapping, tasks: Sequence[str]) -> dict:
    return {"flops": dict(point["flops"]), "params": dict(point["params"]),
            "accuracy": {t: point["test_accuracy"][t] for t in tasks},
            "val_accuracy": {t: point["val_accuracy"][t] for t in tasks},
            "accuracy_se": {t: point["test_se"][t] for t in tasks},
            "val_se": {t: point["val_se"][t] for t in tasks}, "widths": point.get("widths")}


def _separate(curves: Mapping[str, Sequence[Mapping]], reference: Mapping[str, float], delta: float,
              tasks: Sequence[str]) -> dict | None:
    """B1: each task network read off on its own task; a subset costs the sum of its networks."""
    picks = {t: readoff(curves[t], {t: reference[t]}, delta) for t in tasks}
    if any(i is None for i in picks.values()):
        return None
    points = {t: curves[t][picks[t]] for t in tasks}
    out: dict = {"flops": {}, "params": {}, "points": picks}
    for sub in all_subsets(list(tasks)):
        out["flops"][subset_key(sub)] = sum(points[t]["flops"][t] for t in sub)
        out["params"][subset_key(sub)] = sum(points[t]["params"][t] for t in sub)
    for name, src in (("accuracy", "test_accuracy"), ("val_accuracy", "val_accuracy"),
                      ("accuracy_se", "test_se"), ("val_se", "val_se")):
        out[name] = {t: points[t][src][t] for t in tasks}
    out["widths"] = {t: points[t].get("widths") for t in tasks}
    return out


def figures_at(record: Mapping, delta: float, tasks: Sequence[str]) -> dict | None:
    """The record's figures at tolerance ``delta`` (points below the originals' validation
    accuracy): {"flops", "params", "accuracy", "val_accuracy", "accuracy_se", "val_se", "widths"
    (of the read-off net; B1: per task), "points" (the read-off index, per task for B1)}; None when
    no checkpoint passes. A record without a
    curve: its own figures."""
    curve = record.get("curve")
    if curve is None:
        return {k: record[k] for k in (*FIGURES, "latency_ms", "sparse_flops") if k in record}
    reference = record["reference_val_accuracy"]
    if isinstance(curve, Mapping):
        return _separate(curve, reference, delta, tasks)
    i = readoff(curve, {t: reference[t] for t in tasks}, delta)
    return None if i is None else {**_point_figures(curve[i], tasks), "points": i}


def seed_at(schemes: Mapping[str, Mapping], delta: float, tasks: Sequence[str]) -> dict[str, dict | None]:
    """{scheme: figures at delta or None} of one seed's stage records."""
    return {name: figures_at(rec, delta, tasks) for name, rec in schemes.items()}


__all__ = ["figures_at", "seed_at", "FIGURES"]
