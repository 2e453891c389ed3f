"""Report of an experiment: gains of PAM over B1 and B2, and the paper's Table-1 layout."""
from __future__ import annotations

from collections.abc import Mapping

from pam_explorer.cost.analytic import average_gain, peak_gain


def gains(schemes: Mapping[str, Mapping], metric: str = "flops") -> dict[str, dict[str, float]]:
    """{"vs_B1"|"vs_B2": {"average", "peak"}} of PAM's ``metric`` (per task subset: "flops",
    "latency_ms", "sparse_flops") against each present baseline (paper Sec. 6.1: mean / max
    over task subsets of c_baseline / c_PAM); {} when PAM or the metric is missing."""
    if "PAM" not in schemes or metric not in schemes["PAM"]:
        return {}
    pam = schemes["PAM"][metric]
    return {f"vs_{b}": {"average": average_gain(schemes[b][metric], pam),
                        "peak": peak_gain(schemes[b][metric], pam)}
            for b in ("B1", "B2") if b in schemes and metric in schemes[b]}


def markdown_table(report: Mapping) -> str:
    """Accuracy (test, %) and FLOPs of every task subset per scheme, then the gains."""
    schemes = report["schemes"]
    tasks = report["tasks"]
    subsets = list(next(iter(schemes.values()))["flops"])
    lat = all("latency_ms" in s for s in schemes.values())
    head = ["scheme"] + [f"acc {t}" for t in tasks] + [f"FLOPs {s}" for s in subsets] \
        + ([f"ms {s}" for s in subsets] if lat else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ref = report.get("reference_accuracy", {})
    if ref:
        lines.append("| original | " + " | ".join(f"{ref[t]:.2f}" for t in tasks) + " |"
                     + " |" * (len(head) - 1 - len(tasks)))
    for name, s in schemes.items():
        accs = [f"{s['accuracy'][t]:.2f}" for t in tasks]
        flops = [f"{s['flops'][k] / 1e6:.3f} M" for k in subsets]
        ms = [f"{s['latency_ms'][k]:.3f}" for k in subsets] if lat else []
        lines.append("| " + " | ".join([name] + accs + flops + ms) + " |")
    out = "\n".join(lines) + "\n" + _sparse_table(report, subsets)
    for key, g in report.get("gains", {}).items():
        out += f"\nPAM {key.replace('_', ' ')}: average gain {g['average']:.3f}, peak gain {g['peak']:.3f}"
    for key, g in report.get("sparse_gains", {}).items():
        out += (f"\nPAM {key.replace('_', ' ')} (effective sparse FLOPs): average {g['average']:.3f}, "
                f"peak {g['peak']:.3f}")
    for key, g in report.get("latency_gains", {}).items():
        out += (f"\nPAM {key.replace('_', ' ')} (CPU latency, batch 1): average {g['average']:.3f}, "
                f"peak {g['peak']:.3f}")
    return out + "\n"


def _sparse_table(report: Mapping, subsets: list[str]) -> str:
    """Unstructured pruning (AdapMTL): effective sparse FLOPs, overall sparsity and Delta_T."""
    schemes = {k: v for k, v in report["schemes"].items() if "sparse_flops" in v}
    if not schemes:
        return ""
    head = ["scheme", "Delta_T (%)", "sparsity"] + [f"sparse FLOPs {s}" for s in subsets]
    lines = ["", f"Unstructured pruning to {report.get('target_sparsity', '?')} overall sparsity "
             "(dense FLOPs above; effective = multiply-adds with a non-zero weight):", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in schemes.items():
        lines.append("| " + " | ".join([name, f"{s['delta_t']:+.2f}", f"{s['overall_sparsity']:.3f}"]
                                       + [f"{s['sparse_flops'][k] / 1e6:.3f} M" for k in subsets]) + " |")
    return "\n".join(lines) + "\n"
