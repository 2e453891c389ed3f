"""Diagnosis of issue 24: PAM's schedule ends at a tenth of ITS OWN starting FLOPs.

    python scripts/common_end.py --preset mnist28-wide-overlap-0 --seed 0 --rank flops-aware \
        --cell results/regime_map/mnist28-wide-overlap-0_taylor --out runs/common_end

The published schedule (prune/schedule.py) prunes every network from its start down to
``end_fraction`` (0.1) of its start, with a checkpoint every ``grid_step`` (0.05) of its start.
A PAM net merged from two networks starts with both networks' neurons (the merged layers are as
wide as both together), so its curve ends at several times the FLOPs where B1's curves end:
PAM can run out of schedule with accuracy to spare. This script reruns PAM for one seed with the
schedule's end and grid put in units of the LARGEST ORIGINAL network's FLOPs (the unit B1's and
B2's schedules already use, for networks of that size): end_fraction and grid_step are multiplied
by (largest single-network FLOPs / PAM's starting all-task FLOPs); budget (minibatches, events)
and everything else stay. It writes the PAM stage record to --out and prints PAM's gains against
the B1 and B2 records of the same seed in --cell (the study's cell folder), both as the study
recorded them and with this PAM. Nothing in the study folder is changed.

``--scale-budget`` also gives PAM as many removal events (of ``every`` minibatches each) as it
needs to remove FLOPs at B1's pace per event (events / scale): a larger training budget than the
other schemes, so a measurement of what the equal budget costs PAM, not a fair comparison.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pam_explorer.core.io import write_json_atomic  # noqa: E402
from pam_explorer.core.subsets import subset_key  # noqa: E402
from pam_explorer.cost.analytic import subset_costs  # noqa: E402
from pam_explorer.merge.build import from_single, merge_networks  # noqa: E402
from pam_explorer.regroup.explorer import Explorer  # noqa: E402
from pam_explorer.runs import report as rep  # noqa: E402
from pam_explorer.runs.experiment_config import ExperimentConfig  # noqa: E402
from pam_explorer.runs.schemes import run_pam  # noqa: E402
from pam_explorer.runs.stage_run import StageContext, read_record  # noqa: E402


def scale_of(cfg: ExperimentConfig, ctx: StageContext, seed: int) -> tuple[float, int, int]:
    """(largest single FLOPs / PAM's starting all-task FLOPs, the two FLOPs)."""
    single = max(subset_costs(from_single(n, t))[t]["flops"] for n, t in zip(ctx.nets, ctx.tasks))
    explorer = Explorer.open(cfg.preset, cfg.mi(seed), cfg.mi_data(), nets=ctx.nets)
    merged = merge_networks(ctx.nets, ctx.tasks, explorer.groups(cfg.regroup_config(ctx.layers)))
    start = subset_costs(merged)[subset_key(ctx.tasks)]["flops"]
    return single / start, single, start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rank", choices=["published", "flops-aware"], required=True)
    p.add_argument("--prune", default="taylor")
    p.add_argument("--device", default="cpu")
    p.add_argument("--cell", required=True, help="the study's cell folder with B1/B2 records of the seed")
    p.add_argument("--out", required=True)
    p.add_argument("--scale-budget", action="store_true", help="PAM gets events / scale removal events")
    args = p.parse_args(argv)
    cfg = ExperimentConfig(preset=args.preset, prune=args.prune, seeds=(args.seed,), rank=args.rank,
                           device=args.device)
    ctx = StageContext.load(cfg.preset, cfg.data(), arch=cfg.arch)
    scale, single, start = scale_of(cfg, ctx, args.seed)
    settings = cfg.scheme_settings(args.seed, ctx.reference(cfg.floor), ctx.layers)
    plan = settings.prune.plan
    plan = dataclasses.replace(plan, end_fraction=plan.end_fraction * scale, grid_step=plan.grid_step * scale)
    if args.scale_budget:
        plan = dataclasses.replace(plan, events=int(round(plan.events / scale)))
    settings = dataclasses.replace(settings, prune=dataclasses.replace(settings.prune, plan=plan))
    print(f"largest single net {single / 1e6:.3f} MFLOPs, PAM starts at {start / 1e6:.3f}: end_fraction "
          f"{plan.end_fraction:.4f}, grid_step {plan.grid_step:.4f} of PAM's start, {plan.events} events",
          file=sys.stderr)
    out = Path(args.out)
    (out / "stages").mkdir(parents=True, exist_ok=True)
    record, _ = run_pam(settings, ctx.nets, ctx.tasks, ctx.data, lambda m, w=None: print(m, file=sys.stderr),
                        out / "stages", f"_s{args.seed}")
    record["common_end"] = {"scale": scale, "single_flops": single, "pam_start_flops": start,
                            "plan": dataclasses.asdict(plan)}
    write_json_atomic(out / "stages" / f"PAM_s{args.seed}.json", record)
    cell = Path(args.cell) / "stages"
    base = {n: read_record(cell / f"{n}_s{args.seed}.json") for n in ("B1", "B2", "PAM")}
    tasks = list(ctx.tasks)
    rows = {}
    for label, pam in (("study (own-start end)", base["PAM"]), ("common end", record)):
        at = {n: rep.record_at(r, cfg.delta, tasks) for n, r in {**base, "PAM": pam}.items()}
        rows[label] = {"gains": rep.gains(at), "flops": {n: a["flops"] if a else None for n, a in at.items()}}
    write_json_atomic(out / "comparison.json", rows)
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
