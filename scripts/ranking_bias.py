"""Does the pruning ranking remove exclusive neurons first? (issue 12; docs/estimator.md section 5)

    python scripts/ranking_bias.py --alpha 0.05 [--samples 256] [--epochs 3]

Merges the committed digits-2task networks at alpha (default estimator), finetunes them jointly,
and prints, for task A's first pruning step under every score scope x Taylor mode x rank, how
early exclusive neurons come in the ranking (live neurons only).
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pam_explorer.core.config import DataConfig, FinetuneConfig, MIConfig, RegroupConfig  # noqa: E402
from pam_explorer.data import load_preset_data  # noqa: E402
from pam_explorer.merge.build import merge_networks  # noqa: E402
from pam_explorer.prune import PruneConfig, TaskData, get_pruner  # noqa: E402
from pam_explorer.prune.base import BatchStream, rank_neurons  # noqa: E402
from pam_explorer.regroup.explorer import Explorer  # noqa: E402
from pam_explorer.train.finetune import finetune  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--samples", type=int, default=MIConfig().n_samples)
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    ex = Explorer.open("digits-2task", MIConfig(n_samples=args.samples))
    net = merge_networks(ex.nets, ex.tasks, ex.groups(RegroupConfig(alpha=args.alpha)))
    data = TaskData.from_splits(load_preset_data(ex.preset, DataConfig()), ex.preset)
    finetune(net, data.train, data.val, FinetuneConfig(epochs=args.epochs, device="cpu"))
    print("widths", net.group_widths())
    print("scope | taylor | rank | exclusive share | among first 20 % | mean rank pct exclusive / shared")
    for scope, mode in itertools.product(("sharing", "task"), ("batch", "sample")):
        cfg = PruneConfig(score_scope=scope, taylor_mode=mode, device="cpu")
        scores = get_pruner("taylor").importance(net, "A", data, cfg, BatchStream(len(data.train[0]), 128, 0))
        for rank, weight in (("published", 0.0), ("flops-aware", 1.0)):
            live = [r for r in rank_neurons(net, "A", scores, weight) if r[0] > 0]
            pct = {"A": [], "A+B": []}
            for i, (_, _layer, key, _pos) in enumerate(live):
                pct[key].append(i / max(1, len(live) - 1))
            first = live[:max(1, len(live) // 5)]
            mean = {k: sum(v) / max(1, len(v)) for k, v in pct.items()}
            print(f"{scope} | {mode} | {rank} | {len(pct['A']) / len(live):.2f} | "
                  f"{sum(r[2] == 'A' for r in first) / len(first):.2f} | {mean['A']:.2f} / {mean['A+B']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
