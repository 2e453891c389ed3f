"""The explorer's headroom figure against B1's measured compression (issue 24's target: within
15 % on every committed LeNet-5 preset that has B1 records).

    python scripts/headroom_check.py                                   # every committed LeNet-5 preset
    python scripts/headroom_check.py --presets mnist28-overlap-0 --seed 0

For each preset: the measured figure (B1's compression read off the committed study records and
run folders, :func:`pam_explorer.runs.headroom.measured_headroom`, what the explorer shows when
records exist) and the quick estimate the explorer offers when none exist
(:func:`estimate_headroom`: a short P2 schedule on a subsample), with the estimate's error
relative to the measured figure and its cost. Nothing is written.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pam_explorer.core.paths import assets_root  # noqa: E402
from pam_explorer.data import get_preset  # noqa: E402
from pam_explorer.runs import headroom as hr  # noqa: E402
from pam_explorer.zoo.pretrained import load_pretrained  # noqa: E402

# every committed LeNet-5 preset (networks at the top of assets/<preset>/)
PRESETS = tuple(sorted({p.parent.name for p in assets_root().glob("*/*.safetensors")}))


def check(preset: str, seed: int, delta: float) -> dict:
    tasks = tuple(get_preset(preset).task_names)
    nets = load_pretrained(preset, tasks)
    measured = hr.measured_headroom(preset, "lenet5", delta, nets)
    est = hr.estimate_headroom(preset, nets, delta, seed=seed)
    row = {"preset": preset, "estimate": est["compression"], "estimate_seconds": est["seconds"],
           "measured": measured["compression"] if measured else None,
           "records": measured["records"] if measured else 0}
    if measured:
        row["error"] = {t: est["compression"][t] / measured["compression"][t] - 1 for t in tasks}
        row["within_15pct"] = all(abs(e) <= 0.15 for e in row["error"].values())
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="*", default=list(PRESETS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--delta", type=float, default=0.5)
    args = ap.parse_args(argv)
    for preset in args.presets:
        print(json.dumps(check(preset, args.seed, args.delta)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
