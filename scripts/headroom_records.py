"""B1's curves of the committed LeNet-5 presets outside the regime map, committed under
``results/headroom/<preset>/`` so that the explorer shows every committed preset's measured
headroom on a fresh clone (pam_explorer.runs.headroom.measured_headroom reads the results root).

    OMP_NUM_THREADS=1 python scripts/headroom_records.py                       # the presets below, seeds 0-2
    OMP_NUM_THREADS=1 python scripts/headroom_records.py --presets mnist-2task --seeds 0

Each preset is one experiment of scheme B1 alone under the defaults (P2, published schedule,
flops-aware rank, geometric pace, delta 0.5): the same stage as an experiment's B1, with the same
key, so a run folder resumes from these records. Only the JSON records and reports are committed
(.gitignore leaves out the checkpoint state and model.zip). Prints B1's compression per task.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pam_explorer.runs.experiment import ExperimentConfig, run_experiment  # noqa: E402
from pam_explorer.runs.headroom import measured_headroom  # noqa: E402

PRESETS = ("digits-2task", "digits-5task", "digits-inclusion", "digits-related-0", "digits-related-1",
           "digits-related-2", "digits-related-3", "mnist-2task")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="*", default=list(PRESETS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "results" / "headroom")
    args = ap.parse_args(argv)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    for preset in args.presets:
        folder = args.out / preset
        run_experiment(ExperimentConfig(preset=preset, schemes=("B1",), seeds=seeds), folder,
                       workers=args.workers, threads=1)
        found = measured_headroom(preset, roots=[args.out])
        print(json.dumps({"preset": preset, "records": found and found["records"],
                          "compression": found and found["compression"], "min": found and found["min"]}),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
