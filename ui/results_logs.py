"""Pure builders of the Results page (no streamlit): the pruning log (accepted steps only) and
AdapMTL's sparsity per component, from report.json; None for a part the report does not have."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from ui.figures import PALETTE, _fig
from ui.results_view import schemes_of, shared_key


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
            base["flops"] = fl[shared_key(list(fl))]
        elif isinstance(fl, (int, float)):
            base["flops"] = fl
        if isinstance(widths, Mapping):
            for layer, groups in widths.items():
                if isinstance(groups, Mapping):
                    for key, n in groups.items():
                        recs.append({**base, "layer": layer, "group": key, "neurons": n})
    return pd.DataFrame(recs) if recs else None


def fig_prune_log(frame: pd.DataFrame, layer: str | None = None) -> go.Figure:
    """Neurons left per group (summed over layers, or of one layer) after every ACCEPTED prune
    step: a rejected step's widths were tried, then rolled back, so they are never plotted. When
    no step was accepted the figure says so (the network was not pruned)."""
    df = frame if layer is None else frame[frame["layer"] == layer]
    if "accepted" in df.columns:
        df = df[df["accepted"].fillna(False).astype(bool)]
    fig = _fig(f"Neurons left per group after each accepted prune step ({layer or 'all layers'})",
               xaxis=dict(title="prune step (accepted ones)"), yaxis=dict(title="neurons"))
    if df.empty:
        fig.add_annotation(text="No prune step was accepted (every step was rolled back): not pruned",
                           xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False)
        return fig
    by = ["net", "group"] if "net" in df.columns else ["group"]
    for i, (key, part) in enumerate(df.groupby(by, sort=False)):
        s = part.groupby("step", sort=True)["neurons"].sum()
        name = " / ".join(map(str, key)) if isinstance(key, tuple) else str(key)
        fig.add_scatter(x=list(s.index), y=list(s.values), mode="lines+markers", name=name,
                        line=dict(color=PALETTE[i % len(PALETTE)]), marker=dict(size=4))
    return fig


def accepted_steps(frame: pd.DataFrame | None) -> tuple[int, int]:
    """(accepted, all) prune steps of a log frame."""
    if frame is None or "step" not in frame.columns:
        return 0, 0
    key = ["net", "step"] if "net" in frame.columns else ["step"]
    steps = frame.drop_duplicates(key)
    return int(steps["accepted"].fillna(False).astype(bool).sum()), len(steps)


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
    for name, s in schemes_of(report).items():
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
    """Unstructured pruning: Delta_T (%), overall sparsity, effective sparse FLOPs per subset
    (the cost after pruning) and dense FLOPs (the unchanged structure's: NOT after pruning)."""
    rows = {}
    for name, s in schemes_of(report).items():
        if "sparse_flops" not in s:
            continue
        row: dict[str, Any] = {"Delta_T (%)": s.get("delta_t"), "overall sparsity": s.get("overall_sparsity")}
        row.update({f"sparse FLOPs {k}": v for k, v in s["sparse_flops"].items()})
        row.update({f"dense FLOPs {k} (unpruned structure)": v
                    for k, v in (s.get("dense_flops") or {}).items()})
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
    for name, s in schemes_of(report).items():
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


__all__ = ["log_frame", "fig_prune_log", "accepted_steps", "sparsity_frame", "sparsity_frames",
           "fig_sparsity", "sparse_table", "fig_sparsity_breakdown"]
