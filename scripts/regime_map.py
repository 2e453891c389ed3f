"""The regime map study (issue 24): PAM vs B1 and B2 over headroom x relatedness.

    python scripts/regime_map.py --workers 2                                  # run / resume every cell
    python scripts/regime_map.py --cells 'mnist28-wide-overlap-0_*' --budget-hours 4
    python scripts/regime_map.py --dry-run                                    # cells, stages left, CPU hours
    python scripts/regime_map.py --map-only                                   # map.json/md from the records
    python scripts/regime_map.py --executor slurm --slurm-partition cpu --time-min 120   # on a cluster

Cells are experiment folders under --out (default results/regime_map, committed: JSON stage
records only), run through one pool of --workers processes (--threads torch threads each; on
Slurm, submitit jobs). A rerun resumes: finished stages are never recomputed. See
docs/regime_map.md for the design and BENCHMARKS.md for the figures.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pam_explorer.core.errors import PamError  # noqa: E402
from pam_explorer.core.io import dumps_strict  # noqa: E402
from pam_explorer.core.paths import results_root  # noqa: E402
from pam_explorer.runs import regime_map as rm  # noqa: E402
from pam_explorer.runs import slurm  # noqa: E402
from pam_explorer.runs import study as st  # noqa: E402


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(results_root() / "regime_map"),
                   help="the study folder (default results/regime_map: committed)")
    p.add_argument("--cells", action="append", default=[], metavar="PATTERN",
                   help="only cells whose folder (<preset>_<method>) matches this shell pattern; repeatable")
    p.add_argument("--rank", choices=["published", "flops-aware"], default="flops-aware",
                   help="the neuron ranking of every scheme in every cell (recorded in each cell's config; "
                        "default flops-aware, the experiment's)")
    p.add_argument("--delta", type=float, default=0.5)
    p.add_argument("--pace", choices=["flops", "geometric", "neurons"], default=None,
                   help="the published schedule's FLOPs pace in every cell (default: the experiment's)")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda[:i] (part of every stage's key)")
    p.add_argument("--executor", choices=["local", "submitit-local", "slurm"], default="local")
    p.add_argument("--workers", type=int, default=2, help="stages at once (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per stage (default 1)")
    p.add_argument("--budget-hours", type=float, default=None, help="start no stage after this many hours")
    p.add_argument("--slurm-partition", default=None)
    p.add_argument("--time-min", type=int, default=120, help="Slurm: wall-clock limit per stage, minutes")
    p.add_argument("--mem-gb", type=float, default=8.0)
    p.add_argument("--dry-run", action="store_true", help="print the cells and the stages left; run nothing")
    p.add_argument("--map-only", action="store_true",
                   help="rewrite map.json/map.md from the records; run nothing")
    p.add_argument("--json", action="store_true", help="print map.json (or the dry run) as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        pace = {"pace": args.pace} if args.pace else {}
        cfg = st.StudyConfig(rank=args.rank, delta=args.delta, device=args.device, **pace).select(args.cells)
        opts = st.StudyOptions(executor=args.executor, workers=args.workers, threads=args.threads,
                               budget_hours=args.budget_hours,
                               resources=slurm.Resources(partition=args.slurm_partition,
                                                         cpus_per_job=args.threads, mem_gb=args.mem_gb,
                                                         time_min=args.time_min))
        if args.dry_run:
            out = st.dry_run(cfg, args.out)
        elif args.map_only:
            out = st.write_map(cfg, args.out)
        else:
            out = st.run_study(cfg, args.out, opts)
    except PamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(dumps_strict(out) if args.json or args.dry_run else rm.markdown(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
