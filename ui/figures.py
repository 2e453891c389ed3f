"""Pure figure/table builders of the merge explorer (no streamlit: tests call them directly).

Inputs are the backend's plain results (LayerGroups, predicted FLOPs dicts, phase curves, sharing
curves), so every number a figure shows can be checked against
:class:`pam_explorer.regroup.explorer.Explorer`.

The explorer's figures are Apache ECharts options (plain JSON-able dicts for
``st.echarts_chart``): a keyed ECharts chart keeps its identity across reruns and is updated in
place when alpha moves, where a plotly chart whose figure changed is torn down and drawn anew
(Streamlit keys plotly charts by their spec); they are drawn as SVG without animation, so a move
is drawn at once. The Results page's figures stay plotly (:func:`_fig`, built once per run).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import pandas as pd

from pam_explorer.core.subsets import subset_key
from pam_explorer.regroup.algorithms import LayerGroups, Trajectory, cut

if TYPE_CHECKING:  # plotly is imported by the Results page's builders only (seconds on a first visit)
    import plotly.graph_objects as go

PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#FF9DA6",
           "#9D755D", "#BAB0AC", "#EECA3B")
SCHEME_COLORS = {"PAM": "#E45756", "B1": "#4C78A8", "B2": "#72B7B2"}
PHASE_COLORS = {"flat": "#54A24B", "rising": "#F58518", "saturating": "#9D755D"}
DROPPED_COLOR = "#BAB0AC"
LOG_FLOOR = 1e-4  # bits: the smallest value a log MI axis shows (the alpha grid starts here too)
# plotly's toolbar sits in the top 30 px on the right: the title goes below it (38 px down, left),
# the legend between the title and the plot (right), so neither is covered
TITLE_PAD_PX = 38
_LAYOUT = dict(margin=dict(l=10, r=10, t=96, b=10), height=370,
               legend=dict(orientation="h", yanchor="bottom", y=1.01, xanchor="right", x=1))


def plot_title(text: str) -> dict:
    """A plotly title below the toolbar (see TITLE_PAD_PX), left-aligned."""
    return dict(text=text, font=dict(size=14), x=0, xanchor="left", xref="container", y=1, yanchor="top",
                yref="container", pad=dict(t=TITLE_PAD_PX))


def _fig(title: str, **kw) -> go.Figure:
    """An empty plotly figure with the common layout (no plotly template: Streamlit's theme styles it)."""
    import plotly.graph_objects as go

    return go.Figure(layout=_layout(title, **kw))


def _layout(title: str, **kw) -> dict:
    # an explicit empty template: plotly would otherwise deep-copy its default template into every
    # figure (~40 ms each, and ~6 kB more to send per chart); Streamlit's theme styles the chart
    return {"title": plot_title(title), "template": {}, **_LAYOUT, **kw}


def _figure(title: str, traces: list[dict], **kw) -> go.Figure:
    """A whole plotly figure from plain dicts in one pass, without plotly's validation."""
    import plotly.graph_objects as go

    return go.Figure({"data": traces, "layout": _layout(title, **kw)}, _validate=False)


# --------------------------------------------------------------------------- alpha range
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
    """One row per layer: width, neurons per group, dropped neurons (when any layer drops some),
    sharing ratio over the kept neurons (and the alpha used)."""
    keys = group_keys(tasks, groups)
    any_dropped = any(g.dropped for g in groups.values())
    rows = []
    for name, g in groups.items():
        sizes = {subset_key(k): len(v) for k, v in g.groups.items()}
        row = {"layer": name, "width": g.width, **{k: sizes.get(k, 0) for k in keys}}
        if any_dropped:
            row["dropped"] = len(g.dropped)
        row["sharing ratio"] = round(g.sharing_ratio(), 4)
        if alphas is not None:
            row["alpha"] = alphas[name]
        rows.append(row)
    return pd.DataFrame(rows).set_index("layer")


def _chart(title: str, series: list[dict], x_axis: dict, y_axis: dict, subtitle: str = "",
           legend: dict | None = None, grid: dict | None = None) -> dict:
    """An ECharts option with the common look: title top left, legend top right, axis tooltip,
    no animation."""
    return {"animation": False,
            "title": {"text": title, "subtext": subtitle, "left": 0, "top": 0,
                      "textStyle": {"fontSize": 14}, "subtextStyle": {"fontSize": 11}},
            "tooltip": {"trigger": "axis"},
            "legend": legend or {"top": 0, "right": 0, "type": "scroll", "width": "55%"},
            "grid": grid or {"left": 56, "right": 16, "top": 64, "bottom": 36},
            "xAxis": x_axis, "yAxis": y_axis, "series": series}


def fig_groups(table: pd.DataFrame, keys: Sequence[str]) -> dict:
    """Neurons per group per layer, stacked (shared group on top; dropped neurons in grey above
    it), with each layer's sharing ratio over its kept neurons written above the bar (paper
    Fig. 6: the sharing ratio per layer). An ECharts option."""
    layers = list(table.index)
    series = [{"type": "bar", "name": k, "stack": "neurons", "data": [int(v) for v in table[k]],
               "itemStyle": {"color": PALETTE[i % len(PALETTE)]}} for i, k in enumerate(keys)]
    if "dropped" in table.columns:
        series.append({"type": "bar", "name": "dropped (not in the network)", "stack": "neurons",
                       "data": [int(v) for v in table["dropped"]], "itemStyle": {"color": DROPPED_COLOR}})
    series.append({"type": "scatter", "name": "sharing ratio", "symbolSize": 0, "silent": True,
                   "tooltip": {"show": False},
                   "data": [{"value": [layer, int(w)], "label": {"show": True, "position": "top",
                                                                 "formatter": f"{r:.0%} shared"}}
                            for layer, w, r in zip(layers, table["width"], table["sharing ratio"])]})
    option = _chart("Neurons per group and sharing ratio per layer", series,
                    {"type": "category", "data": layers}, {"type": "value", "name": "neurons"})
    option["legend"]["data"] = [x["name"] for x in series if x["type"] == "bar"]
    return option


# --------------------------------------------------------------------------- FLOPs
def flops_table(pred: Mapping[str, Mapping[str, int]]) -> pd.DataFrame:
    """Rows: task subsets; columns: PAM, B1, B2 FLOPs (before pruning)."""
    schemes = [s for s in ("PAM", "B1", "B2") if s in pred]
    subsets = list(pred[schemes[0]])
    df = pd.DataFrame({s: [int(pred[s][k]) for k in subsets] for s in schemes}, index=subsets)
    df.index.name = "subset"
    return df


def fig_flops(table: pd.DataFrame) -> dict:
    """Predicted FLOPs per task subset and scheme, before pruning (an ECharts option)."""
    series = [{"type": "bar", "name": sch, "data": [int(v) for v in table[sch]],
               "itemStyle": {"color": SCHEME_COLORS.get(sch, PALETTE[i % len(PALETTE)])}}
              for i, sch in enumerate(table.columns)]
    return _chart("Predicted FLOPs per task subset (before pruning)", series,
                  {"type": "category", "data": list(table.index)}, {"type": "value", "name": "FLOPs"})


# --------------------------------------------------------------------------- MI curves
def phase_range(curves: Mapping[tuple, Mapping], log_y: bool = False) -> tuple[float, float]:
    """The y-axis range of a phase chart from its data alone (score, MI and chance level of every
    subset): [min(0, lowest), highest * 1.08] bits, or for a log axis the positive values' range
    (floored at LOG_FLOOR) as log10 exponents [log10(lo), log10(hi)]."""
    vals = [float(v) for c in curves.values() for key in ("score", "mi", "null")
            for v in c.get(key, ()) if v is not None and math.isfinite(v)]
    if log_y:
        pos = [v for v in vals if v > LOG_FLOOR]
        lo, hi = (min(pos), max(pos)) if pos else (LOG_FLOOR, 1.0)
        return math.log10(max(lo, LOG_FLOOR) / 1.5), math.log10(hi * 1.5)
    hi = max(vals, default=0.0)
    hi = hi * 1.08 if hi > 0 else 1e-3
    return min(0.0, min(vals, default=0.0)), hi


def nice_bounds(lo: float, hi: float) -> tuple[float, float]:
    """[lo, hi] widened to round numbers (two significant digits of the span), so the axis ends
    are labelled 0.014, not 0.013902733884751798."""
    step = 10 ** (math.floor(math.log10(hi - lo)) - 1) if hi > lo else 1e-3
    return round(math.floor(lo / step) * step, 12), round(math.ceil(hi / step) * step, 12)


def _on_log(values: Sequence[float]) -> list[float | None]:
    return [v if v > LOG_FLOOR else None for v in values]  # not drawable on a log axis: a gap


def _phase_series(c: Mapping, sub: tuple, i: int, k: int, shaded: bool, fix) -> list[dict]:
    """One subset's phase-chart series: its score with its cut ``k`` (and its phases when
    ``shaded``), then its raw MI and chance level (when a chance level was computed)."""
    color, name = PALETTE[i % len(PALETTE)], subset_key(sub)
    xs = range(1, len(c["score"]) + 1)
    n = len(c["score"])
    score = {"type": "line", "name": f"{name}: MI beyond chance", "showSymbol": False,
             "data": [[x, y] for x, y in zip(xs, fix(c["score"]))],
             "lineStyle": {"color": color, "width": 2}, "itemStyle": {"color": color},
             "markLine": {"silent": True, "symbol": "none", "lineStyle": {"type": "dotted", "color": color},
                          "label": {"formatter": f"cut {name}: {k}", "color": color,
                                    "distance": [0, 4 + 13 * (i % 3)]},  # coinciding cuts: stacked
                          "data": [{"xAxis": k + 0.5}]}}
    if shaded:
        score["markArea"] = {"silent": True, "label": {"position": "insideTopLeft", "color": "#555"},
                             "data": [[{"name": ph, "xAxis": start + 0.5,
                                        "itemStyle": {"color": PHASE_COLORS.get(ph, "#ccc"),
                                                      "opacity": 0.12},
                                        # a band in the right half is labelled from its right edge,
                                        # so a narrow last band's name runs left, not off the chart
                                        **({"label": {"position": "insideTopRight"}}
                                           if start > n / 2 else {})},
                                       {"xAxis": end + 0.5}]
                                      for ph, start, end in c["phases"] if end > start]}
    out = [score]
    if c.get("null") and any(c["null"]):
        for key, label, dash in (("mi", "raw MI", "dotted"), ("null", "chance level", "dashed")):
            out.append({"type": "line", "name": f"{name}: {label}", "showSymbol": False,
                        "data": [[x, y] for x, y in zip(xs, fix(c[key]))],
                        "lineStyle": {"color": color, "width": 1, "type": dash, "opacity": 0.5},
                        "itemStyle": {"color": color}})
    return out


def fig_phase(curves: Mapping[tuple, Mapping], trajs: Mapping[tuple, Trajectory], alpha: float,
              layer: str, shade: tuple | None = None, log_y: bool = False) -> dict:
    """MI phase curves of one layer (an ECharts option): per exclusive subset the SCORE (MI minus
    its chance level, bits beyond chance: what alpha is compared with) after each greedy step,
    with the raw MI and the chance level lighter; alpha as a horizontal line (a series in data
    coordinates, so it sits at alpha on a linear and on a log axis alike); each subset's cut as
    a dotted vertical line; the phases of ``shade`` as bands. The y axis is clamped to the data
    (:func:`phase_range`): an alpha far above it (a huge override) is named in the subtitle
    instead of stretching the axis."""
    subsets = list(curves)
    shade = shade if shade in curves else (subsets[0] if subsets else None)
    lo, hi = phase_range(curves, log_y)
    bottom, top = (10 ** math.floor(lo), 10 ** math.ceil(hi)) if log_y else nice_bounds(lo, hi)
    n = max((len(c["score"]) for c in curves.values()), default=0)
    fix = _on_log if log_y else list
    series = [s for i, sub in enumerate(subsets)
              for s in _phase_series(curves[sub], sub, i, cut(trajs[sub], alpha), sub == shade, fix)]
    shown = math.isfinite(alpha) and alpha <= top and (alpha > bottom if log_y else alpha >= bottom)
    note = ""
    if shown:
        series.append({"type": "line", "name": f"alpha = {alpha:g}", "showSymbol": False, "silent": True,
                       "data": [[0.5, alpha], [n + 0.5, alpha]],
                       "lineStyle": {"color": "#000", "type": "dashed"}, "itemStyle": {"color": "#000"}})
    else:
        note = f"alpha = {alpha:g} bits: {'above' if alpha > top else 'below'} the chart"
    y_axis = {"type": "log", "logBase": 10} if log_y else {
        "type": "value", "axisLabel": {"showMinLabel": False, "showMaxLabel": False}}  # no label crowding
    y_axis.update(name="bits" + (" (log; values <= 1e-4 not drawn)" if log_y else ""), min=bottom, max=top)
    return _chart(f"MI phase curves of {layer}", series,
                  {"type": "value", "name": "greedy step (neurons added)", "nameLocation": "middle",
                   "nameGap": 24, "min": 0, "max": n + 1},
                  y_axis, subtitle=note, legend={"bottom": 0, "left": 0, "type": "scroll"},
                  grid={"left": 64, "right": 16, "top": 56, "bottom": 72})


def shared_fractions(alphas: Sequence[float], curve: Mapping[str, Sequence[int]]) -> list[float]:
    """Shared / kept neurons of one layer at each alpha (0 where nothing is kept)."""
    return [s / k if k else 0.0 for s, k in zip(curve["shared"], curve["kept"])]


def sharing_turns(alphas: Sequence[float], curves: Mapping[str, Mapping[str, Sequence[int]]]
                  ) -> dict[str, float]:
    """Per layer, the alpha (> 0) of its least sharing when sharing rises again at a larger
    alpha: from there the exclusive sets pick more and more of the same neurons (``multi``),
    which are shared (or dropped). Layers whose sharing never rises again are left out."""
    out = {}
    for layer, c in curves.items():
        pts = [(a, f, m) for a, f, m in zip(alphas, shared_fractions(alphas, c), c["multi"]) if a > 0]
        if not pts:
            continue
        i = min(range(len(pts)), key=lambda j: pts[j][1])
        if any(f > pts[i][1] + 1e-9 and m > 0 for _, f, m in pts[i + 1:]):
            out[layer] = pts[i][0]
    return out


def fig_shared_vs_alpha(alphas: Sequence[float], curves: Mapping[str, Mapping[str, Sequence[int]]],
                        alpha: float, both_picked: str = "share") -> dict:
    """Shared neurons (percent of each layer's kept neurons) vs alpha per layer (paper Fig. 7a;
    an ECharts option, log alpha axis). Sharing is not monotone: a triangle marks each layer's
    least sharing, beyond which the exclusive sets overlap and a neuron picked by several of
    them is shared (``both_picked="share"``) or dropped."""
    xs = [a for a in alphas if a > 0]
    turns = sharing_turns(alphas, curves)
    fate = "shared" if both_picked == "share" else "dropped"
    series, marks = [], []
    for i, (layer, c) in enumerate(curves.items()):
        frac = dict(zip(alphas, shared_fractions(alphas, c)))
        color = PALETTE[i % len(PALETTE)]
        series.append({"type": "line", "name": layer, "showSymbol": False,
                       "data": [[a, round(100 * frac[a], 2)] for a in xs],
                       "lineStyle": {"color": color}, "itemStyle": {"color": color}})
        if layer in turns:
            marks.append({"value": [turns[layer], round(100 * frac[turns[layer]], 2)],
                          "itemStyle": {"color": color, "borderColor": "#000", "borderWidth": 1},
                          "name": f"{layer}: least sharing; beyond it a neuron picked by several "
                                  f"exclusive sets is {fate}"})
    if marks:
        series.append({"type": "scatter", "name": "least sharing (rises again beyond)", "symbol": "triangle",
                       "symbolSize": 12, "data": marks, "itemStyle": {"color": "#888"},
                       "tooltip": {"trigger": "item", "formatter": "{b}"}})
    if alpha > 0:  # vertical line in data coordinates
        series.append({"type": "line", "name": f"alpha = {alpha:g}", "showSymbol": False, "silent": True,
                       "data": [[alpha, 0], [alpha, 105]],
                       "lineStyle": {"color": "#000", "type": "dashed"}, "itemStyle": {"color": "#000"}})
    return _chart("Shared neurons vs alpha", series,
                  {"type": "log", "logBase": 10, "name": "alpha [bits]", "nameLocation": "middle",
                   "nameGap": 24, "min": min(xs, default=1e-4), "max": max(xs, default=1.0)},
                  {"type": "value", "name": "% shared (of kept)", "min": 0, "max": 105},
                  legend={"bottom": 0, "left": 0, "type": "scroll"},
                  grid={"left": 56, "right": 16, "top": 56, "bottom": 72})


__all__ = ["alpha_grid", "nearest", "group_keys", "sharing_table", "fig_groups",
           "flops_table", "fig_flops", "phase_range", "fig_phase", "shared_fractions",
           "sharing_turns", "fig_shared_vs_alpha", "LOG_FLOOR"]
