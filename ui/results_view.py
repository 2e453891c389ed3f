"""Pure builders of the Results page (no streamlit): Table 1, gains, widths, pruning log, sparsity.

They read report.json as written by ``python -m pam_explorer experiment`` and return None for a
part the report does not have (optional parts are simply not shown).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from ui.figures import PALETTE, SCHEME_COLORS, _fig

SCHEME_ORDER = ("B1", "B2", "PAM")


def _schemes(report: Mapping) -> dict:
    s = report.get("schemes")
    if not isinstance(s, Mapping):
        return {}
    return {k: s[k] for k in [*SCHEME_ORDER, *[k for k in s if k not in SCHEME_ORDER]] if k in s}


def table1(report: Mapping) -> pd.DataFrame | None:
    """Rows: schemes (B1, B2, PAM); columns: accuracy per task (%), FLOPs per task subset and,
    when the run measured it, CPU latency per subset (ms, batch 1)."""
    schemes = _schemes(report)
    if not schemes:
        return None
    tasks = list(report.get("tasks") or next(iter(schemes.values())).get("accuracy", {}))
    rows = {}
    ref = report.get("reference_accuracy")
    for name, s in schemes.items():
        row: dict[str, Any] = {f"acc {t} (%)": (s.get("accuracy") or {}).get(t) for t in tasks}
        row.update({f"FLOPs {k}": v for k, v in (s.get("flops") or {}).items()})
        row.update({f"ms {k} (CPU)": v for k, v in (s.get("latency_ms") or {}).items()})
        rows[name] = row
    df = pd.DataFrame.from_dict(rows, orient="index")
    if isinstance(ref, Mapping):
        df.loc["original"] = {f"acc {t} (%)": ref.get(t) for t in tasks}
        df = df.loc[["original", *schemes]]
    df.index.name = "scheme"
    return df.apply(pd.to_numeric, errors="coerce")


def gains_table(report: Mapping) -> pd.DataFrame | None:
    rows = {}
    metrics = (("gains", ""), ("sparse_gains", " (sparse FLOPs)"), ("latency_gains", " (CPU latency)"))
    for field, suffix in metrics:
        g = report.get(field)
        if isinstance(g, Mapping):
            rows.update({k.replace("_", " ") + suffix: {"average": v.get("average"), "peak": v.get("peak")}
                         for k, v in g.items() if isinstance(v, Mapping)})
    return pd.DataFrame(rows).T if rows else None


def fig_gains(report: Mapping) -> go.Figure | None:
    """Average and peak FLOPs gain of PAM vs B1 and vs B2 (paper Fig. 5 style)."""
    df = gains_table(report)
    if df is None:
        return None
    fig = _fig("PAM's FLOPs gain", barmode="group", yaxis=dict(title="c_baseline / c_PAM"))
    for i, col in enumerate(("average", "peak")):
        fig.add_bar(x=list(df.index), y=list(df[col]), name=col, marker_color=PALETTE[i],
                    text=[f"{v:.2f}x" for v in df[col]], textposition="outside")
    fig.add_hline(y=1.0, line=dict(color="grey", dash="dot"))
    return fig


def fig_flops_bars(report: Mapping) -> go.Figure | None:
    schemes = _schemes(report)
    if not schemes:
        return None
    fig = _fig("FLOPs per task subset after pruning", barmode="group", yaxis=dict(title="FLOPs"))
    for name, s in schemes.items():
        fl = s.get("flops") or {}
        fig.add_bar(x=list(fl), y=list(fl.values()), name=name, marker_color=SCHEME_COLORS.get(name))
    return fig


def _shared_key(keys: Sequence[str]) -> str:
    return max(keys, key=lambda k: len(k.split("+")))


def sharing_after(widths: Mapping) -> pd.DataFrame | None:
    """Per layer: neurons per group and sharing ratio of a {layer: {key: n}} widths map."""
    if not isinstance(widths, Mapping) or not widths or \
            not all(isinstance(v, Mapping) and all(isinstance(n, (int, float)) for n in v.values())
                    for v in widths.values()):
        return None
    rows = []
    for layer, groups in widths.items():
        total = sum(groups.values())
        shared = groups.get(_shared_key(list(groups)), 0) if groups else 0
        rows.append({"layer": layer, **groups, "width": total,
                     "sharing ratio": round(shared / total, 4) if total else 0.0})
    return pd.DataFrame(rows).set_index("layer").fillna(0)


def fig_sharing_after(report: Mapping, before: Mapping | None = None) -> go.Figure | None:
    pam = _schemes(report).get("PAM") or {}
    df = sharing_after(pam.get("widths"))
    if df is None:
        return None
    fig = _fig("PAM sharing ratio per layer", yaxis=dict(range=[0, 1.05], tickformat=".0%"), barmode="group")
    b = sharing_after(pam.get("groups_before_pruning") or {})
    if b is not None:
        fig.add_bar(x=list(b.index), y=list(b["sharing ratio"]), name="before pruning",
                    marker_color="#BAB0AC")
    fig.add_bar(x=list(df.index), y=list(df["sharing ratio"]), name="after pruning", marker_color="#4C78A8")
    return fig


def log_frame(log: Any) -> pd.DataFrame | None:
    """Pruning log -> long frame (step, task, accepted, layer, group, neurons, flops, val acc).

    ``log`` is a list of rows, or {task: rows} (B1 prunes each task's net on its own)."""
    if isinstance(log, Mapping):
        parts = [log_frame(rows) for rows in log.values()]
        parts = [p.assign(net=t) for t, p in zip(log, parts) if p is not None]
        return pd.concat(parts, ignore_index=True) if parts else None
    if not isinstance(log, list) or not log:
        return None
    recs = []
    for i, row in enumerate(log):
        if not isinstance(row, Mapping):
            continue
        widths = row.get("widths")
        base = {"step": row.get("step", i), "task": row.get("task"), "accepted": row.get("accepted"),
                "val_accuracy": row.get("val_accuracy")}
        fl = row.get("flops")
        if isinstance(fl, Mapping) and fl:  # cost of running every task (the largest subset)
            base["flops"] = fl[_shared_key(list(fl))]
        elif isinstance(fl, (int, float)):
            base["flops"] = fl
        if isinstance(widths, Mapping):
            for layer, groups in widths.items():
                if isinstance(groups, Mapping):
                    for key, n in groups.items():
                        recs.append({**base, "layer": layer, "group": key, "neurons": n})
    return pd.DataFrame(recs) if recs else None


def fig_prune_log(frame: pd.DataFrame, layer: str | None = None, accepted_only: bool = True) -> go.Figure:
    """Neurons left per group (summed over layers, or of one layer) after every step
    (accepted steps only by default: a rejected step's widths were tried, then rolled back)."""
    df = frame if layer is None else frame[frame["layer"] == layer]
    if accepted_only and "accepted" in df.columns and df["accepted"].any():
        df = df[df["accepted"].fillna(True).astype(bool)]
    fig = _fig(f"Neurons left per group ({layer or 'all layers'})", xaxis=dict(title="prune step"),
               yaxis=dict(title="neurons"))
    by = ["net", "group"] if "net" in df.columns else ["group"]
    for i, (key, part) in enumerate(df.groupby(by, sort=False)):
        s = part.groupby("step", sort=True)["neurons"].sum()
        name = " / ".join(map(str, key)) if isinstance(key, tuple) else str(key)
        fig.add_scatter(x=list(s.index), y=list(s.values), mode="lines+markers", name=name,
                        line=dict(color=PALETTE[i % len(PALETTE)]), marker=dict(size=4))
    return fig


def sparsity_frame(series: Any) -> pd.DataFrame | None:
    """AdapMTL per-component sparsity: list of {"step", component: fraction} -> frame."""
    if not isinstance(series, list) or not series or not all(isinstance(r, Mapping) for r in series):
        return None
    df = pd.DataFrame(series)
    if "step" not in df.columns or len(df.columns) < 2:
        return None
    return df.set_index("step")


def sparsity_frames(report: Mapping) -> dict[str, tuple[pd.DataFrame, Any]]:
    """{label: (sparsity frame, step the thresholds froze at)} of every AdapMTL network:
    B2 / PAM one each, B1 one per task network ("B1 A", ...)."""
    out = {}
    for name, s in _schemes(report).items():
        series, frozen = s.get("sparsity_series"), s.get("frozen_at_step")
        if isinstance(series, Mapping):  # B1: one series per task network
            for t, ser in series.items():
                f = sparsity_frame(ser)
                if f is not None:
                    out[f"{name} {t}"] = (f, frozen.get(t) if isinstance(frozen, Mapping) else None)
        else:
            f = sparsity_frame(series)
            if f is not None:
                out[name] = (f, frozen)
    return out


def fig_sparsity(frame: pd.DataFrame, scheme: str, frozen_at: Any = None) -> go.Figure:
    """AdapMTL Fig. 3: sparsity of each component (and overall) over the training steps."""
    fig = _fig(f"AdapMTL sparsity per component ({scheme})", xaxis=dict(title="step"),
               yaxis=dict(title="sparsity", tickformat=".0%", range=[0, 1.02]))
    for i, col in enumerate(frame.columns):
        fig.add_scatter(x=list(frame.index), y=list(frame[col]), mode="lines", name=str(col),
                        line=dict(color=PALETTE[i % len(PALETTE)], dash="dash" if col == "overall" else None))
    if isinstance(frozen_at, (int, float)):
        fig.add_vline(x=frozen_at, line=dict(color="gray", dash="dot"),
                      annotation_text="thresholds frozen", annotation_position="bottom right")
    return fig


def sparse_table(report: Mapping) -> pd.DataFrame | None:
    """Unstructured pruning: Delta_T (%), overall sparsity and effective sparse FLOPs per subset."""
    rows = {}
    for name, s in _schemes(report).items():
        if "sparse_flops" not in s:
            continue
        row: dict[str, Any] = {"Delta_T (%)": s.get("delta_t"), "overall sparsity": s.get("overall_sparsity")}
        row.update({f"sparse FLOPs {k}": v for k, v in s["sparse_flops"].items()})
        rows[name] = row
    if not rows:
        return None
    df = pd.DataFrame.from_dict(rows, orient="index").apply(pd.to_numeric, errors="coerce")
    df.index.name = "scheme"
    return df


def fig_sparsity_breakdown(report: Mapping) -> go.Figure | None:
    """Final sparsity per component (shared backbone, each task's exclusive part + head) per
    network: B2 / PAM one bar group each, B1 one per task network."""
    bars: dict[str, dict[str, float]] = {}
    for name, s in _schemes(report).items():
        sp = s.get("sparsity")
        if not isinstance(sp, Mapping) or "sparse_flops" not in s:
            continue
        if all(isinstance(v, Mapping) for v in sp.values()):  # B1
            for t, v in sp.items():
                bars[f"{name} {t}"] = {("body" if c == "backbone" else "head" if c == t else c): x
                                       for c, x in v.items()}
        else:
            bars[name] = dict(sp)
    if not bars:
        return None
    fig = _fig("Final sparsity per component", barmode="group",
               yaxis=dict(title="sparsity", tickformat=".0%", range=[0, 1.02]))
    comps = list(dict.fromkeys(c for v in bars.values() for c in v))
    for i, c in enumerate(comps):
        fig.add_bar(x=list(bars), y=[bars[b].get(c) for b in bars], name=c,
                    marker_color=PALETTE[i % len(PALETTE)])
    return fig


__all__ = ["table1", "gains_table", "fig_gains", "fig_flops_bars", "sharing_after", "fig_sharing_after",
           "log_frame", "fig_prune_log", "sparsity_frame", "sparsity_frames", "fig_sparsity",
           "sparse_table", "fig_sparsity_breakdown"]
