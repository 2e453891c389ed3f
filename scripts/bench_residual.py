"""Residual-net figures for BENCHMARKS.md: merged ResNet-18 invariants and FLOPs vs FlopCounterMode,
and a B1-vs-PAM smoke experiment with tiny ResNet-18s on digits-2task.

    python scripts/bench_residual.py invariants [--width 1.0] [--size 64]
    python scripts/bench_residual.py experiment --out runs/resnet-smoke [--width 0.125] [--epochs 4]

Prints one JSON object. Run from the repository root.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pam_explorer.core.config import TrainConfig  # noqa: E402
from pam_explorer.core.subsets import all_subsets, subset_key  # noqa: E402
from pam_explorer.cost.analytic import subset_costs  # noqa: E402
from pam_explorer.data import get_preset, load_preset_data, task_targets  # noqa: E402
from pam_explorer.merge.build import exclusive_grouping, merge_networks, shared_grouping  # noqa: E402
from pam_explorer.runs.experiment import ExperimentConfig, run_experiment  # noqa: E402
from pam_explorer.train.train import train_single_task  # noqa: E402
from pam_explorer.zoo import build_model  # noqa: E402
from tests.helpers import random_grouping, randomise_bn  # noqa: E402


def _flop_counter(net, tasks, size: int) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.randn(1, net.geometry.in_channels, size, size), tasks)
    return counter.get_total_flops()


def invariants(width: float, size: int) -> dict:
    """Max |merged - original| for shared/exclusive groupings, max |subset - full| for a random
    grouping, analytic FLOPs vs FlopCounterMode per subset, K = 2 and 3."""
    out = {}
    for k in (2, 3):
        tasks = "ABC"[:k]
        nets = [randomise_bn(build_model("resnet18", 5, 3, size, width=width), t).eval() for t in range(k)]
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            ref = {t: n(x) for t, n in zip(tasks, nets)}
            t0 = time.perf_counter()
            diff = {s: max(float((m(x)[t] - ref[t]).abs().max()) for t in tasks) for s, m in (
                ("shared", merge_networks(nets, tasks, shared_grouping(nets, tasks)).eval()),
                ("exclusive", merge_networks(nets, tasks, exclusive_grouping(nets, tasks)).eval()))}
            merge_s = (time.perf_counter() - t0) / 2
            mixed = merge_networks(nets, tasks, random_grouping(nets, tasks, 1)).eval()
            full = mixed(x)
            sub_diff = max(float((mixed(x, s)[t] - full[t]).abs().max())
                           for s in all_subsets(tasks) for t in s)
        costs = subset_costs(mixed)
        flops = {subset_key(s): {"analytic": costs[subset_key(s)]["flops"],
                                 "flop_counter": _flop_counter(mixed, s, size)} for s in all_subsets(tasks)}
        out[f"K={k}"] = {"max_abs_diff_vs_originals": diff, "max_abs_diff_subset_vs_full": sub_diff,
                         "flops_random_grouping": flops, "all_flops_equal": all(
                             v["analytic"] == v["flop_counter"] for v in flops.values()),
                         "merge_seconds": round(merge_s, 2)}
    return {"width": width, "size": size, **out}


def experiment(out: str, width: float, epochs: int) -> dict:
    """Train two tiny ResNet-18s (small stem) on digits-2task's quick data, then B1 vs PAM (taylor)."""
    cfg = ExperimentConfig(preset="digits-2task", prune="taylor", quick=True, schemes=("B1", "PAM"))
    preset = get_preset(cfg.preset)
    splits = load_preset_data(preset, cfg.data())
    nets, t0 = [], time.perf_counter()
    for task, labels in zip(preset.task_names, preset.task_labels):
        torch.manual_seed(0)
        net = build_model("resnet18", len(labels), 1, 32, width=width, small_input=True)
        pick = lambda s: (splits[s].images, task_targets(splits[s].labels, preset, task))  # noqa: E731
        train_single_task(net, pick("train"), pick("val"), TrainConfig(epochs=epochs, batch_size=64))
        nets.append(net.eval())
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = run_experiment(cfg, out, nets=nets)
    seconds = round(time.perf_counter() - t0, 1)
    return {"width": width, "train_seconds": round(train_s, 1), "experiment_seconds": seconds,
            "reference_accuracy": report["reference_accuracy"], "gains": report["gains"],
            **{s: {"flops": r["flops"], "accuracy": r["accuracy"]} for s, r in report["schemes"].items()}}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["invariants", "experiment"])
    p.add_argument("--width", type=float)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--out", default="runs/resnet-smoke")
    a = p.parse_args()
    result = invariants(a.width or 1.0, a.size) if a.what == "invariants" else experiment(
        a.out, a.width or 0.125, a.epochs)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
