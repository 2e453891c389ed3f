"""Task relatedness and inclusion (PAM Fig. 7) on the digits presets: how many neurons PAM's
regrouping shares, per layer, as the tasks' label MI grows, and how an included task's exclusive
sets compare with the including task's (issue 12, target 4; docs/estimator.md section 7).

    python scripts/relatedness_study.py                      # default MI profile, default alpha
    python scripts/relatedness_study.py --alphas 0.02,0.05,0.1 --json

Needs the presets' trained networks (``python -m pam_explorer train --preset P``); only the
regrouping runs (no finetuning or pruning), from the cached MI trajectories when present.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pam_explorer.core.config import MIConfig, RegroupConfig  # noqa: E402
from pam_explorer.data.presets import get_preset  # noqa: E402
from pam_explorer.regroup.explorer import Explorer  # noqa: E402

RELATED = ["digits-related-0", "digits-related-1", "digits-related-2", "digits-related-3", "digits-2task"]
INCLUSION = ["digits-inclusion"]


def study(preset: str, alphas: list[float]) -> dict:
    """{"relatedness_bits", "alphas": {alpha: {layer: {"A", "B", "A+B"}}}, "totals": ...}."""
    explorer = Explorer.open(preset, MIConfig())
    out = {"preset": preset, "relatedness_bits": explorer.relatedness_bits, "alphas": {}}
    for alpha in alphas:
        report = explorer.regroup_report(RegroupConfig(alpha=alpha))
        layers = {row["name"]: row["groups"] for row in report["layers"]}
        width = sum(sum(g.values()) for g in layers.values())
        out["alphas"][str(alpha)] = {
            "layers": layers,
            "shared_fraction": sum(g.get("A+B", 0) for g in layers.values()) / width,
            "exclusive": {t: sum(g.get(t, 0) for g in layers.values()) for t in ("A", "B")}}
    return out


def _table(rows: list[dict], alphas: list[float]) -> str:
    head = "| preset | I(Y^A;Y^B) bits | " + " | ".join(
        f"alpha {a:g}: shared / excl. A / excl. B" for a in alphas) + " |"
    lines = [head, "|---|---|" + "---|" * len(alphas)]
    for r in rows:
        cells = [f"{100 * r['alphas'][str(a)]['shared_fraction']:.0f} % / "
                 f"{r['alphas'][str(a)]['exclusive']['A']} / {r['alphas'][str(a)]['exclusive']['B']}"
                 for a in alphas]
        lines.append(f"| {r['preset']} | {r['relatedness_bits']:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--alphas", default=None, help="comma-separated (default: the preset default)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    alphas = [float(a) for a in args.alphas.split(",")] if args.alphas else \
        [get_preset("digits-2task").default_alpha]
    rows = [study(name, alphas) for name in RELATED + INCLUSION]
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(_table(rows, alphas))
        for r in rows:  # per layer, at the first alpha
            print(r["preset"], r["alphas"][str(alphas[0])]["layers"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
