"""Pure figure/table builders of the merge explorer (no streamlit: tests call them directly).

Inputs are the backend's plain results (LayerGroups, predicted FLOPs dicts, phase curves), so
every number a figure shows can be checked against :class:`pam_explorer.regroup.explorer.Explorer`.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go

from pam_explorer.core.subsets import subset_key
from pam_explorer.cost.analytic import expected_flops
from pam_explorer.regroup.algorithms import LayerGroups, Trajectory, cut
from pam_explorer.regroup.algorithms import max_mi as layer_max_mi

PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#FF9DA6",
           "#9D755D", "#BAB0AC", "#EECA3B")
SCHEME_COLORS = {"PAM": "#E45756", "B1": "#4C78A8", "B2": "#72B7B2"}
PHASE_COLORS = {"flat": "#54A24B", "rising": "#F58518", "saturating": "#9D755D"}
_LAYOUT = dict(margin=dict(l=10, r=10, t=70, b=10), height=350,
               legend=dict(orientation="h", yanchor="bottom", y=1.01, xanchor="right", x=1))


def _fig(title: str, **kw) -> go.Figure:
    """An empty figure with the common layout (no plotly template: Streamlit's theme styles it,
    and a template costs ~8 ms per figure)."""
    return go.Figure(layout=_layout(title, **kw))


def _layout(title: str, **kw) -> dict:
    return {"title": dict(text=title, font=dict(size=14), x=0, xanchor="left", y=0.98, yanchor="top"),
            **_LAYOUT, **kw}


def _figure(title: str, traces: list[dict], **kw) -> go.Figure:
    """One validation pass for the whole figure (much faster than add_* calls one by one)."""
    return go.Figure({"data": traces, "layout": _layout(title, **kw)})


# --------------------------------------------------------------------------- alpha range
def max_mi(trajectories: Mapping[str, Mapping[tuple, Trajectory]]) -> float:
    """Largest MI (bits) reached on any trajectory: above it no cut changes."""
    return max((layer_max_mi(per) for per in trajectories.values()), default=0.0)


def _round_sig(x: float, sig: int = 3) -> float:
    return float(f"{x:.{sig}g}")


def alpha_grid(top: float, extra: Sequence[float] = (), n: int = 60, low: float = 1e-4) -> list[float]:
    """0, then ``n`` log-spaced values from ``low`` to ``top`` (3 significant digits), + extra."""
    top = max(top, low * 10)
    vals = {0.0, _round_sig(top * 1.0001 + 1e-12)}
    ratio = (top / low) ** (1 / (n - 1))
    vals |= {_round_sig(low * ratio ** k) for k in range(n)}
    vals |= {float(v) for v in extra if v is not None and math.isfinite(v) and 0 <= v <= top * 1.01}
    return sorted(vals)


def nearest(options: Sequence[float], value: float) -> float:
    return min(options, key=lambda o: abs(o - value))


# --------------------------------------------------------------------------- groups
def group_keys(tasks: Sequence[str], groups: Mapping[str, LayerGroups]) -> list[str]:
    """Group names present anywhere, exclusive ones first (by size, then task order), shared last."""
    keys = {subset_key(k) for g in groups.values() for k in g.groups}
    order = {t: i for i, t in enumerate(tasks)}
    return sorted(keys, key=lambda k: (len(k.split("+")), [order.get(t, 99) for t in k.split("+")]))


def sharing_table(tasks: Sequence[str], groups: Mapping[str, LayerGroups],
                  alphas: Mapping[str, float] | None = None) -> pd.DataFrame:
    """One row per layer: width, neurons per group, sharing ratio (and the alpha used)."""
    keys = group_keys(tasks, groups)
    rows = []
    for name, g in groups.items():
        sizes = {subset_key(k): len(v) for k, v in g.groups.items()}
        row = {"layer": name, "width": g.width, **{k: sizes.get(k, 0) for k in keys},
               "sharing ratio": round(g.sharing_ratio(), 4)}
        if alphas is not None:
            row["alpha"] = alphas[name]
        rows.append(row)
    return pd.DataFrame(rows).set_index("layer")


def fig_sharing(table: pd.DataFrame) -> go.Figure:
    """Per-layer sharing ratio (paper Fig. 6)."""
    return _figure("Sharing ratio per layer", [dict(
        type="bar", x=list(table.index), y=list(table["sharing ratio"]), marker_color="#4C78A8",
        text=[f"{r:.0%}" for r in table["sharing ratio"]], textposition="outside", name="shared")],
        yaxis=dict(range=[0, 1.12], tickformat=".0%"))


def fig_groups(table: pd.DataFrame, keys: Sequence[str]) -> go.Figure:
    """Neurons per group per layer, stacked (shared group last = on top)."""
    return _figure("Neurons per group", [
        dict(type="bar", x=list(table.index), y=list(table[k]), name=k,
             marker_color=PALETTE[i % len(PALETTE)]) for i, k in enumerate(keys)], barmode="stack")


# --------------------------------------------------------------------------- FLOPs
def flops_table(pred: Mapping[str, Mapping[str, int]]) -> pd.DataFrame:
    """Rows: task subsets; columns: PAM, B1, B2 FLOPs (before pruning)."""
    schemes = [s for s in ("PAM", "B1", "B2") if s in pred]
    subsets = list(pred[schemes[0]])
    df = pd.DataFrame({s: [int(pred[s][k]) for k in subsets] for s in schemes}, index=subsets)
    df.index.name = "subset"
    return df


def fig_flops(table: pd.DataFrame) -> go.Figure:
    return _figure("Predicted FLOPs per task subset (before pruning)", [
        dict(type="bar", x=list(table.index), y=[int(v) for v in table[s]], name=s,
             marker_color=SCHEME_COLORS.get(s)) for s in table.columns],
        barmode="group", yaxis=dict(title="FLOPs"))


def expected_table(pred: Mapping[str, Mapping[str, int]], probs: Mapping[str, float]) -> dict[str, float]:
    """Expected FLOPs of every scheme under the user's task-combination probabilities; ConfigError
    (from :func:`~pam_explorer.cost.analytic.expected_flops`) unless they are >= 0 and sum to 1."""
    return {s: expected_flops(c, probs) for s, c in pred.items()}


# --------------------------------------------------------------------------- MI curves
def fig_phase(curves: Mapping[tuple, Mapping], trajs: Mapping[tuple, Trajectory], alpha: float,
              layer: str, shade: tuple | None = None, log_y: bool = False) -> go.Figure:
    """MI vs greedy step per exclusive subset; phases of ``shade`` as vrects; alpha as hline;
    each subset's cut as a dotted vline."""
    subsets = list(curves)
    shade = shade if shade in curves else (subsets[0] if subsets else None)
    shapes, notes, traces = [], [], []
    if shade is not None:
        for name, start, end in curves[shade]["phases"]:
            if end > start:
                shapes.append(dict(type="rect", xref="x", yref="paper", x0=start + 0.5, x1=end + 0.5,
                                   y0=0, y1=1, fillcolor=PHASE_COLORS.get(name, "#ccc"), opacity=0.12,
                                   line=dict(width=0), layer="below"))
                notes.append(dict(x=start + 0.5, y=1, xref="x", yref="paper", text=name, showarrow=False,
                                  xanchor="left", yanchor="top", font=dict(size=11, color="#555")))
    for i, sub in enumerate(subsets):
        mi = list(curves[sub]["mi"])
        color = PALETTE[i % len(PALETTE)]
        traces.append(dict(type="scatter", x=list(range(1, len(mi) + 1)),
                           y=[max(v, 1e-6) for v in mi] if log_y else mi, mode="lines",
                           name=subset_key(sub), line=dict(color=color)))
        k = cut(trajs[sub], alpha)
        shapes.append(dict(type="line", xref="x", yref="paper", x0=k + 0.5, x1=k + 0.5, y0=0, y1=1,
                           line=dict(color=color, dash="dot")))
        notes.append(dict(x=k + 0.5, y=0.02 + 0.08 * i, xref="x", yref="paper", showarrow=False,
                          text=f"cut {subset_key(sub)}: {k}", xanchor="left",
                          font=dict(size=11, color=color)))
    if math.isfinite(alpha) and (alpha > 0 or not log_y):
        shapes.append(dict(type="line", xref="paper", yref="y", x0=0, x1=1,
                           y0=math.log10(alpha) if log_y else alpha, y1=math.log10(alpha) if log_y else alpha,
                           line=dict(color="black", dash="dash")))
        traces.append(dict(type="scatter", x=[None], y=[None], mode="lines", name=f"alpha = {alpha:g}",
                           line=dict(color="black", dash="dash")))
    return _figure(f"MI phase curves of {layer}", traces, shapes=shapes, annotations=notes,
                   xaxis=dict(title="greedy step (neurons added)"),
                   yaxis=dict(title="I(L'; Y^other) [bits]", type="log" if log_y else "linear"))


def fig_shared_vs_alpha(alphas: Sequence[float], counts: Mapping[str, Sequence[int]],
                        widths: Mapping[str, int], alpha: float) -> go.Figure:
    """Shared neurons (fraction of the layer) vs alpha per layer (paper Fig. 7a)."""
    xs = [a for a in alphas if a > 0]
    traces = [dict(type="scatter", x=xs, y=[c / widths[layer] for a, c in zip(alphas, ys) if a > 0],
                   mode="lines", name=layer, line=dict(color=PALETTE[i % len(PALETTE)]),
                   hovertemplate="alpha %{x:.3g}: %{y:.1%}")
              for i, (layer, ys) in enumerate(counts.items())]
    if alpha > 0:  # a trace, not a shape: shapes on log axes want log10 coordinates
        traces.append(dict(type="scatter", x=[alpha, alpha], y=[0, 1.05], mode="lines",
                           name=f"alpha = {alpha:g}", line=dict(color="black", dash="dash"),
                           hoverinfo="skip"))
    return _figure("Shared neurons vs alpha", traces, xaxis=dict(title="alpha [bits]", type="log"),
                   yaxis=dict(title="shared fraction", tickformat=".0%", range=[0, 1.05]))


__all__ = ["max_mi", "alpha_grid", "nearest", "group_keys", "sharing_table", "fig_sharing", "fig_groups",
           "flops_table", "fig_flops", "expected_table", "fig_phase", "fig_shared_vs_alpha"]
