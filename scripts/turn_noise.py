"""How far one pruning turn's finetuning moves validation accuracy when nothing is removed.

    python scripts/turn_noise.py MODEL.zip [MODEL.zip ...] --preset mnist-2task [--lrs 1e-3,1e-4]
        [--repeats 4] [--batches 40]

A pruning turn (prune.base) removes neurons, then trains ``finetune_batches`` minibatches with a
fresh Adam at ``PruneConfig.lr``, then accepts the removal only if every task's validation
accuracy stays above its floor. This script runs only the training part, from the same merged
net (an exported model, e.g. an experiment's ``stages/PAM_s0.zip``), ``--repeats`` times per lr
with different minibatch orders, and prints the validation accuracy of each task before and
after. When the spread this alone causes is as large as the margin above the floor, accept /
reject decisions are mostly made by the finetuning, not by the removal (docs/residual.md).
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pam_explorer.core.config import DataConfig  # noqa: E402
from pam_explorer.data import get_preset, load_preset_data  # noqa: E402
from pam_explorer.export import archive  # noqa: E402
from pam_explorer.prune import PruneConfig, TaskData  # noqa: E402
from pam_explorer.prune.base import BatchStream, train_batches  # noqa: E402
from pam_explorer.train.finetune import evaluate  # noqa: E402


def noise(path: str, data: TaskData, lrs: list[float], repeats: int, batches: int) -> dict:
    """{"start": {task: val %}, "<lr>": {"runs": [{task: %}], "mean_change": {task: points},
    "worst_change": {task: points}}} for the model at ``path``."""
    net0 = archive.load(path)
    start = evaluate(net0, *data.val)
    out: dict = {"model": path, "start": start}
    batch_size = PruneConfig().batch_size
    for lr in lrs:
        runs = []
        for r in range(repeats):
            net = copy.deepcopy(net0)
            stream = BatchStream(data.train[0].shape[0], batch_size, 100 + r)
            train_batches(net, data.train, batches, stream, lr)
            runs.append(evaluate(net, *data.val))
        out[f"{lr:g}"] = {"runs": runs,
                          "mean_change": {t: round(statistics.fmean(x[t] for x in runs) - start[t], 3)
                                          for t in start},
                          "worst_change": {t: round(min(x[t] for x in runs) - start[t], 3) for t in start}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="exported merged nets (.zip)")
    ap.add_argument("--preset", required=True)
    ap.add_argument("--lrs", default="1e-3,1e-4")
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--batches", type=int, default=PruneConfig().finetune_batches)
    args = ap.parse_args()
    preset = get_preset(args.preset)
    data = TaskData.from_splits(load_preset_data(preset, preset.data_config(DataConfig())), preset)
    lrs = [float(x) for x in args.lrs.split(",")]
    for path in args.models:
        print(json.dumps(noise(path, data, lrs, args.repeats, args.batches)), flush=True)


if __name__ == "__main__":
    main()
