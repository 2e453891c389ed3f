"""The sweep's report (DIR/sweep.json, sweep.md) from its stage records: pure, no disk access.

Per alpha: the per-seed FLOPs of every task subset and accuracy of every task (test, %), with the
grouping before pruning; means, std and 95 % bootstrap CIs over seeds; PAM's gains over B1 and B2
paired by seed (:func:`pam_explorer.runs.report.summarise_gains`).

* **Meets the floor**: every seed of the point finished and, for stages of the published schedule,
  every seed has a checkpoint read off at delta (validation accuracy within delta of the
  originals' on every task: its figures are the point's, :mod:`.readoff`); for records of the
  floor-greedy loop, every task's test accuracy is at least the original network's minus delta
  in every seed (the experiment's ``floor_check``). The records keep their curves
  (``per_seed``), so a reader can read them off at any other tolerance.
* **Frontier**: the alphas that meet the floor and that no other such alpha dominates on the
  mean FLOPs over seeds: b dominates a when b costs at most a's FLOPs on every task subset and
  less on at least one (Pareto). Alphas with equal FLOPs on every subset are all kept.
* **Recommended alpha** for a task-usage mix (probability per subset): among the alphas that
  meet the floor, the lowest expected FLOPs under the mix (``cost.analytic.expected_flops`` of
  the mean FLOPs); on a tie the smaller alpha (more sharing). None when no alpha meets the floor.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from pam_explorer.core.subsets import all_subsets, subset_key
from pam_explorer.cost.analytic import expected_flops
from pam_explorer.runs import report as rep
from pam_explorer.runs import stats

FORMAT = "pam-explorer-sweep/1"
KEEP = ("flops", "params", "accuracy", "val_accuracy", "groups_before_pruning", "dropped_before_pruning",
        "seconds", "curve", "readoffs", "reference_val_accuracy", "above_floor", "delta", "schedule")
TIMING = ("seconds", "execution")  # not deterministic: left out when two sweeps are compared


def uniform_mix(tasks: Sequence[str]) -> dict[str, float]:
    """Every task subset equally likely."""
    subsets = [subset_key(s) for s in all_subsets(list(tasks))]
    return {s: 1.0 / len(subsets) for s in subsets}


def _summary(recs: Sequence[Mapping], field: str) -> dict:
    """{"<field>": mean per key, "<field>_std", "<field>_ci95"} over the records."""
    keys = list(recs[0][field])
    values = {k: [float(r[field][k]) for r in recs] for k in keys}
    return {field: {k: stats.mean(v) for k, v in values.items()},
            f"{field}_std": {k: stats.std(v) for k, v in values.items()},
            f"{field}_ci95": {k: list(stats.ci(v)) for k, v in values.items()}}


def _floor(recs: Sequence[Mapping], original: Mapping[str, float], delta: float) -> dict:
    worst = {t: min(r["accuracy"][t] for r in recs) - original[t] for t in original}
    return {"meets_floor": all(w >= -delta - 1e-9 for w in worst.values()), "worst": worst}


def scheme_summary(per_seed: Mapping[int, Mapping], seeds: Sequence[int], original: Mapping[str, float],
                   delta: float) -> dict:
    """One scheme (a baseline or PAM at one alpha) over the seeds it finished, its figures read
    off at ``delta``; seeds without a checkpoint above the floor are listed in ``below_floor``
    and left out of the means."""
    done = [s for s in seeds if s in per_seed]
    out: dict = {"seeds": done, "complete": len(done) == len(seeds),
                 "per_seed": {str(s): {k: per_seed[s][k] for k in KEEP if k in per_seed[s]} for s in done}}
    at = {s: rep.record_at(per_seed[s], delta, list(original)) for s in done}
    below = [s for s in done if at[s] is None]
    if below:
        out["below_floor"] = below
    recs = [at[s] for s in done if at[s] is not None]
    if not recs:
        return {**out, "meets_floor": False}
    out.update(_summary(recs, "flops"))
    out.update(_summary(recs, "accuracy"))
    out["accuracy_min"] = {t: min(r["accuracy"][t] for r in recs) for t in recs[0]["accuracy"]}
    floor = _floor(recs, original, delta)
    published = all("curve" in per_seed[s] for s in done)
    meets = not below if published else floor["meets_floor"]
    out.update(floor, meets_floor=meets and out["complete"])
    return out


def point(alpha: float, label: str, pam: Mapping[int, Mapping], b1: Mapping[int, Mapping],
          b2: Mapping[int, Mapping], seeds: Sequence[int], original: Mapping[str, float],
          delta: float) -> dict:
    """PAM at one alpha: :func:`scheme_summary` plus gains vs B1 and B2 paired by seed."""
    row = {"alpha": alpha, "label": label, **scheme_summary(pam, seeds, original, delta)}
    tasks = list(original)
    at = lambda rec: rep.record_at(rec, delta, tasks)  # noqa: E731
    paired = [g for g in (rep.gains({"B1": at(b1[s]), "B2": at(b2[s]), "PAM": at(pam[s])})
                          for s in row["seeds"] if s in b1 and s in b2) if g]
    row["gains"] = rep.summarise_gains(paired) if paired else {}
    return row


def frontier(points: Sequence[Mapping]) -> list[float]:
    """Alphas of the points on the FLOPs frontier among those meeting the floor (module doc)."""
    ok = [p for p in points if p.get("meets_floor")]

    def dominates(b: Mapping, a: Mapping) -> bool:
        fa, fb = a["flops"], b["flops"]
        return all(fb[k] <= fa[k] for k in fa) and any(fb[k] < fa[k] for k in fa)

    return [a["alpha"] for a in ok if not any(dominates(b, a) for b in ok if b is not a)]


def recommend(points: Sequence[Mapping], baselines: Mapping[str, Mapping],
              mix: Mapping[str, float]) -> dict:
    """{"alpha", "label", "expected_flops", "baselines": {B: expected FLOPs}, "gains": {"vs_B":
    gain}} of the recommended alpha under ``mix`` (module doc), or {"alpha": None, "reason"}.
    ConfigError (from expected_flops) if ``mix`` is not a distribution over the task subsets."""
    ok = [p for p in points if p.get("meets_floor")]
    if not ok:
        for p in points:
            if "flops" in p:
                expected_flops(p["flops"], mix)  # a bad mix is an error even without candidates
                break
        return {"alpha": None, "reason": "no alpha meets the accuracy floor in every seed", "mix": dict(mix)}
    costs = [(expected_flops(p["flops"], mix), p["alpha"], p) for p in ok]
    best_cost, _, best = min(costs, key=lambda c: (c[0], c[1]))
    base = {b: expected_flops(v["flops"], mix) for b, v in baselines.items() if "flops" in v}
    return {"alpha": best["alpha"], "label": best["label"], "expected_flops": best_cost, "mix": dict(mix),
            "baselines": base,
            "gains": {f"vs_{b}": (c / best_cost if best_cost > 0 else math.inf) for b, c in base.items()}}


def build(head: Mapping, alphas: Sequence[tuple[float, str]], records: Mapping[tuple, Mapping],
          seeds: Sequence[int], original_test: Mapping[str, float], delta: float,
          mix: Mapping[str, float], failed: Sequence[Mapping] = ()) -> dict:
    """sweep.json: ``head`` (preset, tasks, config, ...) + baselines, points, frontier,
    recommendation, failures. ``records``: {("B1"|"B2", seed, None) or ("PAM", seed, alpha):
    stage record}; ``alphas``: (alpha, label) pairs."""
    by = {name: {s: r for (n, s, _), r in records.items() if n == name} for name in ("B1", "B2")}
    baselines = {name: scheme_summary(by[name], seeds, original_test, delta) for name in ("B1", "B2")}
    points = [point(a, label, {s: r for (n, s, x), r in records.items() if n == "PAM" and x == a},
                    by["B1"], by["B2"], seeds, original_test, delta) for a, label in alphas]
    done = all(p["complete"] for p in points) and all(b["complete"] for b in baselines.values())
    return {"format": FORMAT, **head, "seeds": list(seeds), "alphas": [a for a, _ in alphas],
            "reference_accuracy": dict(original_test), "delta": delta,
            "floor": {t: a - delta for t, a in original_test.items()},
            "baselines": baselines, "points": points, "frontier": frontier(points),
            "recommended": recommend(points, baselines, mix), "failed": list(failed), "complete": done}


def markdown(sweep: Mapping) -> str:
    """sweep.md: one row per baseline and alpha, then the frontier and the recommendation."""
    tasks, subsets = sweep["tasks"], list(sweep["recommended"]["mix"])
    head = ["scheme", "alpha"] + [f"FLOPs {s} (M)" for s in subsets] + [f"acc {t} (min)" for t in tasks] \
        + ["gain vs B1", "gain vs B2", "floor", "frontier"]
    cfg = sweep.get("config", {})
    budget = cfg.get("merged_budget", "per-network")
    lines = [f"Sweep of preset `{sweep['preset']}`, pruning `{sweep['prune']}` (rank `{cfg.get('rank')}`, "
             f"floor `{cfg.get('floor')}`, regrouping `{cfg.get('regroup')}`, "
             f"pace `{cfg.get('pace', 'flops')}`"
             + (f", merged budget `{budget}`" if budget != "per-network" else "")
             + (f", checkpoint grid step {cfg['grid_step']:g}" if cfg.get("grid_step") is not None else "")
             + "); "
             f"seeds {sweep['seeds']} "
             "(mean ± half-width of the 95 % CI: bootstrap from 5 seeds, t below); "
             f"torch threads {sweep.get('torch_threads')}.", ""]
    if sweep.get("quick"):
        lines += ["**Quick run** (tiny data, few steps): a smoke test, not a result.", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rec, front = sweep["recommended"].get("alpha"), set(sweep["frontier"])
    rows = [(n, "", b) for n, b in sweep["baselines"].items()] + [
        ("PAM", f"{p['alpha']:.4g}" + (" (recommended)" if p["alpha"] == rec else ""), p)
        for p in sweep["points"]]
    for name, alpha, r in rows:
        if "flops" not in r:
            lines.append(f"| {name} | {alpha} |" + " — |" * (len(head) - 2))
            continue
        flops = [_pm(r["flops"][s], r["flops_ci95"][s], 1e6) for s in subsets]
        accs = [f"{r['accuracy'][t]:.2f} ({r['accuracy_min'][t]:.2f})" for t in tasks]
        gains = [_gain(r.get("gains", {}).get(f"vs_{b}")) for b in ("B1", "B2")]
        marks = ["yes" if r["meets_floor"] else "no", "yes" if name == "PAM" and r["alpha"] in front else ""]
        lines.append("| " + " | ".join([name, alpha] + flops + accs + gains + marks) + " |")
    lines += ["", _recommendation_text(sweep["recommended"])]
    for f in sweep.get("failed", []):
        lines.append(f"- failed: {f['label']} ({f['message']}); log: {f['log']}")
    return "\n".join(lines) + "\n"


def _pm(mean: float, ci: Sequence[float], scale: float) -> str:
    half = (ci[1] - ci[0]) / 2 / scale
    return f"{mean / scale:.3f}" + (f" ± {half:.3f}" if half > 0 else "")


def _gain(g: Mapping | None) -> str:
    if not g:
        return "—"
    lo, hi = g["average_ci95"]
    return f"{g['average']:.3f} [{lo:.3f}, {hi:.3f}]" if g.get("n", 1) > 1 else f"{g['average']:.3f}"


def _recommendation_text(rec: Mapping) -> str:
    mix = ", ".join(f"{k}={v:.3g}" for k, v in rec["mix"].items())
    if rec.get("alpha") is None:
        return f"No recommendation for the mix {mix}: {rec['reason']}."
    gains = ", ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in rec["gains"].items())
    return (f"Recommended alpha for the mix {mix}: **{rec['alpha']:.4g}** bits, expected "
            f"{rec['expected_flops'] / 1e6:.3f} M FLOPs per request (gain {gains}).")


__all__ = ["FORMAT", "TIMING", "uniform_mix", "scheme_summary", "point", "frontier", "recommend", "build",
           "markdown"]
