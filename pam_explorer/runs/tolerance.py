"""A report or a sweep at any accuracy tolerance, read off the curves they keep (pure, JSON in,
JSON out): what the dashboard's tolerance slider shows.

A run of the published schedule keeps every scheme's accuracy-FLOPs curve per seed
(``per_seed``); its figures at tolerance delta (points) are those read off the curves
(:func:`pam_explorer.runs.report.at_tolerance`, the function the report itself was written
with), so moving the slider is a read-off, never a recomputation. Reports of the floor-greedy
loop and of AdapMTL keep no curve: their figures were decided at the run's own delta and are
returned as they are (:func:`has_curves` is False; the page says so).

Latency was measured once, on the networks read off at the run's own delta: at any other
tolerance the report has no latency (it is dropped, not carried over to other networks).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from pam_explorer.runs import report as rep
from pam_explorer.runs import sweep_report as sr

SLIDER_MAX = 2.0  # points: the slider's range 0..2 (issue 23), plus the run's own delta
SLIDER_STEP = 0.05
STORED = (0.25, 0.5, 1.0, 2.0)  # the tolerances a report of the published schedule stores
LATENCY_KEYS = ("latency_gains", "latency_measurement")
PUBLISHED, FLOOR_GREEDY = "published", "floor-greedy"


def _seed_records(report: Mapping) -> dict[str, Mapping]:
    """{seed: {scheme: stage record}} of a report's ``per_seed`` ({} when it has none)."""
    per = report.get("per_seed")
    if not isinstance(per, Mapping):
        return {}
    return {str(s): v["schemes"] for s, v in per.items()
            if isinstance(v, Mapping) and isinstance(v.get("schemes"), Mapping)}


def has_curves(report: Mapping) -> bool:
    """Whether any scheme of any seed keeps a schedule curve (then the tolerance can move)."""
    return any(isinstance(r, Mapping) and "curve" in r
               for recs in _seed_records(report).values() for r in recs.values())


def schedule_of(report: Mapping) -> str:
    """"published" or "floor-greedy": reports written before schedules existed ran the
    accept/reject loop, and so does a report without any curve."""
    return PUBLISHED if report.get("schedule") == PUBLISHED and has_curves(report) else FLOOR_GREEDY


def own_delta(report: Mapping) -> float | None:
    """The tolerance the run itself used (points): ``delta``, else its prune config's."""
    for d in (report.get("delta"), ((report.get("config") or {}).get("prune_config") or {}).get("delta")):
        if isinstance(d, (int, float)) and not isinstance(d, bool) and math.isfinite(d):
            return float(d)
    return None


def tolerance_options(report: Mapping) -> list[float]:
    """The slider's values: 0 to 2 points in steps of 0.05 (the stored 0.25, 0.5, 1 and 2 among
    them), the tolerances the report stores and the run's own delta, ascending."""
    grid = {round(i * SLIDER_STEP, 2) for i in range(int(round(SLIDER_MAX / SLIDER_STEP)) + 1)}
    stored = {float(k) for k in (report.get("tolerances") or {}) if _is_number(k)}
    own = own_delta(report)
    return sorted(grid | set(STORED) | stored | ({own} if own is not None else set()))


def _is_number(text: object) -> bool:
    try:
        return math.isfinite(float(text))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def same(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and abs(a - b) < 1e-9


def report_at(report: Mapping, delta: float) -> dict:
    """The report as if the run had used tolerance ``delta``: ``schemes``, ``gains``, ``missing``
    ({scheme: [seeds without a checkpoint above the floor]}), ``floor_check``, ``floor`` and
    ``delta`` read off the curves; a scheme's ``widths`` are those of its read-off checkpoint
    (the first seed that has one, ``widths_seed``). Latency is kept at the run's own delta only.
    A report without curves is returned as it is."""
    if not has_curves(report):
        return dict(report)
    records, tasks = _seed_records(report), list(report["tasks"])
    at = rep.at_tolerance(records, delta, tasks)
    per_seed = [{n: rep.record_at(r, delta, tasks) for n, r in recs.items()} for recs in records.values()]
    out = {**report, "delta": float(delta), "schemes": at["schemes"], "gains": at["gains"],
           "missing": at["missing"]}
    if isinstance(report.get("reference_accuracy"), Mapping):
        out["floor_check"] = rep.floor_check(at["schemes"], report["reference_accuracy"], delta, per_seed)
    if isinstance(report.get("reference_val_accuracy"), Mapping) and isinstance(report.get("floor"), Mapping):
        out["floor"] = {t: a - delta for t, a in report["reference_val_accuracy"].items()}
    _readoff_widths(out["schemes"], records, per_seed)
    if not same(delta, own_delta(report)):
        for key in LATENCY_KEYS:
            out.pop(key, None)
    return out


def _readoff_widths(schemes: dict, records: Mapping[str, Mapping], per_seed: Sequence[Mapping]) -> None:
    """Each scheme's ``widths`` from its read-off checkpoint (first seed with one): the record's
    own widths are those read off at the run's delta."""
    for name, row in schemes.items():
        for (seed, recs), figs in zip(records.items(), per_seed):
            rec, fig = recs.get(name), figs.get(name)
            if fig is None or not isinstance(rec, Mapping) or "curve" not in rec:
                continue
            curve, points = rec["curve"], fig.get("points")
            if isinstance(curve, Mapping) and isinstance(points, Mapping):  # B1: a network per task
                widths = {t: curve[t][i].get("widths") for t, i in points.items()}
                ok = all(w is not None for w in widths.values())
            else:
                widths = curve[points].get("widths") if isinstance(points, int) else None
                ok = widths is not None
            if ok:
                schemes[name] = {**row, "widths": widths, "widths_seed": seed}
            break


# --------------------------------------------------------------------------- sweeps
def sweep_has_curves(sweep: Mapping) -> bool:
    """Whether the sweep's records keep schedule curves (a sweep of the published schedule)."""
    rows = [*(sweep.get("baselines") or {}).values(), *(sweep.get("points") or [])]
    return any(isinstance(r, Mapping) and "curve" in r
               for row in rows if isinstance(row, Mapping)
               for r in (row.get("per_seed") or {}).values())


def _by_seed(row: Mapping) -> dict[int, Mapping]:
    return {int(s): r for s, r in (row.get("per_seed") or {}).items()}


def sweep_at(sweep: Mapping, delta: float) -> dict:
    """The sweep as if it had used tolerance ``delta``: every baseline and alpha read off its
    curves (:func:`pam_explorer.runs.sweep_report.scheme_summary`, ``point``), then the frontier
    and the recommendation for the sweep's own task-usage mix, recomputed from those read-offs
    (cheap: a few monotone fits per record). A sweep without curves is returned as it is."""
    if not sweep_has_curves(sweep):
        return dict(sweep)
    seeds, original = list(sweep["seeds"]), dict(sweep["reference_accuracy"])
    base = {name: _by_seed(row) for name, row in sweep["baselines"].items()}
    baselines = {name: sr.scheme_summary(recs, seeds, original, delta) for name, recs in base.items()}
    points = [sr.point(p["alpha"], p.get("label", f"{p['alpha']:g}"), _by_seed(p), base.get("B1", {}),
                       base.get("B2", {}), seeds, original, delta) for p in sweep["points"]]
    mix = (sweep.get("recommended") or {}).get("mix") or sr.uniform_mix(sweep["tasks"])
    return {**sweep, "delta": float(delta), "floor": {t: a - delta for t, a in original.items()},
            "baselines": baselines, "points": points, "frontier": sr.frontier(points),
            "recommended": sr.recommend(points, baselines, mix)}


__all__ = ["SLIDER_MAX", "SLIDER_STEP", "STORED", "PUBLISHED", "FLOOR_GREEDY", "has_curves", "schedule_of",
           "own_delta", "tolerance_options", "same", "report_at", "sweep_has_curves", "sweep_at"]
