"""Report of an experiment: per-seed figures, their mean and 95 % CI over seeds, gains of PAM
over B1 and B2 paired by seed, and the paper's Table-1 layout in markdown.

Gains (paper Sec. 6.1): average = mean over task subsets of c_baseline / c_PAM, peak = max. They
are computed per seed (the same seed's B1, B2 and PAM) and then summarised over seeds (mean,
std, 95 % CI (:func:`pam_explorer.runs.stats.ci`: Student t below 5 seeds, percentile bootstrap
from 5), and whether the CI excludes 1 = "no difference").
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from pam_explorer.cost.analytic import average_gain, peak_gain
from pam_explorer.runs import readoff, stats

PER_SUBSET = ("flops", "params", "latency_ms", "latency_ms_cuda", "sparse_flops", "dense_flops")
PER_TASK = ("accuracy", "val_accuracy")
SCALARS = ("delta_t", "overall_sparsity", "seconds")


def gains(schemes: Mapping[str, Mapping], metric: str = "flops") -> dict[str, dict[str, float]]:
    """{"vs_B1"|"vs_B2": {"average", "peak"}} of PAM's ``metric`` (per task subset: "flops",
    "latency_ms", "sparse_flops") against each present baseline; {} when PAM or the metric is
    missing."""
    if schemes.get("PAM") is None or schemes["PAM"].get(metric) is None:
        return {}
    pam = schemes["PAM"][metric]
    return {f"vs_{b}": {"average": average_gain(schemes[b][metric], pam),
                        "peak": peak_gain(schemes[b][metric], pam)}
            for b in ("B1", "B2") if schemes.get(b) is not None and schemes[b].get(metric) is not None}


def summarise_gains(per_seed: Sequence[Mapping[str, Mapping[str, float]]]) -> dict:
    """Per-seed gains (outputs of :func:`gains`) -> {"vs_B1": {"average": mean, "peak": mean,
    "average_std", "average_ci95", "average_verdict", the same for peak, "n", "per_seed":
    {"average": [...], "peak": [...]}}}; a baseline missing in some seed is left out."""
    out: dict = {}
    keys = set.intersection(*(set(g) for g in per_seed)) if per_seed else set()
    for key in sorted(keys):
        row: dict = {"n": len(per_seed), "per_seed": {}}
        for kind in ("average", "peak"):
            s = stats.summary([g[key][kind] for g in per_seed])
            row.update({kind: s["mean"], f"{kind}_std": s["std"], f"{kind}_ci95": s["ci95"],
                        f"{kind}_verdict": stats.verdict(s["ci95"], n=s["n"]), "ci_method": s["method"]})
            row["per_seed"][kind] = s["values"]
        out[key] = row
    return out


LATENCY = ("latency_ms", "latency_ms_cuda")


def at_tolerance(per_seed: Mapping[str, Mapping[str, Mapping]], delta: float, tasks: Sequence[str]) -> dict:
    """Every scheme's figures read off at tolerance ``delta`` (:mod:`.readoff`), summarised over
    seeds, and PAM's gains paired by seed (seeds where PAM or a baseline has no checkpoint above
    the floor are left out of that pair, and listed in ``missing``). ``per_seed``: {seed:
    {scheme: stage record}}. Latency was measured on the net read off at the run's own delta
    only, so it is kept only at that delta."""
    merged = [{name: record_at(rec, delta, tasks) for name, rec in recs.items()}
              for recs in per_seed.values()]
    missing = {name: [seed for seed, m in zip(per_seed, merged) if m[name] is None] for name in merged[0]} \
        if merged else {}
    schemes = summarise_schemes(merged)
    first = next(iter(per_seed.values()), {})
    for name, row in schemes.items():
        if row.get("n") == 0:  # no seed passes: the record's details (widths, groups, ...) without figures
            row.update({k: v for k, v in first[name].items()
                        if k not in ("curve", "readoffs", *readoff.FIGURES, *LATENCY) and k not in row})
    return {"delta": float(delta), "schemes": schemes,
            "gains": summarise_gains([g for g in (gains(m) for m in merged) if g]),
            "missing": {k: v for k, v in missing.items() if v}}


def record_at(record: Mapping, delta: float, tasks: Sequence[str]) -> dict | None:
    """A stage record with its figures replaced by those read off at ``delta`` (None: no
    checkpoint passes)."""
    figures = readoff.figures_at(record, delta, tasks)
    if figures is None:
        return None
    if "curve" not in record:  # the floor-greedy loop or AdapMTL: one set of figures
        return dict(record)
    same = abs(float(record.get("delta", delta)) - float(delta)) < 1e-12
    keep = {k: v for k, v in record.items() if k not in ("curve", "readoffs", "above_floor", *readoff.FIGURES)
            and (same or k not in LATENCY)}
    return {**keep, **figures}


def summarise_schemes(per_seed: Sequence[Mapping[str, Mapping | None]]) -> dict:
    """Per-seed scheme records -> {scheme: mean figures}: per subset and per task the mean over
    seeds, with ``<field>_ci95`` ({key: [lo, hi]}) and, for accuracy, ``accuracy_min`` (the worst
    seed); scalars (Delta_T, overall sparsity, seconds) as means. Fields absent in a seed are
    left out. Detail fields (widths, pruning log, groups, sparsity breakdowns) are the first
    seed's, so a view of one run still finds them; ``per_seed`` in the report has all of them."""
    out: dict = {}
    for name in per_seed[0] if per_seed else ():
        recs = [s[name] for s in per_seed if s.get(name) is not None]
        if not recs:  # no seed has a checkpoint above the floor
            out[name] = {"flops": None, "accuracy": None, "n": 0}
            continue
        row: dict = {k: v for k, v in recs[0].items()
                     if k not in PER_SUBSET + PER_TASK + SCALARS}
        row["n"] = len(recs)
        for field in PER_SUBSET + PER_TASK:
            if all(field in r for r in recs):
                keys = list(recs[0][field])
                row[field] = {k: stats.mean([r[field][k] for r in recs]) for k in keys}
                row[f"{field}_ci95"] = {k: stats.ci([r[field][k] for r in recs]) for k in keys}
        if "accuracy" in row:
            row["accuracy_min"] = {t: min(r["accuracy"][t] for r in recs) for t in recs[0]["accuracy"]}
        for field in SCALARS:
            if all(isinstance(r.get(field), (int, float)) for r in recs):
                row[field] = stats.mean([r[field] for r in recs])
        out[name] = row
    return out


def floor_check(schemes: Mapping[str, Mapping], original: Mapping[str, float], delta: float,
                per_seed: Sequence[Mapping[str, Mapping]]) -> dict:
    """{scheme: {"meets": bool, "worst": {task: worst test accuracy - original}}}: whether every
    task's test accuracy is at least the original network's minus ``delta`` in every seed."""
    out = {}
    for name in schemes:
        accs = [s[name]["accuracy"] for s in per_seed if s.get(name) is not None and s[name].get("accuracy")]
        if not accs:
            continue
        worst = {t: min(a[t] for a in accs) - original[t] for t in original}
        out[name] = {"meets": all(w >= -delta - 1e-9 for w in worst.values()), "worst": worst}
    return out


def _pm(mean: float, ci: Sequence[float], scale: float = 1.0, fmt: str = "{:.3f}") -> str:
    lo, hi = ci
    if hi - lo <= 0:
        return fmt.format(mean / scale)
    return f"{fmt.format(mean / scale)} ± {fmt.format((hi - lo) / 2 / scale)}"


def _pace(cfg: Mapping) -> str:
    """The published schedule's pace (configs written before it was a setting ran linear)."""
    if cfg.get("schedule", "published") != "published":
        return ""
    budget = cfg.get("merged_budget", "per-network")
    merged = f", merged budget `{budget}`" if budget != "per-network" else ""
    grid = f", checkpoint grid step {cfg['grid_step']:g}" if cfg.get("grid_step") is not None else ""
    return f", pace `{cfg.get('pace', 'flops')}`{merged}{grid}"


def _header(report: Mapping) -> list[str]:
    cfg = report.get("config", {})
    seeds = report.get("seeds", [])
    lines = [f"Preset `{report['preset']}`, pruning `{report['prune']}`"
             + (f" (rank `{cfg['rank']}`, floor `{cfg['floor']}`" + _pace(cfg) + ")" if "rank" in cfg else "")
             + (f", PAM regrouping `{cfg['regroup']}` at alpha {report.get('alpha')}"
                if "regroup" in cfg else "")
             + (f"; at most {cfg['max_steps']} pruning turns per scheme" if cfg.get("max_steps") else "")
             + (f"; pruning finetune lr {cfg['prune_lr']:g}" if cfg.get("prune_lr") else "")
             + (f"; seeds {seeds} (mean ± half-width of the 95 % CI: Student t below 5 values, "
                "percentile bootstrap from 5)" if len(seeds) > 1 else "")
             + (f"; torch threads {report['torch_threads']}" if "torch_threads" in report else "") + "."]
    if report.get("schedule") == "published":
        lines.append(f"Published schedule: costs read off each scheme's accuracy-FLOPs curve at tolerance "
                     f"{report.get('delta', 0.5)} (the most-pruned checkpoint whose monotone validation "
                     "accuracy is within it on every task); other tolerances in report.json.")
    elif "schedule" in report or "tolerances" not in report:
        lines.append("Schedule `floor-greedy` (the accept/reject loop).")
    if report.get("quick"):
        lines.append("**Quick run** (tiny data, few steps): a smoke test, not a result.")
    return lines + [""]


def markdown_table(report: Mapping) -> str:
    """Accuracy (test, %) and FLOPs of every task subset per scheme, then the gains."""
    tasks = report["tasks"]
    schemes = {k: v for k, v in report["schemes"].items() if v.get("flops") is not None}
    unstructured = any("sparse_flops" in s for s in schemes.values())
    cost = "sparse_flops" if unstructured else "flops"
    subsets = list(next(iter(schemes.values()))[cost]) if schemes else []
    lat = all("latency_ms" in s for s in schemes.values())
    label = "effective FLOPs" if unstructured else "FLOPs"
    head = ["scheme"] + [f"acc {t}" for t in tasks] + [f"{label} {s}" for s in subsets] \
        + ([f"ms {s}" for s in subsets] if lat else [])
    lines = _header(report) + ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ref = report.get("reference_accuracy", {})
    if ref:
        lines.append("| original | " + " | ".join(f"{ref[t]:.2f}" for t in tasks) + " |"
                     + " — |" * (len(head) - 1 - len(tasks)))
    for name, s in schemes.items():
        ci = lambda f, k: s.get(f"{f}_ci95", {}).get(k, (0.0, 0.0))  # noqa: E731
        accs = [_pm(s["accuracy"][t], ci("accuracy", t), fmt="{:.2f}") for t in tasks]
        flops = [_pm(s[cost][k], ci(cost, k), 1e6) + " M" for k in subsets]
        ms = [_pm(s["latency_ms"][k], ci("latency_ms", k)) for k in subsets] if lat else []
        lines.append("| " + " | ".join([name] + accs + flops + ms) + " |")
    for name, s in report["schemes"].items():
        if s.get("flops") is None:
            lines.append(f"| {name} | no checkpoint above the floor (original - {report.get('delta', 0.5)}) "
                         "in any seed |")
    for name, seeds in report.get("missing", {}).items():
        lines.append(f"\n{name}: no checkpoint above the floor in seed(s) {', '.join(map(str, seeds))}; "
                     "its figures and gains are over the other seeds.")
    out = "\n".join(lines) + "\n" + _sparse_table(report, subsets)
    for title, key in (("FLOPs" if not unstructured else "effective sparse FLOPs", "gains"),
                       ("CPU latency, batch 1", "latency_gains")):
        for vs, g in report.get(key, {}).items():
            out += f"\nPAM {vs.replace('_', ' ')} ({title}): " + _gain_text(g)
    for name, f in report.get("floor_check", {}).items():
        if not f["meets"]:
            out += (f"\n{name} misses the accuracy floor (original - delta) in some seed: worst "
                    + ", ".join(f"{t} {w:+.2f}" for t, w in f["worst"].items()))
    return out + "\n"


def _gain_text(g: Mapping) -> str:
    if "average_ci95" not in g or g.get("n", 1) < 2:
        return f"average {g['average']:.3f}, peak {g['peak']:.3f}"
    lo, hi = g["average_ci95"]
    plo, phi = g["peak_ci95"]
    return (f"average {g['average']:.3f} (95 % CI {lo:.3f}-{hi:.3f}, {g['average_verdict']}), "
            f"peak {g['peak']:.3f} (95 % CI {plo:.3f}-{phi:.3f}); n = {g['n']} seeds")


def _sparse_table(report: Mapping, subsets: list[str]) -> str:
    """Unstructured pruning (AdapMTL): overall sparsity, Delta_T and the dense FLOPs (the cost of
    the unpruned structure: no neuron is removed, so these are NOT FLOPs after pruning)."""
    schemes = {k: v for k, v in report["schemes"].items() if "sparse_flops" in v}
    if not schemes:
        return ""
    head = ["scheme", "Delta_T (%)", "overall sparsity"] + [f"dense FLOPs {s}" for s in subsets]
    sparsities = [s["overall_sparsity"] for s in schemes.values()]
    lines = ["", f"Unstructured pruning to {report.get('target_sparsity', '?')} overall sparsity: "
             "effective FLOPs above count multiply-adds with a non-zero weight; dense FLOPs are those "
             "of the unchanged structure (no neuron is removed).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in schemes.items():
        lines.append("| " + " | ".join([name, f"{s['delta_t']:+.2f}", f"{s['overall_sparsity']:.3f}"]
                                       + [f"{s['dense_flops'][k] / 1e6:.3f} M" for k in subsets]) + " |")
    if max(sparsities) - min(sparsities) > 0.01:
        lines.append(f"\nSparsity is not matched across schemes ({min(sparsities):.3f}-"
                     f"{max(sparsities):.3f}): compare Delta_T and effective FLOPs with care.")
    return "\n".join(lines) + "\n"


__all__ = ["gains", "summarise_gains", "summarise_schemes", "at_tolerance", "record_at", "floor_check",
           "markdown_table"]
