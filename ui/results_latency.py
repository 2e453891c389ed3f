"""Pure builders of the Results page's latency parts (no streamlit): measured CPU latency is shown
with its spread and reliability, and only reliable figures become gains.

A report with ``latency_measurement`` (:mod:`pam_explorer.cost.latency_compare`: every scheme's
subset models timed interleaved) gives per figure the median, the IQR, whether it is reliable and
why not; its ``latency_gains`` come from reliable figures only and are charted on their own axis,
never beside FLOPs gains (a latency ratio of 300x would flatten them). Older reports measured
each scheme once, in sequence: their latency is shown as "not checked for reliability" and is
not charted as a gain.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from ui.labels import DASH

UNCHECKED = "not checked for reliability"
UNRELIABLE = "⚠"  # Table 1 marks an unreliable figure; the details table says why


def measurement(report: Mapping) -> Mapping | None:
    """The report's interleaved latency measurement, or None (an older report)."""
    m = report.get("latency_measurement")
    return m if isinstance(m, Mapping) and isinstance(m.get("schemes"), Mapping) else None


def has_latency(report: Mapping) -> bool:
    schemes = report.get("schemes") if isinstance(report.get("schemes"), Mapping) else {}
    return measurement(report) is not None or any(
        isinstance(s, Mapping) and "latency_ms" in s for s in schemes.values())


def figure(report: Mapping, scheme: str, subset: str) -> Mapping | None:
    m = measurement(report)
    cell = ((m or {}).get("schemes", {}).get(scheme) or {}).get(subset) if m else None
    return cell if isinstance(cell, Mapping) else None


def ms_cell(report: Mapping, scheme: str, subset: str, unchecked_text: str) -> str:
    """Table 1's latency cell: the median, marked when unreliable (short: Table 1 has a column
    per subset and must fit; :func:`details` has the IQR and the reason); an older report's
    ``unchecked_text`` (its mean ± CI over seeds); a dash when there is none."""
    if measurement(report) is None:
        return unchecked_text
    c = figure(report, scheme, subset)
    if c is None:
        return DASH
    return f"{c['median_ms']:.3f}" + ("" if c.get("reliable") else f" {UNRELIABLE}")


def details(report: Mapping) -> pd.DataFrame | None:
    """One row per measured figure: scheme, subset, median and IQR (ms), reliable, why not."""
    m = measurement(report)
    if m is None:
        return None
    rows = [{"scheme": s, "subset": k, "median ms": f"{c['median_ms']:.3f}",
             "IQR ms": f"{c['iqr_ms']:.3f}" if isinstance(c.get("iqr_ms"), (int, float)) else DASH,
             "reliable": "yes" if c.get("reliable") else f"no {UNRELIABLE}", "why not": c.get("why") or ""}
            for s, per in m["schemes"].items() if isinstance(per, Mapping)
            for k, c in per.items() if isinstance(c, Mapping)]
    return pd.DataFrame(rows).set_index(["scheme", "subset"]) if rows else None


def ms_column(subset: str) -> str:
    return f"ms {subset} (CPU)"


def unreliable_lines(report: Mapping) -> list[str]:
    """One line per unreliable figure: "B1 A+B: 105.6 ms (spread: IQR ...)". Plain text (the
    page escapes it: the reasons come from a file)."""
    m = measurement(report)
    if m is None:
        return []
    out = []
    for scheme, per in m["schemes"].items():
        if not isinstance(per, Mapping):
            continue
        for subset, c in per.items():
            if isinstance(c, Mapping) and not c.get("reliable"):
                out.append(f"{scheme} {subset}: {c.get('median_ms', float('nan')):.3f} ms "
                           f"({c.get('why') or 'no reason recorded'})")
    return out


def caption(report: Mapping) -> str:
    """What the latency figures are, and how far they can be trusted."""
    m = measurement(report)
    if m is None:
        return (f"CPU latency (ms, batch 1): {UNCHECKED}. This report measured each scheme once, in "
                "sequence, so a busy moment of the machine can land on one scheme: its latency gains are "
                "not charted.")
    return (f"CPU latency (ms, batch 1): median of {m.get('rounds', '?')} interleaved rounds with "
            f"{m.get('threads', '?')} thread(s); {UNRELIABLE}: unreliable, not used for gains (IQR and "
            f"reason under 'Latency details'). Rule: {m.get('rule', '?')}.")


def gain_label(report: Mapping, entry: Any) -> str:
    """The gains table's suffix of a latency gain row."""
    if measurement(report) is None:
        return f" (CPU latency, {UNCHECKED})"
    subsets = entry.get("subsets") if isinstance(entry, Mapping) else None
    return " (CPU latency, reliable figures" + (f": {', '.join(map(str, subsets))})" if subsets else ")")


def charted_gains(report: Mapping) -> list[tuple[str, Mapping]]:
    """(label, gain entry) of the latency gains to chart: those of a checked report only."""
    g = report.get("latency_gains")
    if measurement(report) is None or not isinstance(g, Mapping):
        return []
    return [(k.replace("_", " "), v) for k, v in g.items() if isinstance(v, Mapping)]


__all__ = ["UNCHECKED", "UNRELIABLE", "measurement", "has_latency", "figure", "ms_cell", "ms_column",
           "details", "unreliable_lines", "caption", "gain_label", "charted_gains"]
