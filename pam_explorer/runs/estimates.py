"""Time estimates printed before long work (train, merge, experiment, sweep), from the networks'
FLOPs and the number of pictures (:mod:`pam_explorer.cost.estimate` holds the rule).

The published schedule has a fixed budget per pruned network: its training minibatches, then a
finetune of the checkpoints on the FLOPs grid that it reaches before its stop rule (geometric
grid: ``GEOMETRIC_CHECKPOINT_WORK`` unpruned-size finetunes; linear: ``REACHED`` of the grid at
the curve's ``CURVE_MEAN`` of the unpruned FLOPs on average; both measured). B2's
zipped net is counted as the widest task network, PAM's merged one as all of them. The
floor-greedy loop stops at the accuracy floor, so its length is not known in advance: it is
estimated with ``TURNS`` pruning turns per scheme (fewer under ``--max-steps``) at ``SHRINK``
times the unpruned FLOPs, which matched the measured digits-2task stages within about 2x
(BENCHMARKS.md "Time estimates"). The figures are for this machine's CPU, one stage at a time;
a busy machine is slower.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
from torch import nn

from pam_explorer.core.config import DataConfig
from pam_explorer.cost.estimate import Work, duration_text, forward_flops, seconds
from pam_explorer.data.catalogue import Preset
from pam_explorer.data.project import ProjectPreset

TURNS = 20  # floor-greedy: pruning turns assumed per scheme
SHRINK = 0.7  # floor-greedy: mean FLOPs while pruning, relative to the unpruned networks
CURVE_MEAN = 0.55  # published: mean FLOPs of a curve's checkpoints, relative to the start
# published: share of the grid's checkpoints a network reaches before the stop rule (2 checkpoints
# 3 points under its reference); digits-2task P2, 5 seeds: 11.5 of 22 per pruned network
# (B1 10.7, B2 8.6, PAM 16.0; BENCHMARKS.md "Issue 23")
REACHED = 0.55
# published, geometric grid: the sum of the reached checkpoints' FLOPs fractions per curve (the
# checkpoint finetunes' work in units of the unpruned net). Stable where the count is not: narrow
# nets stop after 5-10 checkpoints near the start, wide ones after 14-22 far down, and a geometric
# series puts the work in the first few. Measured 2.1-5.0, mean 4.2, over B1/B2/PAM x digits-2task
# P2 and P1, mnist28-overlap-0 and mnist28-wide-overlap-0 P2 and P1 at the 15 % step; at 7.5 %
# (digits P2) 1.3-1.6x that, so it grows as the square root of the grid's density (BENCHMARKS
# "Time estimates under the geometric default"); the linear grid keeps REACHED x CURVE_MEAN
GEOMETRIC_CHECKPOINT_WORK = 4.2
GEOMETRIC_STEP = 0.15  # the step GEOMETRIC_CHECKPOINT_WORK was measured at


def net_flops(preset: Preset, nets: Sequence[nn.Module]) -> list[int]:
    """Forward FLOPs per picture of each network at the preset's picture size."""
    return [forward_flops(n, preset.in_channels, preset.image_size) for n in nets]


def split_sizes(preset: Preset, data: DataConfig) -> dict[str, int]:
    """Pictures per split that ``data`` gives (a project: its own counts, capped by ``data``)."""
    caps = {"train": data.n_train, "val": data.n_val, "test": data.n_test}
    if isinstance(preset, ProjectPreset):
        return {s: min(caps[s], n) for s, n in preset.split_sizes().items()}
    return caps


def train_seconds(flops: Sequence[int], epochs: int, sizes: dict[str, int], threads: int) -> float:
    return seconds([Work(f, epochs * sizes["train"], epochs * sizes["val"] + sizes["test"]) for f in flops],
                   threads)


def experiment_seconds(cfg, flops: Sequence[int], sizes: dict[str, int], threads: int,
                       pam_points: int = 1, baselines: bool = True) -> float:
    """An experiment of ``cfg`` (an ExperimentConfig); ``pam_points`` PAM stages per seed (a sweep's
    alphas) and B1/B2 when ``baselines``."""
    prune = cfg.prune_config(0, None)
    total = float(sum(flops))
    if prune.schedule == "published" and cfg.prune != "adapmtl":
        merged = _merged_prune(cfg, prune, len(flops))
        per_scheme = {"B1": [w for f in flops for w in _schedule(f, prune, sizes)],
                      "B2": _schedule(max(flops), merged, sizes), "PAM": _schedule(total, merged, sizes)}
        schemes = [s for s in cfg.schemes if baselines or s == "PAM"]
        works = [w for s in schemes for w in per_scheme[s] * (pam_points if s == "PAM" else 1)]
        return seconds(works, threads) * len(cfg.seeds)
    turns = min(prune.max_steps, TURNS)
    per_turn = (prune.finetune_batches + prune.score_batches) * prune.batch_size
    pruning = Work(total * SHRINK, turns * per_turn + prune.final_finetune_epochs * sizes["train"],
                   turns * sizes["val"] + sizes["test"])
    joint = Work(total, cfg.finetune(0).epochs * sizes["train"], cfg.finetune(0).epochs * sizes["val"])
    per_scheme = {"B1": [pruning], "B2": [pruning, joint], "PAM": [pruning, joint]}
    schemes = [s for s in cfg.schemes if baselines or s == "PAM"]
    works = [w for s in schemes for w in per_scheme[s] * (pam_points if s == "PAM" else 1)]
    return seconds(works, threads) * len(cfg.seeds)


def _merged_prune(cfg, prune, n_networks: int):
    """The PruneConfig a merged net trains under (``cfg.merged_budget``, runs/schemes.merged_settings)."""
    if getattr(cfg, "merged_budget", "per-network") == "per-network":
        return prune
    return dataclasses.replace(prune, plan=prune.plan.trained_longer(n_networks))


def checkpoints(prune) -> int:
    """Checkpoints of a published schedule that runs to its end (fewer when it stops early)."""
    plan = prune.plan
    if plan.grid == "geometric":
        return round(math.log(plan.end_fraction) / math.log(1 - plan.grid_step)) + 2
    return round((1 - plan.end_fraction) / plan.grid_step) + 2


def _schedule(flops: float, prune, sizes: dict[str, int]) -> list[Work]:
    """One network pruned by the published schedule: its training minibatches at full size, then
    the finetune and evaluation of every checkpoint at the curve's mean size."""
    plan = prune.plan
    n, mean = (GEOMETRIC_CHECKPOINT_WORK * math.sqrt(GEOMETRIC_STEP / plan.grid_step), 1.0) \
        if plan.grid == "geometric" else (checkpoints(prune) * REACHED, CURVE_MEAN)
    return [Work(flops, plan.total_batches * prune.batch_size, 0),
            Work(flops * mean, n * plan.checkpoint_epochs * sizes["train"],
                 n * (sizes["val"] + sizes["test"]))]


def budget_text(cfg) -> str:
    """What an experiment's estimate assumes, in words."""
    prune = cfg.prune_config(0, None)
    if prune.schedule == "published" and cfg.prune != "adapmtl":
        merged = " (a merged net: times the number of networks)" \
            if getattr(cfg, "merged_budget", "per-network") == "total" else ""
        return (f"published schedule: {prune.plan.total_batches} training minibatches per pruned "
                f"network{merged}, up to {checkpoints(prune)} checkpoints finetuned "
                f"{prune.plan.checkpoint_epochs} epoch(s) each")
    return (f"{cfg.finetune(0).epochs} joint finetuning epochs, about {min(prune.max_steps, TURNS)} pruning "
            "turns per scheme")


def pool_seconds(stage_seconds: Sequence[float], workers: int) -> float:
    """Wall seconds of independent stages run by ``workers`` workers, each stage (longest first)
    going to the least loaded worker: at least the longest stage and the total / workers."""
    loads = [0.0] * max(1, workers)
    for secs in sorted(stage_seconds, reverse=True):
        loads[loads.index(min(loads))] += secs
    return max(loads)


def experiment_stage_seconds(cfg, flops: Sequence[int], sizes: dict[str, int], threads: int,
                             skip: Sequence[tuple[str, int]] = ()) -> list[float]:
    """Seconds of each stage (scheme x seed) of ``cfg`` still to run: those not in ``skip``
    ((scheme, seed) pairs already recorded)."""
    per_scheme = {s: experiment_seconds(dataclasses.replace(cfg, schemes=(s,), seeds=cfg.seeds[:1]),
                                        flops, sizes, threads) for s in cfg.schemes}
    done = set(skip)
    return [per_scheme[s] for seed in cfg.seeds for s in cfg.schemes if (s, seed) not in done]


def estimate_line(secs: float, flops: Sequence[int], sizes: dict[str, int], what: str,
                  threads: str | None = None) -> str:
    """One line for stderr: the estimate and what it rests on (``threads``: how the work runs, in
    words; default this process's torch threads)."""
    threads = threads or f"{torch.get_num_threads()} thread(s)"
    mflops = ", ".join(f"{f / 1e6:.3g}" for f in flops)
    return (f"estimate: {duration_text(secs)} on this machine's CPU ({threads}; a busy machine is "
            f"slower, a GPU faster): {len(flops)} networks of {mflops} MFLOPs per picture, "
            f"{sizes['train']:,} training pictures, {what}")


__all__ = ["net_flops", "split_sizes", "train_seconds", "experiment_seconds", "estimate_line", "budget_text",
           "checkpoints", "pool_seconds", "experiment_stage_seconds", "TURNS"]
