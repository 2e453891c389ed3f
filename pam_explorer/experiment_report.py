"""Report of an experiment: gains of PAM over B1 and B2, and the paper's Table-1 layout."""
from __future__ import annotations

from typing import Mapping

from pam_explorer.cost import average_gain, peak_gain


def gains(schemes: Mapping[str, Mapping]) -> dict[str, dict[str, float]]:
    """{"vs_B1"|"vs_B2": {"average", "peak"}} of PAM's FLOPs against each present baseline
    (paper Sec. 6.1: mean / max over task subsets of c_baseline / c_PAM)."""
    if "PAM" not in schemes:
        return {}
    pam = schemes["PAM"]["flops"]
    return {f"vs_{b}": {"average": average_gain(schemes[b]["flops"], pam),
                        "peak": peak_gain(schemes[b]["flops"], pam)}
            for b in ("B1", "B2") if b in schemes}


def markdown_table(report: Mapping) -> str:
    """Accuracy (test, %) and FLOPs of every task subset per scheme, then the gains."""
    schemes = report["schemes"]
    tasks = report["tasks"]
    subsets = list(next(iter(schemes.values()))["flops"])
    head = ["scheme"] + [f"acc {t}" for t in tasks] + [f"FLOPs {s}" for s in subsets]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ref = report.get("reference_accuracy", {})
    if ref:
        lines.append("| original | " + " | ".join(f"{ref[t]:.2f}" for t in tasks) + " |"
                     + " |" * len(subsets))
    for name, s in schemes.items():
        accs = [f"{s['accuracy'][t]:.2f}" for t in tasks]
        flops = [f"{s['flops'][k] / 1e6:.3f} M" for k in subsets]
        lines.append("| " + " | ".join([name] + accs + flops) + " |")
    out = "\n".join(lines) + "\n"
    for key, g in report.get("gains", {}).items():
        out += f"\nPAM {key.replace('_', ' ')}: average gain {g['average']:.3f}, peak gain {g['peak']:.3f}"
    return out + "\n"
