"""Pure figure/table builders of the alpha sweep (no streamlit: tests call them directly).

Inputs are a loaded sweep.json (:mod:`pam_explorer.runs.sweep_report` wrote it) and plain values
from the page (alpha, task-usage probabilities); every number shown is the report's, and the live
recommendation is :func:`pam_explorer.runs.sweep_report.recommend` itself.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go

from pam_explorer.cli.commands import parse_alphas, parse_ints
from pam_explorer.core.subsets import all_subsets, subset_key
from pam_explorer.runs import job_spec
from pam_explorer.runs.executors import EXECUTORS
from pam_explorer.runs.sweep_report import recommend, uniform_mix
from ui.figures import plot_title

COLORS = {"PAM": "#E45756", "B1": "#4C78A8", "B2": "#72B7B2"}
SUBSET_COLORS = ("#4C78A8", "#F58518", "#54A24B", "#B279A2", "#9D755D", "#EECA3B", "#FF9DA6")
_LAYOUT = dict(margin=dict(l=10, r=10, t=96, b=10), height=370,  # as ui/figures.py: below the toolbar
               legend=dict(orientation="h", yanchor="bottom", y=1.01, xanchor="right", x=1))


def _bars(means: Sequence[float], cis: Sequence[Sequence[float]]) -> dict:
    """Asymmetric error bars from 95 % CIs."""
    return dict(type="data", symmetric=False, array=[ci[1] - m for m, ci in zip(means, cis)],
                arrayminus=[m - ci[0] for m, ci in zip(means, cis)])


def _figure(title: str, traces: list[dict], **layout) -> go.Figure:
    return go.Figure({"data": traces, "layout": {"title": plot_title(title), **_LAYOUT, **layout}})


# --------------------------------------------------------------------------- launching
def offered_executors(slurm_unavailable: str | None) -> list[str]:
    """The executors the sweep form offers: every one, but "slurm" only when this machine can
    submit Slurm jobs (``slurm_unavailable`` is None: runs.slurm_queue.unavailable's answer)."""
    return [e for e in EXECUTORS if e != "slurm" or slurm_unavailable is None]


def sweep_job(preset: str, prune: str, alphas: str, seeds: str, executor: str, workers: int | None,
              quick: bool) -> dict:
    """The job spec of a dashboard sweep run; ConfigError for bad alphas or seeds text."""
    parsed = parse_alphas(alphas)
    args: dict = {"preset": preset, "prune": prune, "alphas": parsed if parsed == "auto" else list(parsed),
                  "seeds": list(parse_ints(seeds, "seeds")), "executor": executor}
    if workers:
        args["workers"] = int(workers)
    if quick:
        args["quick"] = True
    return job_spec.check({"command": "sweep", "args": args})


def points_table(points: Sequence[Mapping]) -> pd.DataFrame:
    """DIR/points.json rows as a table: job, state, attempts, seconds, how it was obtained."""
    rows = [{"job": p.get("label"), "state": p.get("state"), "attempts": p.get("attempts", 0),
             "seconds": p.get("seconds"), "source": p.get("source", ""), "message": p.get("message", "")}
            for p in points]
    return pd.DataFrame(rows, columns=["job", "state", "attempts", "seconds", "source", "message"])


# --------------------------------------------------------------------------- choosing a point
def probabilities(tasks: Sequence[str], state: Mapping, preset: str) -> dict[str, float]:
    """The page's task-usage probabilities (``prob_<preset>_<subset>`` in ``state``), uniform for
    subsets it does not hold."""
    uniform = uniform_mix(tasks)
    return {s: float(state.get(f"prob_{preset}_{s}", p)) for s, p in uniform.items()}


def nearest_point(sweep: Mapping, alpha: float) -> Mapping | None:
    """The measured point whose alpha is nearest ``alpha`` in log scale (None if none)."""
    measured = [p for p in sweep["points"] if "flops" in p]
    if not measured:
        return None
    return min(measured, key=lambda p: (abs(_log(p["alpha"]) - _log(alpha)), p["alpha"]))


def _log(alpha: float) -> float:
    return math.log10(max(alpha, 1e-6))


def live_recommendation(sweep: Mapping, probs: Mapping[str, float]) -> dict:
    """The recommended alpha under ``probs`` (ConfigError if they are not a distribution)."""
    return recommend(sweep["points"], sweep["baselines"], probs)


# --------------------------------------------------------------------------- tables
def _half(ci: Sequence[float]) -> float:
    return (ci[1] - ci[0]) / 2


NONE_ABOVE = "no checkpoint above the floor"


def floor_text(r: Mapping) -> str:
    """Whether a scheme or point meets the floor in every seed; the seeds with no checkpoint above
    the floor (published schedule) named."""
    below = r.get("below_floor") or []
    seeds = f" in seed{'s' if len(below) > 1 else ''} {', '.join(map(str, below))}" if below else ""
    if "flops" not in r:
        return f"{NONE_ABOVE}{seeds}" if below else "not measured yet"
    return "yes" if r.get("meets_floor") else "no" + (f" ({NONE_ABOVE}{seeds})" if below else "")


def _figures(r: Mapping, tasks: Sequence[str]) -> dict:
    """FLOPs per subset (M, mean ± 95 % CI half-width), test accuracy per task (mean, worst
    seed), floor; dashes where the scheme has no figures."""
    if "flops" not in r:
        return {"floor met": floor_text(r)}
    row = {f"FLOPs {s} (M)": f"{r['flops'][s] / 1e6:.3f}" + (  # one seed: no interval
        f" ± {_half(r['flops_ci95'][s]) / 1e6:.3f}" if _half(r["flops_ci95"][s]) > 0 else "")
           for s in r["flops"]}
    row.update({f"acc {t} (%)": f"{r['accuracy'][t]:.2f} (min {r['accuracy_min'][t]:.2f})" for t in tasks})
    row["floor met"] = floor_text(r)
    return row


def measured_table(sweep: Mapping, point: Mapping) -> pd.DataFrame:
    """PAM at ``point`` and B1, B2: FLOPs per subset (M, mean ± 95 % CI half-width), test accuracy
    per task (mean, worst seed), whether it meets the floor in every seed (or which seeds have no
    checkpoint above it)."""
    rows = {name: _figures(r, sweep["tasks"])
            for name, r in [(f"PAM (alpha {point['alpha']:.4g})", point), *sweep["baselines"].items()]}
    return pd.DataFrame.from_dict(rows, orient="index").reindex(columns=_columns(sweep["tasks"])).fillna("—")


def alphas_table(sweep: Mapping) -> pd.DataFrame:
    """One row per baseline and swept alpha: :func:`measured_table`'s figures, PAM's average
    gain vs B1 and B2 (mean [95 % CI], paired by seed), frontier and recommended marks."""
    rec, front = (sweep.get("recommended") or {}).get("alpha"), set(sweep.get("frontier") or ())
    rows = {name: _figures(b, sweep["tasks"]) for name, b in sweep["baselines"].items()}
    for p in sweep["points"]:
        row = _figures(p, sweep["tasks"])
        for vs in ("vs_B1", "vs_B2"):
            g = (p.get("gains") or {}).get(vs)
            row[f"gain vs {vs[3:]}"] = "—" if not g else f"{g['average']:.3f}" + (
                f" {_ci(g.get('average_ci95'))}" if g.get("n", 1) > 1 else "")
        row["frontier"] = "yes" if p["alpha"] in front else ""
        row["recommended"] = "yes" if p["alpha"] == rec else ""
        rows[f"PAM alpha {p['alpha']:.4g}"] = row
    cols = _columns(sweep["tasks"]) + ["gain vs B1", "gain vs B2", "frontier", "recommended"]
    return pd.DataFrame.from_dict(rows, orient="index").reindex(columns=cols).fillna("—")


def _columns(tasks: Sequence[str]) -> list[str]:
    return [f"FLOPs {subset_key(s)} (M)" for s in all_subsets(list(tasks))] \
        + [f"acc {t} (%)" for t in tasks] + ["floor met"]


def gains_table(point: Mapping) -> pd.DataFrame:
    """PAM's FLOPs gains at ``point`` vs B1 and B2, paired by seed: average and peak with CIs."""
    rows = {}
    for vs, g in point.get("gains", {}).items():
        rows[vs.replace("_", " ")] = {
            "average": round(g["average"], 3), "average 95% CI": _ci(g.get("average_ci95")),
            "peak": round(g["peak"], 3), "peak 95% CI": _ci(g.get("peak_ci95")),
            "verdict": g.get("average_verdict", ""), "seeds": g.get("n", 1)}
    return pd.DataFrame.from_dict(rows, orient="index")


def _ci(ci: Sequence[float] | None) -> str:
    return "" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


# --------------------------------------------------------------------------- figures
def fig_measured_flops(sweep: Mapping, point: Mapping) -> go.Figure:
    """FLOPs per task subset after pruning: PAM at ``point``, B1, B2; error bars = 95 % CI over seeds."""
    traces = []
    for name, r in [("PAM", point), *sweep["baselines"].items()]:
        if "flops" not in r:
            continue
        subsets = list(r["flops"])
        mean = [r["flops"][s] for s in subsets]
        traces.append(dict(type="bar", name=name, x=subsets, y=mean, marker_color=COLORS.get(name),
                           error_y=_bars(mean, [r["flops_ci95"][s] for s in subsets])))
    seeds = len(point.get("seeds", []))
    quick = " · quick sweep" if (sweep.get("config") or {}).get("quick") else ""
    return _figure(f"Measured FLOPs after pruning at alpha {point['alpha']:.4g} ({seeds} seeds){quick}",
                   traces, barmode="group", yaxis=dict(title="FLOPs"))


def fig_frontier(sweep: Mapping, alpha: float, probs: Mapping[str, float],
                 recommended: float | None) -> go.Figure:
    """FLOPs per subset vs alpha (mean, 95 % CI bars; hollow: below the floor in some seed), the
    expected FLOPs under ``probs`` (B1/B2 dashed), frontier alphas ringed, the slider's alpha
    (dotted); every line is a trace with a legend entry."""
    pts = [p for p in sweep["points"] if "flops" in p]
    xs = [p["alpha"] for p in pts]
    subsets = [subset_key(s) for s in all_subsets(list(sweep["tasks"]))]
    front = set(sweep.get("frontier", []))
    traces = []
    for i, s in enumerate(subsets):
        ys = [p["flops"][s] for p in pts]
        traces.append(dict(type="scatter", mode="lines+markers", name=f"FLOPs {s}", x=xs, y=ys,
                           line=dict(color=SUBSET_COLORS[i % len(SUBSET_COLORS)]),
                           marker=dict(size=[11 if p["alpha"] in front else 7 for p in pts], symbol=[
                               "circle" if p.get("meets_floor") else "circle-open" for p in pts]),
                           error_y=_bars(ys, [p["flops_ci95"][s] for p in pts])))
    expected = [sum(probs.get(s, 0.0) * p["flops"][s] for s in subsets) for p in pts]
    traces.append(dict(type="scatter", mode="lines+markers", name="expected (your mix)", x=xs, y=expected,
                       line=dict(color="black", width=3)))
    for name, b in sweep["baselines"].items():  # traces, not shapes: a legend entry names each line
        if "flops" in b and xs:
            e = sum(probs.get(s, 0.0) * b["flops"][s] for s in subsets)
            traces.append(dict(type="scatter", mode="lines", name=f"{name} expected (your mix)",
                               x=[min(xs), max(xs)], y=[e, e],
                               line=dict(color=COLORS.get(name), dash="dash")))
    if recommended is not None:
        i = xs.index(recommended)
        traces.append(dict(type="scatter", mode="markers", name="recommended", x=[recommended],
                           y=[expected[i]], marker=dict(symbol="star", size=16, color="#E45756")))
    if alpha > 0:  # the slider's alpha, named in the legend too
        traces.append(dict(type="scatter", mode="lines", name=f"slider alpha {alpha:.3g}", x=[alpha, alpha],
                           y=[0, 1], yaxis="y2", line=dict(color="#888", dash="dot"), hoverinfo="skip"))
    title = "Measured trade-off across alphas (big markers: frontier; hollow: below the floor)"
    quick = " · quick sweep" if (sweep.get("config") or {}).get("quick") else ""
    return _figure(title + quick,  # many entries: the legend goes below the plot, clear of the title
                   traces, xaxis=dict(title="alpha (bits)", type="log"), yaxis=dict(title="FLOPs"),
                   yaxis2=dict(overlaying="y", range=[0, 1], visible=False), height=440,
                   margin=dict(l=10, r=10, t=60, b=10),
                   legend=dict(orientation="h", yanchor="top", y=-0.22, xanchor="left", x=0))


__all__ = ["sweep_job", "offered_executors", "points_table", "probabilities", "nearest_point",
           "live_recommendation", "NONE_ABOVE", "floor_text", "measured_table", "alphas_table", "gains_table",
           "fig_measured_flops", "fig_frontier"]
