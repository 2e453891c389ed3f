"""Pure builders of the Results page's accuracy-FLOPs curves (no streamlit): the chart of one task
subset at one tolerance, and every seed's read-off with its standard errors.

The numbers come from :mod:`pam_explorer.runs.curve_view` (fits, read-offs, bands) and
:func:`pam_explorer.runs.readoff.figures_at` (a seed's figures at a tolerance); these functions
only lay them out. y is the change from the original networks' validation accuracy (points) of
the task the read-off judges worst, so the floor is the line y = -delta for every scheme.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go

from pam_explorer.core.subsets import all_subsets, subset_key
from pam_explorer.runs.readoff import figures_at
from ui.figures import SCHEME_COLORS, _figure
from ui.labels import DASH

SCHEME_ORDER = ("B1", "B2", "PAM")
NONE_ABOVE = "no checkpoint above the floor"
FLOOR_COLOR, ORIGINAL_COLOR = "#B22222", "#888888"
Y_SPAN = 1.5  # the y axis shows at least [-delta - Y_SPAN, ...] and cuts far below the floor


def subsets(tasks: Sequence[str]) -> list[str]:
    """The task subsets in canonical order (A, B, A+B)."""
    return [subset_key(s) for s in all_subsets(list(tasks))]


def ordered(names) -> list[str]:
    names = list(names)
    return [n for n in SCHEME_ORDER if n in names] + [n for n in names if n not in SCHEME_ORDER]


def _rgba(color: str, alpha: float) -> str:
    c = color.lstrip("#")
    return f"rgba({int(c[0:2], 16)},{int(c[2:4], 16)},{int(c[4:6], 16)},{alpha})"


def _acc(values: Mapping, ses: Mapping | None, t: str) -> str:
    v, se = values.get(t), (ses or {}).get(t)
    if not isinstance(v, (int, float)):
        return DASH
    return f"{v:.2f}" + (f" ± {se:.2f}" if isinstance(se, (int, float)) else "")


def _hover(seed: str, p: Mapping) -> str:
    where = f"checkpoint {p['index']}" if p.get("index") is not None else "result"
    if isinstance(p.get("fraction"), (int, float)):
        where += f" ({p['fraction']:.0%} of the starting FLOPs)"
    val = ", ".join(f"{t} {_acc(p['val'], p.get('val_se'), t)}" for t in p["val"])
    test = ", ".join(f"{t} {_acc(p['test'], p.get('test_se'), t)}" for t in p.get("test") or {})
    return (f"seed {seed} · {where}<br>FLOPs {p['flops']:,.0f}<br>validation % (± SE): {val}"
            + (f"<br>test % (± SE): {test}" if test else ""))


def _scheme_traces(name: str, view: Mapping, delta: float, label: str) -> list[dict]:
    """Band, per-seed fits, checkpoints (validation ± SE), read-offs, points without a curve."""
    color, seeds, traces = SCHEME_COLORS.get(name, "#555555"), view["seeds"], []
    band = view.get("band")
    group = dict(legendgroup=name)
    if band:
        traces.append(dict(type="scatter", mode="lines", x=band["flops"], y=band["high"], line=dict(width=0),
                           showlegend=False, hoverinfo="skip", **group))
        traces.append(dict(type="scatter", mode="lines", x=band["flops"], y=band["low"], line=dict(width=0),
                           fill="tonexty", fillcolor=_rgba(color, 0.18), hoverinfo="skip", **group,
                           name=f"{name}: spread of the seeds' fits"))
    fit_x, fit_y = [], []
    for c in seeds.values():
        if c["fit"]:
            fit_x += [x for x, _ in c["fit"]] + [None]
            fit_y += [y for _, y in c["fit"]] + [None]
    none = view["missing"] and len(view["missing"]) == len([c for c in seeds.values() if c["fit"]])
    if fit_x:
        traces.append(dict(type="scatter", mode="lines", x=fit_x, y=fit_y, **group, hoverinfo="skip",
                           line=dict(color=color, width=1.5 if len(seeds) > 1 else 2.5),
                           name=f"{name}: monotone fit" + (" per seed" if len(seeds) > 1 else "")
                           + (f" ({NONE_ABOVE})" if none else "")))
    raw = [(s, p) for s, c in seeds.items() for p in c["raw"]]
    if raw:
        traces.append(dict(type="scatter", mode="markers", x=[p["flops"] for _, p in raw],
                           y=[p["y"] for _, p in raw], **group, opacity=0.75,
                           marker=dict(color=color, size=7),
                           error_y=dict(type="data", array=[p["se"] or 0 for _, p in raw], thickness=1,
                                        width=2),
                           text=[_hover(s, p) for s, p in raw], hoverinfo="text",
                           name=f"{name}: checkpoints (validation ± SE)"))
    picks = [(s, c["readoff"]) for s, c in seeds.items() if c.get("readoff")]
    if picks:
        traces.append(dict(type="scatter", mode="markers", x=[r["flops"] for _, r in picks],
                           y=[r["y"] for _, r in picks], **group,
                           marker=dict(color=color, size=13, symbol="diamond",
                                       line=dict(color="black", width=1.5)),
                           text=[f"seed {s}: read-off at tolerance {delta:g}, FLOPs {r['flops']:,.0f}"
                                 for s, r in picks], hoverinfo="text", name=f"{name}: read-off at {delta:g}"))
    points = [(s, c["point"]) for s, c in seeds.items() if c.get("point")]
    if points:
        traces.append(dict(type="scatter", mode="markers", x=[p["flops"] for _, p in points],
                           y=[p["y"] for _, p in points], **group, text=[_hover(s, p) for s, p in points],
                           hoverinfo="text", name=f"{name}: {label} result",
                           marker=dict(color=color, size=12, symbol="square",
                                       line=dict(color="black", width=1))))
    return traces


def y_range(views: Mapping[str, Mapping], delta: float) -> tuple[float, float, bool]:
    """(low, high, cut): the y axis spans every value but is cut at -(2 delta + 2 Y_SPAN) (a far
    pruned checkpoint 30 points down would flatten the region around the floor)."""
    ys = [y for v in views.values() for c in v["seeds"].values()
          for y in [p["y"] for p in c["raw"]] + [y for _, y in c["fit"]]
          + ([c["point"]["y"]] if c.get("point") else [])]
    low, high = min(ys + [-delta - Y_SPAN]), max(ys + [0.0])
    floor_cut = -2 * delta - 2 * Y_SPAN
    cut = low < floor_cut
    return (max(low, floor_cut) - 0.2, high + 0.3, cut)


def fig_curves(report: Mapping, views: Mapping[str, Mapping], subset: str, delta: float) -> go.Figure | None:
    """Accuracy change vs FLOPs of ``subset`` per scheme (``views``: curve_view.curves_view at
    ``delta``): bands over seeds, monotone fits, checkpoints with their validation SE, read-offs
    at ``delta``, points for runs without curves, the floor (y = -delta) and the originals (y = 0).
    None when nothing can be drawn."""
    if not any(c["fit"] or c.get("point") for v in views.values() for c in v["seeds"].values()):
        return None
    label = "AdapMTL" if report.get("prune") == "adapmtl" else "floor-greedy"
    traces = [t for name in ordered(views) for t in _scheme_traces(name, views[name], delta, label)]
    xs = [x for t in traces for x in t["x"] if x is not None]
    lo_x, hi_x = min(xs), max(xs)
    traces += [dict(type="scatter", mode="lines", x=[lo_x, hi_x], y=[-delta, -delta], hoverinfo="skip",
                    line=dict(color=FLOOR_COLOR, dash="dash", width=2), name=f"floor: original - {delta:g}"),
               dict(type="scatter", mode="lines", x=[lo_x, hi_x], y=[0, 0], hoverinfo="skip",
                    line=dict(color=ORIGINAL_COLOR, dash="dot"), name="original networks")]
    low, high, _ = y_range(views, delta)
    quick = " · quick run" if report.get("quick") else ""
    return _figure(f"Accuracy vs FLOPs of {subset}, tolerance {delta:g} points{quick}", traces,
                   xaxis=dict(title=dict(text=f"FLOPs of {subset} (batch 1)")), height=560,
                   yaxis=dict(title=dict(text="validation accuracy - original (points)"), range=[low, high]),
                   margin=dict(l=10, r=10, t=60, b=10), hovermode="closest",
                   legend=dict(orientation="h", yanchor="top", y=-0.16, xanchor="left", x=0))


def schedule_text(report: Mapping, own: float | None) -> tuple[bool, str]:
    """(published, what the schedule means for the figures shown)."""
    from pam_explorer.runs.tolerance import PUBLISHED, schedule_of

    if schedule_of(report) == PUBLISHED:
        return True, ("Schedule **published**: each scheme was pruned along its schedule, leaving an "
                      "accuracy-FLOPs curve of finetuned checkpoints per seed; its cost at tolerance delta "
                      "is read off the most-pruned checkpoint whose monotone validation accuracy is within "
                      "delta of the original networks' on every task it serves. The slider reads the "
                      "stored curves again: nothing is recomputed.")
    at = f" (delta = {own:g} points)" if own is not None else ""
    return False, ("Schedule **floor-greedy** (the accept/reject loop): one pruned network per scheme and "
                   f"seed, decided at the run's own tolerance{at}; it keeps no accuracy-FLOPs curves, so its "
                   "figures cannot be read off at another tolerance.")


def caption(report: Mapping, subset: str, delta: float, cut: bool) -> str:
    """What the curve chart shows."""
    judged = ("y: the change of the worst task's validation accuracy from the original networks', "
              "among the tasks the read-off judges (B2 and PAM: every task; B1: the networks serving "
              f"{subset}, each on its own task). ")
    what = ("Lines: each seed's monotone (isotonic) fit; band: their spread over seeds; dots: the "
            "finetuned checkpoints, with their validation standard error; diamonds: the read-off at "
            f"tolerance {delta:g}, the most-pruned checkpoint at or above the floor (dashed, y = "
            f"-{delta:g}). B1 on several tasks: the sum of its networks' read-offs at every tolerance. "
            if any(isinstance(v, Mapping) and "curve" in r for v in _records(report) for r in v.values())
            else "Squares: each seed's result (no curve). ")
    return (judged + what + ("The y axis is cut below the floor: double-click the chart to see every "
                             "checkpoint." if cut else ""))


def _records(report: Mapping) -> list[Mapping]:
    per = report.get("per_seed")
    if not isinstance(per, Mapping):
        return []
    return [v["schemes"] for v in per.values()
            if isinstance(v, Mapping) and isinstance(v.get("schemes"), Mapping)]


def readoff_table(report: Mapping, delta: float) -> pd.DataFrame | None:
    """Every scheme and seed at tolerance ``delta``: the read-off checkpoint, its FLOPs per
    subset, validation and test accuracy per task with their standard errors; "no checkpoint
    above the floor" where the read-off is None. None without per-seed records."""
    per = report.get("per_seed")
    if not isinstance(per, Mapping) or not per:
        return None
    tasks, rows = list(report["tasks"]), {}
    keys = subsets(tasks)
    records = {str(s): v["schemes"] for s, v in per.items()
               if isinstance(v, Mapping) and isinstance(v.get("schemes"), Mapping)}
    for name in ordered(dict.fromkeys(n for recs in records.values() for n in recs)):
        for seed, recs in records.items():
            if name in recs:
                fig = figures_at(recs[name], delta, tasks)
                rows[f"{name} · seed {seed}"] = _readoff_row(recs[name], fig, keys, tasks)
    if not rows:
        return None
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "scheme · seed"
    return df


def _readoff_row(record: Mapping, fig: Mapping | None, keys: Sequence[str], tasks: Sequence[str]) -> dict:
    accs = [f"{w} {t} (%)" for w in ("val", "test") for t in tasks]
    cols = ["read-off", *(f"FLOPs {k}" for k in keys), *accs]
    if fig is None:
        return {c: NONE_ABOVE if c == "read-off" else DASH for c in cols}
    points, curve = fig.get("points"), record.get("curve")
    if isinstance(points, Mapping):  # B1: one checkpoint per task network
        where = ", ".join(f"{t} #{i} ({curve[t][i].get('fraction', math.nan):.0%})"
                          for t, i in points.items())
    elif isinstance(points, int):
        where = f"#{points} ({curve[points].get('fraction', math.nan):.0%} of the starting FLOPs)"
    else:
        where = "the run's result (no curve)"
    flops = fig.get("flops") or {}
    row = {"read-off": where, **{f"FLOPs {k}": f"{flops[k]:,.0f}" if k in flops else DASH for k in keys}}
    row.update({f"val {t} (%)": _acc(fig.get("val_accuracy") or {}, fig.get("val_se"), t) for t in tasks})
    row.update({f"test {t} (%)": _acc(fig.get("accuracy") or {}, fig.get("accuracy_se"), t) for t in tasks})
    return row


__all__ = ["SCHEME_ORDER", "NONE_ABOVE", "subsets", "ordered", "y_range", "fig_curves", "schedule_text",
           "caption", "readoff_table"]
