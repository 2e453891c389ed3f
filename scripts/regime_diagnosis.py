"""Diagnosis of issue 24 on a study's cell: PAM's gains per seed, as recorded and without the
curves' untrained first point.

    python scripts/regime_diagnosis.py results/regime_map/mnist28-wide-overlap-0_taylor [--delta 0.5]

A schedule's curve starts with the network as given, before any training (prune/schedule.py).
For B1 that is the original network; for PAM it is the merged network straight after regrouping,
whose shared neurons lost their inputs from the other task's exclusive neurons (the connectivity
rule), so its accuracy is far below the originals' until the schedule's warm-up trains it. The
read-off fits a non-increasing curve (prune/curve.py): that low first point is pooled with the
trained points after it and can pull the whole fit under the floor, so a seed where PAM's trained
checkpoints pass the floor gets no read-off at all. This prints, per seed and scheme, the cost
read off as recorded and read off the curve without its first point (every scheme alike), and
PAM's gains under both; the widths of PAM's read-off; nothing is written.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pam_explorer.data import get_preset  # noqa: E402
from pam_explorer.runs import regime_map as rm  # noqa: E402
from pam_explorer.runs import report as rep  # noqa: E402
from pam_explorer.runs import stats  # noqa: E402


def without_start(record: dict) -> dict:
    """The record with every curve's first (untrained) point dropped."""
    curve = record.get("curve")
    if isinstance(curve, dict):
        return {**record, "curve": {t: c[1:] for t, c in curve.items()}}
    return {**record, "curve": curve[1:]} if isinstance(curve, list) else record


def _flops(fig: dict | None) -> str:
    if fig is None:
        return "none above the floor"
    return " / ".join(f"{v / 1e6:.3f}" for v in fig["flops"].values())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cell")
    p.add_argument("--delta", type=float, default=0.5)
    args = p.parse_args(argv)
    config, records = rm.cell_records(Path(args.cell))
    tasks = list(get_preset(config["preset"]).task_names)
    complete = {s: r for s, r in records.items() if set(r) >= {"B1", "B2", "PAM"}}
    summary: dict[str, dict[str, list[float]]] = {"recorded": {}, "without start": {}}
    for seed, recs in sorted(complete.items()):
        print(f"seed {seed} (MFLOPs {' / '.join(['A', 'B', 'A+B'])}):")
        for label, fix in (("recorded", lambda r: r), ("without start", without_start)):
            at = {n: rep.record_at(fix(r), args.delta, tasks) for n, r in recs.items()}
            print(f"  {label:>13}: " + "; ".join(f"{n} {_flops(a)}" for n, a in at.items()))
            for vs, g in rep.gains(at).items():
                for kind in ("average", "peak"):
                    summary[label].setdefault(f"{vs} {kind}", []).append(g[kind])
                print(f"  {'':>13}  PAM {vs}: average {g['average']:.3f}, peak {g['peak']:.3f}")
        pam = rep.record_at(without_start(recs["PAM"]), args.delta, tasks)
        if pam is not None:
            print(f"  PAM read-off widths (without start): {pam['widths']}")
    for label, rows in summary.items():
        print(f"{label}: " + "; ".join(f"{k} {stats.mean(v):.3f} [{stats.ci(v)[0]:.3f}, "
                                       f"{stats.ci(v)[1]:.3f}] (n {len(v)})" for k, v in rows.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
