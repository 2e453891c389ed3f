"""One committed single-task network pruned alone (B1) by the published schedule: its curve and
read-offs, as the experiment computes them (the experiment's data sizes, prune settings and seed).

    python scripts/b1_curve.py --preset mnist-2task --task A --rank flops-aware --seed 0
    python scripts/b1_curve.py --preset digits-2task --task B --prune vib --json out.json

Prints one line per checkpoint (FLOPs fraction, validation accuracy with its standard error, test
accuracy, widths) and the compression read off at 0.25, 0.5, 1 and 2 points (start FLOPs / FLOPs
at the read-off). BENCHMARKS.md ("Issue 23") uses it for the engine-strength figures.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pam_explorer.data import get_preset, load_preset_data  # noqa: E402
from pam_explorer.merge.build import from_single  # noqa: E402
from pam_explorer.prune import TaskData  # noqa: E402
from pam_explorer.prune.config import VIB_PACES, ScheduleConfig  # noqa: E402
from pam_explorer.prune.schedule import run_schedule  # noqa: E402
from pam_explorer.runs.experiment_config import ExperimentConfig  # noqa: E402
from pam_explorer.zoo.pretrained import load_pretrained  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="digits-2task")
    ap.add_argument("--task", default=None, help="task name (default: the first)")
    ap.add_argument("--arch", default="lenet5")
    ap.add_argument("--prune", choices=["taylor", "vib"], default="taylor")
    ap.add_argument("--rank", choices=["published", "flops-aware"], default="flops-aware")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--vib-pace", choices=VIB_PACES, default=ScheduleConfig().vib_pace,
                    help="P1: events stop at the FLOPs trajectory, or mask every gate past the threshold")
    ap.add_argument("--json", default=None, help="also write the curve and read-offs here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = ExperimentConfig(preset=args.preset, prune=args.prune, rank=args.rank, seeds=(args.seed,),
                           arch=args.arch)
    preset = get_preset(args.preset)
    task = args.task or preset.task_names[0]
    i = preset.task_names.index(task)
    data = TaskData.from_splits(load_preset_data(preset, cfg.data()), preset)
    sub = TaskData(*((s[0], {task: s[1][task]}) for s in (data.train, data.val, data.test)))
    net = from_single(load_pretrained(args.preset, preset.task_names, args.arch)[i], task)
    t0 = time.perf_counter()
    prune = cfg.prune_config(args.seed, None)
    prune = dataclasses.replace(prune, plan=dataclasses.replace(prune.plan, vib_pace=args.vib_pace))
    res = run_schedule(args.prune, net, sub, prune)
    curve, picks = res.extra["curve"], res.extra["readoffs"]
    start = curve[0]["flops"][task]
    for p in curve:
        print(f"{p['index']:3d} step {p['step']:4d}  FLOPs {p['fraction']:.3f}  "
              f"val {p['val_accuracy'][task]:.2f} ± {p['val_se'][task]:.2f}  "
              f"test {p['test_accuracy'][task]:.2f}  widths {[w[task] for w in p['widths'].values()]}")
    out = {"preset": args.preset, "task": task, "prune": args.prune, "rank": args.rank, "seed": args.seed,
           "threads": args.threads, "seconds": round(time.perf_counter() - t0, 1),
           "reference_val_accuracy": res.reference_accuracy[task], "stopped": res.extra["stopped"],
           "compression": {d: (start / curve[j]["flops"][task] if j is not None else None)
                           for d, j in picks.items()},
           "readoffs": picks, "curve": curve}
    print(f"{args.preset} {task} {args.prune} rank {args.rank} seed {args.seed}: compression at the "
          + ", ".join(f"{d} pt {c:.2f}x" if c else f"{d} pt none" for d, c in out["compression"].items())
          + f" ({out['seconds']} s, {args.threads} thread(s))")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
