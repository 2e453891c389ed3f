"""What to try next when PAM does not pay (issue 26, point 4): one or two sentences built from the
figures a report or a sweep holds (pure, no streamlit).

* An experiment whose PAM is not cheaper than a baseline: how far pruning shrank PAM (the
  headroom: the paper's networks shrink 5.7-20x, so merging has redundancy to expose), the
  accuracy tolerance it ran with, the alpha it used, and whether it was a quick run.
* A sweep with no recommended alpha (no alpha meets the floor in every seed): the tolerance that
  would admit the closest alpha, whether the baselines miss the floor too, and whether that
  alpha sits at an end of the swept range.
"""
from __future__ import annotations

from collections.abc import Mapping

from ui.labels import number

PAPER_SHRINK = "5.7-20x"
LOW_HEADROOM = 3.0  # PAM shrunk less than this by pruning: little redundancy for merging to expose


def _num(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _everything(d: Mapping) -> str | None:
    """The key of the all-task subset (most tasks) of a {subset: value} map."""
    return max(d, key=lambda k: len(str(k).split("+")), default=None)


def _headroom(report: Mapping) -> str | None:
    pam = (report.get("schemes") or {}).get("PAM") or {}
    before, after = pam.get("flops_before_pruning") or {}, pam.get("flops") or {}
    k = _everything(after)
    if k is None or not (_num(before.get(k)) and _num(after.get(k)) and after[k] > 0):
        return None
    shrink = before[k] / after[k]
    if shrink >= LOW_HEADROOM:
        return None
    return (f"networks with more headroom (pruning shrank PAM only {shrink:.1f}x on {k}, the paper's "
            f"{PAPER_SHRINK}: little redundancy for merging to expose)")


def next_steps(report: Mapping) -> str | None:
    """Advice when PAM's average FLOPs gain is <= 1 against some baseline; None when it pays."""
    gains = report.get("gains") if isinstance(report.get("gains"), Mapping) else {}
    losing = {k: v["average"] for k, v in gains.items()
              if isinstance(v, Mapping) and _num(v.get("average")) and v["average"] <= 1.0}
    if not losing:
        return None
    quick = ["a full run instead of this quick one (it prunes only a few steps)"]
    tries = quick if report.get("quick") else []
    tries += [t for t in (_headroom(report),) if t]
    delta = report.get("delta")  # the tolerance shown (the Results slider's), else the run's own
    delta = delta if _num(delta) else ((report.get("config") or {}).get("prune_config") or {}).get("delta")
    tries.append("a looser accuracy tolerance" + (f" than delta = {delta:g} points" if _num(delta) else ""))
    alpha = number(report.get("alpha"))  # strict JSON writes an infinite alpha as "inf"
    tries.append("another alpha" + (f" than {alpha:g} bits" if alpha is not None else "")
                 + " (a sweep measures every alpha where the grouping changes)")
    said = ", ".join(f"{v:.3g}x {k.replace('_', ' ')}" for k, v in losing.items())
    return f"PAM does not pay here ({said}). To try next: " + "; ".join(tries) + "."


def sweep_next_steps(sweep: Mapping) -> str | None:
    """Advice when no swept alpha meets the floor in every seed; None when one does."""
    points = [p for p in sweep.get("points") or () if isinstance(p, Mapping) and "flops" in p]
    if not points or any(p.get("meets_floor") for p in points):
        return None
    alphas = sorted(p["alpha"] for p in points)
    need = {p["alpha"]: -min(p["worst"].values()) for p in points
            if isinstance(p.get("worst"), Mapping) and p["worst"]}
    parts = []
    if need:
        best = min(need, key=need.get)
        delta = sweep.get("delta")
        used = f" (this sweep used {delta:g})" if _num(delta) else ""
        parts.append(f"the closest alpha, {best:.3g}, would meet the floor with a tolerance of delta = "
                     f"{max(need[best], 0):.2f} points{used}")
        if len(alphas) > 1 and best in (alphas[0], alphas[-1]):
            parts.append(f"it is at the {'low' if best == alphas[0] else 'high'} end of the swept alphas: "
                         "extend the range that way")
    missed = [b for b, v in (sweep.get("baselines") or {}).items()
              if isinstance(v, Mapping) and v.get("meets_floor") is False]
    if missed:
        parts.append(f"{' and '.join(missed)} miss the floor too, so pruning itself ran too far for this "
                     "tolerance" + (" (a quick sweep prunes with tiny data: run a full one)"
                                    if (sweep.get("config") or {}).get("quick") else ""))
    head = "No alpha meets the accuracy floor in every seed"
    return f"{head}. To try next: " + "; ".join(parts) + "." if parts else \
        f"{head}: try a looser tolerance or other alphas."


def quick_label(config: Mapping | None) -> str:
    return " · **quick sweep** (tiny data, few steps: a smoke test)" if (config or {}).get("quick") else ""


__all__ = ["next_steps", "sweep_next_steps", "quick_label", "PAPER_SHRINK"]
