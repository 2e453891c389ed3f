"""Pure builders of the Results page (no streamlit): Table 1, gains, widths, pruning log, sparsity.

They read report.json as written by ``python -m pam_explorer experiment`` and return None for a
part the report does not have (optional parts are simply not shown). Reports of several seeds
hold means, with ``<field>_ci95`` intervals and per-seed values; the display tables write them as
"mean ± half-width of the 95 % CI" and an empty cell as a dash (never "None").
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from ui.figures import PALETTE, SCHEME_COLORS, _fig
from ui.labels import DASH, overrides_text

SCHEME_ORDER = ("B1", "B2", "PAM")


def _schemes(report: Mapping) -> dict:
    s = report.get("schemes")
    if not isinstance(s, Mapping):
        return {}
    return {k: s[k] for k in [*SCHEME_ORDER, *[k for k in s if k not in SCHEME_ORDER]] if k in s}


def unstructured(report: Mapping) -> bool:
    """An unstructured method (AdapMTL): "flops" is then the EFFECTIVE sparse cost after pruning
    and "dense_flops" the unchanged structure's (not a cost after pruning)."""
    return any(isinstance(s, Mapping) and "sparse_flops" in s for s in _schemes(report).values())


def flops_label(report: Mapping) -> str:
    return "effective FLOPs" if unstructured(report) else "FLOPs"


def table1(report: Mapping) -> pd.DataFrame | None:
    """Rows: schemes (B1, B2, PAM); columns: accuracy per task (%), FLOPs (after pruning; the
    effective ones for unstructured methods) per task subset and, when the run measured it, CPU
    latency per subset (ms, batch 1). Means over seeds; numbers (NaN where a scheme has none)."""
    schemes = _schemes(report)
    if not schemes:
        return None
    tasks = list(report.get("tasks") or next(iter(schemes.values())).get("accuracy", {}))
    label = flops_label(report)
    rows = {}
    ref = report.get("reference_accuracy")
    for name, s in schemes.items():
        row: dict[str, Any] = {f"acc {t} (%)": (s.get("accuracy") or {}).get(t) for t in tasks}
        row.update({f"{label} {k}": v for k, v in (s.get("flops") or {}).items()})
        row.update({f"ms {k} (CPU)": v for k, v in (s.get("latency_ms") or {}).items()})
        rows[name] = row
    df = pd.DataFrame.from_dict(rows, orient="index")
    if isinstance(ref, Mapping):
        df.loc["original"] = {f"acc {t} (%)": ref.get(t) for t in tasks}
        df = df.loc[["original", *schemes]]
    df.index.name = "scheme"
    return df.apply(pd.to_numeric, errors="coerce")


def _half_width(ci: Any) -> float | None:
    if isinstance(ci, Sequence) and len(ci) == 2 and all(isinstance(x, (int, float)) for x in ci):
        return (ci[1] - ci[0]) / 2
    return None


def pm(mean: Any, ci: Any = None, fmt: str = "{:,.2f}") -> str:
    """"mean ± half-width of the CI" (the mean alone for one seed), a dash for no value."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return DASH
    half = _half_width(ci)
    return fmt.format(mean) + (f" ± {fmt.format(half)}" if half else "")


def table1_display(report: Mapping) -> pd.DataFrame | None:
    """Table 1 as text: "mean ± CI half-width" per cell over seeds, the worst seed's accuracy
    beside it for several seeds, a dash where a scheme has no value (the original networks have
    only accuracies)."""
    schemes = _schemes(report)
    if not schemes:
        return None
    tasks = list(report.get("tasks") or next(iter(schemes.values())).get("accuracy", {}))
    label = flops_label(report)
    several = len(report.get("seeds") or []) > 1
    subsets = list(next(iter(schemes.values())).get("flops") or {})
    has_ms = any("latency_ms" in s for s in schemes.values())
    cols = [f"acc {t} (%)" for t in tasks] + [f"{label} {k}" for k in subsets] \
        + ([f"ms {k} (CPU)" for k in subsets] if has_ms else [])
    rows: dict[str, dict] = {}
    ref = report.get("reference_accuracy")
    if isinstance(ref, Mapping):
        rows["original"] = {c: DASH for c in cols} | {f"acc {t} (%)": pm(ref.get(t)) for t in tasks}
    for name, s in schemes.items():
        row = {}
        for t in tasks:
            cell = pm((s.get("accuracy") or {}).get(t), (s.get("accuracy_ci95") or {}).get(t))
            worst = (s.get("accuracy_min") or {}).get(t)
            row[f"acc {t} (%)"] = cell + (f" (worst {worst:.2f})" if several and worst is not None else "")
        for k in subsets:
            row[f"{label} {k}"] = pm((s.get("flops") or {}).get(k), (s.get("flops_ci95") or {}).get(k),
                                     "{:,.0f}")
            if has_ms:
                row[f"ms {k} (CPU)"] = pm((s.get("latency_ms") or {}).get(k),
                                          (s.get("latency_ms_ci95") or {}).get(k), "{:.3f}")
        rows[name] = row
    df = pd.DataFrame.from_dict(rows, orient="index")[cols]
    df.index.name = "scheme"
    return df


VERDICT_TEXT = {"above": "PAM cheaper (CI above 1)", "below": "PAM costlier (CI below 1)",
                "no difference": "no difference (CI includes 1)"}


def gains_table(report: Mapping) -> pd.DataFrame | None:
    """Average and peak gains of PAM (c_baseline / c_PAM over task subsets), means over seeds."""
    rows = {}
    for field, suffix in _gain_fields(report):
        g = report.get(field)
        if isinstance(g, Mapping):
            rows.update({k.replace("_", " ") + suffix: {"average": v.get("average"), "peak": v.get("peak")}
                         for k, v in g.items() if isinstance(v, Mapping)})
    return pd.DataFrame(rows).T if rows else None


def _gain_fields(report: Mapping) -> list[tuple[str, str]]:
    """(report field, label) of the gains to show; ``sparse_gains`` repeats ``gains`` (which are
    of the effective FLOPs for an unstructured method)."""
    return [("gains", " (effective FLOPs)" if unstructured(report) else " (FLOPs)"),
            ("latency_gains", " (CPU latency)")]


def gains_display(report: Mapping) -> pd.DataFrame | None:
    """Gains as text: mean ± CI half-width, the 95 % CI, the verdict (whether the CI excludes 1)
    and the number of seeds; one seed: the value, no CI, no verdict."""
    rows = {}
    for field, suffix in _gain_fields(report):
        g = report.get(field)
        if not isinstance(g, Mapping):
            continue
        for key, v in g.items():
            if not isinstance(v, Mapping):
                continue
            n = v.get("n", 1)
            row = {}
            for kind in ("average", "peak"):
                ci = v.get(f"{kind}_ci95") if n and n > 1 else None
                row[kind] = pm(v.get(kind), ci, "{:.3f}") + "x"
                row[f"{kind} 95% CI"] = f"{ci[0]:.3f}-{ci[1]:.3f}" if ci else DASH
            several = bool(n and n > 1)
            row["verdict (average)"] = VERDICT_TEXT.get(v.get("average_verdict"), DASH) if several \
                else "one seed: no CI"
            row["seeds"] = n
            rows[key.replace("_", " ") + suffix] = row
    return pd.DataFrame(rows).T if rows else None


def config_lines(report: Mapping) -> list[str]:
    """What produced the report: method, floor, rank, PAM's regrouping (profile, alpha,
    overrides, both_picked, MI profile), seeds, threads, quick."""
    cfg = report.get("config") or {}
    rg = cfg.get("regroup_config") or {}
    mi = cfg.get("mi") or {}
    lines = [f"preset `{report.get('preset')}` · pruning `{report.get('prune')}`"
             + (f" (rank `{cfg['rank']}`, floor `{cfg['floor']}`)" if "rank" in cfg else "")
             + (f" · target sparsity {report['target_sparsity']}" if "target_sparsity" in report else "")]
    alpha = report.get("alpha")
    lines.append("PAM regrouping: " + (f"profile `{cfg['regroup']}`, " if "regroup" in cfg else "")
                 + (f"alpha {alpha:g} bits" if isinstance(alpha, (int, float)) else "alpha ?")
                 + f", per-layer overrides: {overrides_text(rg.get('overrides') or ())}"
                 + (f", both_picked `{rg['both_picked']}`" if "both_picked" in rg else "")
                 + (f", MI profile `{mi['profile']}` (N={mi.get('n_samples')}, sigma2={mi.get('sigma2')}, "
                    f"{mi.get('kernel')} kernel, {mi.get('null_perms')} permutations)"
                    if "profile" in mi else ""))
    seeds = report.get("seeds")
    lines.append((f"seeds {list(seeds)}" if seeds else "one seed (a report from before seeds)")
                 + (f" · torch threads {report['torch_threads']}" if "torch_threads" in report else "")
                 + (" · **quick run**" if report.get("quick") else ""))
    return lines


def floor_misses(report: Mapping) -> list[str]:
    """One line per scheme that misses the accuracy floor (original - delta) in some seed."""
    out = []
    for name, f in (report.get("floor_check") or {}).items():
        if isinstance(f, Mapping) and not f.get("meets", True):
            worst = ", ".join(f"{t} {w:+.2f}" for t, w in (f.get("worst") or {}).items())
            out.append(f"{name} misses the accuracy floor (original - delta) in some seed: worst {worst} "
                       "points")
    return out


def fig_gains(report: Mapping) -> go.Figure | None:
    """Average and peak gain of PAM vs B1 and vs B2 (paper Fig. 5 style), means over seeds with
    their 95 % CIs as error bars."""
    rows = []
    for field, suffix in _gain_fields(report):
        g = report.get(field)
        if isinstance(g, Mapping):
            rows += [(k.replace("_", " ") + suffix, v) for k, v in g.items() if isinstance(v, Mapping)]
    if not rows:
        return None
    title = "PAM's gain (c_baseline / c_PAM)" + (" · quick run" if report.get("quick") else "")
    fig = _fig(title, barmode="group", yaxis=dict(title="c_baseline / c_PAM"))
    for i, kind in enumerate(("average", "peak")):
        ys = [v.get(kind) for _, v in rows]
        cis = [v.get(f"{kind}_ci95") if v.get("n", 1) > 1 else None for _, v in rows]
        err = dict(type="data", symmetric=False, array=[(c[1] - y) if c else 0 for c, y in zip(cis, ys)],
                   arrayminus=[(y - c[0]) if c else 0 for c, y in zip(cis, ys)], visible=any(cis))
        fig.add_bar(x=[r[0] for r in rows], y=ys, name=kind, marker_color=PALETTE[i], error_y=err,
                    text=[f"{y:.2f}x" for y in ys], textposition="outside")
    fig.add_hline(y=1.0, line=dict(color="grey", dash="dot"))
    return fig


def fig_flops_bars(report: Mapping) -> go.Figure | None:
    schemes = _schemes(report)
    if not schemes:
        return None
    label = flops_label(report)
    fig = _fig(f"{label[0].upper() + label[1:]} per task subset after pruning"
               + (" · quick run" if report.get("quick") else ""), barmode="group", yaxis=dict(title=label))
    for name, s in schemes.items():
        fl, ci = s.get("flops") or {}, s.get("flops_ci95") or {}
        err = [ci.get(k) for k in fl]
        fig.add_bar(x=list(fl), y=list(fl.values()), name=name, marker_color=SCHEME_COLORS.get(name),
                    error_y=dict(type="data", symmetric=False, visible=any(err),
                                 array=[(c[1] - v) if c else 0 for c, v in zip(err, fl.values())],
                                 arrayminus=[(v - c[0]) if c else 0 for c, v in zip(err, fl.values())]))
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
    seeds = report.get("seeds") or []
    fig = _fig("PAM sharing ratio per layer" + (f" (seed {seeds[0]})" if len(seeds) > 1 else "")
               + (" · quick run" if report.get("quick") else ""),
               yaxis=dict(range=[0, 1.05], tickformat=".0%"), barmode="group")
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
    """Unstructured pruning: Delta_T (%), overall sparsity, effective sparse FLOPs per subset
    (the cost after pruning) and dense FLOPs (the unchanged structure's: NOT after pruning)."""
    rows = {}
    for name, s in _schemes(report).items():
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


__all__ = ["table1", "table1_display", "pm", "gains_table", "gains_display", "config_lines", "floor_misses",
           "unstructured", "flops_label", "fig_gains", "fig_flops_bars", "sharing_after", "fig_sharing_after",
           "log_frame", "fig_prune_log", "accepted_steps", "sparsity_frame", "sparsity_frames",
           "fig_sparsity", "sparse_table", "fig_sparsity_breakdown", "VERDICT_TEXT"]
