"""Pure builders of the Results page (no streamlit): Table 1, gains, widths after pruning
(the pruning log and AdapMTL sparsity: ui/results_logs.py).

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

from ui import results_latency as T
from ui.figures import PALETTE, SCHEME_COLORS, _fig
from ui.labels import DASH, FLOPS_DEF, code, number, overrides_text

SCHEME_ORDER = ("B1", "B2", "PAM")


def schemes_of(report: Mapping) -> dict:
    """The report's schemes in display order (B1, B2, PAM, then any others); {} if none."""
    s = report.get("schemes")
    if not isinstance(s, Mapping):
        return {}
    return {k: s[k] for k in [*SCHEME_ORDER, *[k for k in s if k not in SCHEME_ORDER]] if k in s}


def subsets_of(schemes: Mapping) -> list[str]:
    """The task subsets of the first scheme with FLOPs (a scheme with no checkpoint above the
    floor has none)."""
    return next((list(s["flops"]) for s in schemes.values()
                 if isinstance(s, Mapping) and isinstance(s.get("flops"), Mapping)), [])


def unstructured(report: Mapping) -> bool:
    """An unstructured method (AdapMTL): "flops" is then the EFFECTIVE sparse cost after pruning
    and "dense_flops" the unchanged structure's (not a cost after pruning)."""
    return any(isinstance(s, Mapping) and "sparse_flops" in s for s in schemes_of(report).values())


def flops_label(report: Mapping) -> str:
    return "effective FLOPs" if unstructured(report) else "FLOPs"


def table1(report: Mapping) -> pd.DataFrame | None:
    """Rows: schemes (B1, B2, PAM); columns: accuracy per task (%), FLOPs (after pruning; the
    effective ones for unstructured methods) per task subset and, when the run measured it, CPU
    latency per subset (ms, batch 1). Means over seeds; numbers (NaN where a scheme has none)."""
    schemes = schemes_of(report)
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
    only accuracies). Accuracy and FLOPs; measured latency has its own table
    (:func:`latency_display`), so that each fits the page."""
    schemes = schemes_of(report)
    if not schemes:
        return None
    tasks = list(report.get("tasks") or next(iter(schemes.values())).get("accuracy", {}))
    label = flops_label(report)
    several = len(report.get("seeds") or []) > 1
    subsets = subsets_of(schemes)
    cols = [f"acc {t} (%)" for t in tasks] + [f"{label} {k}" for k in subsets]
    rows: dict[str, dict] = {}
    ref = report.get("reference_accuracy")
    if isinstance(ref, Mapping):
        rows["original"] = {c: DASH for c in cols} | {f"acc {t} (%)": pm(ref.get(t)) for t in tasks}
    for name, s in schemes.items():
        row = {}
        for t in tasks:
            cell = pm((s.get("accuracy") or {}).get(t), (s.get("accuracy_ci95") or {}).get(t))
            worst = (s.get("accuracy_min") or {}).get(t)
            se = (s.get("accuracy_se") or {}).get(t)  # one seed: the standard error of its test split
            row[f"acc {t} (%)"] = cell + (f" (worst {worst:.2f})" if several and worst is not None else "") \
                + (f" (SE {se:.2f})" if not several and isinstance(se, (int, float)) and cell != DASH else "")
        for k in subsets:
            row[f"{label} {k}"] = pm((s.get("flops") or {}).get(k), (s.get("flops_ci95") or {}).get(k),
                                     "{:,.0f}")
        rows[name] = row
    df = pd.DataFrame.from_dict(rows, orient="index")[cols]
    df.index.name = "scheme"
    return df


def latency_display(report: Mapping) -> pd.DataFrame | None:
    """CPU latency per scheme and task subset (ms, batch 1) as text: the interleaved median, "⚠"
    when unreliable (:mod:`ui.results_latency`); an older report's mean ± CI over seeds; None
    when the report measured none."""
    if not T.has_latency(report):
        return None
    schemes = schemes_of(report)
    subsets = subsets_of(schemes)
    def older(s: Mapping, k: str) -> str:  # a report without the interleaved measurement
        return pm((s.get("latency_ms") or {}).get(k), (s.get("latency_ms_ci95") or {}).get(k), "{:.3f}")
    rows = {name: {T.ms_column(k): T.ms_cell(report, name, k, older(s, k)) for k in subsets}
            for name, s in schemes.items()}
    df = pd.DataFrame.from_dict(rows, orient="index")
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
            rows.update({k.replace("_", " ") + _suffix(report, field, suffix, v):
                         {"average": v.get("average"), "peak": v.get("peak")}
                         for k, v in g.items() if isinstance(v, Mapping)})
    return pd.DataFrame(rows).T if rows else None


def _suffix(report: Mapping, field: str, suffix: str, entry: Mapping) -> str:
    return T.gain_label(report, entry) if field == "latency_gains" else suffix


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
            rows[key.replace("_", " ") + _suffix(report, field, suffix, v)] = row
    return pd.DataFrame(rows).T if rows else None


def config_lines(report: Mapping) -> list[str]:
    """What produced the report: method, floor, rank, PAM's regrouping (profile, alpha,
    overrides, both_picked, MI profile), seeds, threads, quick."""
    cfg = report.get("config") or {}
    rg = cfg.get("regroup_config") or {}
    mi = cfg.get("mi") or {}
    lines = [f"preset {code(report.get('preset'))} · pruning {code(report.get('prune'))}"
             + (f" (rank {code(cfg['rank'])}, floor {code(cfg.get('floor'))}, "
                f"pace {code(cfg.get('pace', 'flops'))})" if "rank" in cfg else "")
             + (f" · target sparsity {report['target_sparsity']}" if "target_sparsity" in report else "")]
    alpha = number(report.get("alpha"))  # strict JSON writes an infinite alpha as "inf"
    lines.append("PAM regrouping: " + (f"profile {code(cfg['regroup'])}, " if "regroup" in cfg else "")
                 + (f"alpha {alpha:g} bits" if alpha is not None else "alpha ?")
                 + f", per-layer overrides: {code(overrides_text(rg.get('overrides') or ()))}"
                 + (f", both_picked {code(rg['both_picked'])}" if "both_picked" in rg else "")
                 + (f", MI profile {code(mi['profile'])} (N={mi.get('n_samples')}, "
                    f"sigma2={mi.get('sigma2')}, {code(mi.get('kernel'))} kernel, {mi.get('null_perms')} "
                    "permutations)"
                    if "profile" in mi else ""))
    seeds = report.get("seeds")
    lines.append((f"seeds {list(seeds)}" if seeds else "one seed (a report from before seeds)")
                 + (f" · torch threads {report['torch_threads']}" if "torch_threads" in report else "")
                 + (" · **quick run**" if report.get("quick") else ""))
    return lines


def missing_lines(report: Mapping) -> list[str]:
    """One line per scheme with seeds that have no checkpoint above the floor at the report's
    tolerance (the published schedule; ``missing``): its figures and gains are over the other
    seeds, or absent (a dash) when no seed has one."""
    schemes, out = schemes_of(report), []
    delta = report.get("delta")
    floor = f"(original - {delta:g} on validation)" if isinstance(delta, (int, float)) \
        else "(original - delta)"
    for name, seeds in (report.get("missing") or {}).items():
        if not isinstance(seeds, list) or not seeds:
            continue
        which = ", ".join(str(s) for s in seeds)
        none = (schemes.get(name) or {}).get("flops") is None
        out.append(f"{name}: no checkpoint above the floor {floor} in seed{'s' if len(seeds) > 1 else ''} "
                   f"{which}; " + ("no figures or gains at this tolerance." if none
                                   else "its figures and gains are over the other seeds."))
    return out


CI_TEXT = {"t": "t-interval: fewer than 5 seeds", "bootstrap": "percentile bootstrap", "none": "no interval"}


def ci_method(report: Mapping) -> str:
    """How the report's 95 % CIs over its seeds were made: reports of the published schedule use
    a t-interval below 5 seeds and a percentile bootstrap from 5 (runs.stats.ci_method); older
    reports used the bootstrap for any number of seeds."""
    if "schedule" not in report:
        return CI_TEXT["bootstrap"]
    from pam_explorer.runs.stats import ci_method as method  # what the writer used for n seeds

    return CI_TEXT[method(len(report.get("seeds") or []))]


def gains_caption(report: Mapping) -> str:
    """How the gains were paired and their CIs made (their ``ci_method``, else the report's)."""
    methods = {g.get("ci_method") for g in (report.get("gains") or {}).values() if isinstance(g, Mapping)}
    methods = [CI_TEXT[m] for m in sorted(methods - {None}) if m in CI_TEXT]
    return ("PAM's gains c_baseline / c_PAM, average and peak over task subsets, paired by seed (a seed "
            "counts where PAM and the baseline both have figures); 95 % CI: "
            + (", ".join(methods) if methods else ci_method(report)) + ".")


def table1_caption(report: Mapping, tolerance: float | None) -> str:
    """What Table 1 shows: over how many seeds and how, what the accuracies and FLOPs are, and the
    tolerance they were read off at (None: a report without curves)."""
    seeds = report.get("seeds") or []
    head = (f"Mean ± half-width of the 95 % CI over seeds {list(seeds)} ({ci_method(report)}); (worst seed) "
            "accuracy. " if len(seeds) > 1 else "One seed; (SE): the standard error of its test accuracy. ")
    effective = " (effective: multiply-adds with a non-zero weight)" if unstructured(report) else ""
    at = f" Read off the curves at tolerance {tolerance:g} points." if tolerance is not None else ""
    return (f"{head}Accuracy: test, %. {flops_label(report)}: after pruning, batch 1{effective}. "
            f"{FLOPS_DEF}. {DASH}: no value (the original networks have accuracies only; a scheme with "
            f"no checkpoint above the floor has no figures).{at}")


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
    their 95 % CIs as error bars: FLOPs gains on the left, latency gains on their own axis on the
    right (only a report's reliable latency figures: :func:`ui.results_latency.charted_gains`;
    an older report's unchecked latency is not charted)."""
    flops = [(k.replace("_", " "), v) for field, _ in _gain_fields(report)[:1]
             for k, v in (report.get(field) or {}).items() if isinstance(v, Mapping)]
    latency = T.charted_gains(report)
    panels = [(f"{flops_label(report)} gain", flops), ("CPU latency gain (reliable figures only)", latency)]
    panels = [p for p in panels if p[1]]
    if not panels:
        return None
    from plotly.subplots import make_subplots

    title = "PAM's gain (c_baseline / c_PAM)" + (" · quick run" if report.get("quick") else "")
    fig = make_subplots(rows=1, cols=len(panels), horizontal_spacing=0.12)
    fig.update_layout(_fig(title, barmode="group").layout)
    for col, (name, rows) in enumerate(panels, start=1):  # each panel named under its bars
        _gain_bars(fig, rows, col)
        fig.update_xaxes(title_text=name, row=1, col=col)
        fig.update_yaxes(title_text="c_baseline / c_PAM", rangemode="tozero", row=1, col=col)
        fig.add_hline(y=1.0, line=dict(color="grey", dash="dot"), row=1, col=col)
    return fig


def _gain_bars(fig: go.Figure, rows: list[tuple[str, Mapping]], col: int) -> None:
    """Average and peak bars of ``rows`` (label, gain entry) in subplot ``col``."""
    for i, kind in enumerate(("average", "peak")):
        ys = [v.get(kind) for _, v in rows]
        cis = [v.get(f"{kind}_ci95") if (v.get("n") or 1) > 1 else None for _, v in rows]
        err = dict(type="data", symmetric=False,
                   array=[(c[1] - y) if c and y is not None else 0 for c, y in zip(cis, ys)],
                   arrayminus=[(y - c[0]) if c and y is not None else 0 for c, y in zip(cis, ys)],
                   visible=any(cis))
        fig.add_bar(x=[r[0] for r in rows], y=ys, name=kind, marker_color=PALETTE[i], error_y=err,
                    text=[f"{y:.2f}x" if isinstance(y, (int, float)) else DASH for y in ys],
                    textposition="outside", legendgroup=kind, showlegend=col == 1, row=1, col=col)


def fig_flops_bars(report: Mapping) -> go.Figure | None:
    schemes = schemes_of(report)
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


def shared_key(keys: Sequence[str]) -> str:
    """The group of every task (the longest subset key) among ``keys``."""
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
        shared = groups.get(shared_key(list(groups)), 0) if groups else 0
        rows.append({"layer": layer, **groups, "width": total,
                     "sharing ratio": round(shared / total, 4) if total else 0.0})
    return pd.DataFrame(rows).set_index("layer").fillna(0)


def fig_sharing_after(report: Mapping, before: Mapping | None = None) -> go.Figure | None:
    pam = schemes_of(report).get("PAM") or {}
    df = sharing_after(pam.get("widths"))
    if df is None or ("flops" in pam and pam["flops"] is None):  # no checkpoint above the floor
        return None
    seeds = report.get("seeds") or []
    seed = pam.get("widths_seed", seeds[0] if seeds else None)  # the read-off's seed (runs/tolerance.py)
    fig = _fig("PAM sharing ratio per layer" + (f" (seed {seed})" if len(seeds) > 1 else "")
               + (" · quick run" if report.get("quick") else ""),
               yaxis=dict(range=[0, 1.12], tickformat=".0%"), barmode="group")
    b = sharing_after(pam.get("groups_before_pruning") or {})
    for name, frame, color in (("before pruning", b, "#BAB0AC"), ("after pruning", df, "#4C78A8")):
        if frame is not None:  # the value on every bar: a 0 % bar has no height, its label shows it
            ys = list(frame["sharing ratio"])
            fig.add_bar(x=list(frame.index), y=ys, name=name, marker_color=color,
                        text=[f"{y:.0%}" for y in ys], textposition="outside", cliponaxis=False)
    return fig


__all__ = ["table1", "table1_display", "latency_display", "pm", "gains_table", "gains_display",
           "config_lines", "floor_misses", "missing_lines", "subsets_of", "ci_method", "gains_caption",
           "table1_caption", "CI_TEXT",
           "unstructured", "flops_label", "fig_gains", "fig_flops_bars", "sharing_after", "fig_sharing_after",
           "schemes_of", "shared_key", "VERDICT_TEXT"]
