"""Which neurons a pruning schedule masks at a removal event (P2 and P1).

P2 (Molchanov et al. 2019, as their code and the PAM authors' run it): every ``every``
minibatches, task t's turn (A -> B -> ... for a merged net) masks neurons of t's subgraph in
ascending order of the importance running average (a shared neuron's importance is the sum over
the tasks sharing it), one global ranking over the layers, unnormalised. Dead neurons go first:
those whose gate gradient was exactly zero on every minibatch of the window, which a neuron has
exactly when its output was zero on every sample and position or nothing live reads it (zero
outgoing weights, or only masked readers); removing them changes no output. The event masks
until the all-task FLOPs reach the event's target, so every scheme follows the same FLOPs
trajectory in the same number of minibatches. ``flops_weight`` > 0 divides the importance by
(FLOPs saved)^w, the "flops-aware" rank.

P1 (VIBNet): every event masks the neurons whose gates have log alpha = log(sigma^2 / mu^2) >= 0
(all gated module layers of a coupled neuron layer agree), largest first; the rising KL factor
sets how many are eligible. With a FLOPs target (``vib_pace="flops"``) the event stops there, so
the curve gets its grid points; without one (``"threshold"``, VIBNet's literal rule) it masks all.

No neuron is masked whose removal would leave a task or a group without a path to the input.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from pam_explorer.core.subsets import subset_key
from pam_explorer.cost.analytic import costs_from_widths
from pam_explorer.merge.merged_net import MergedNet
from pam_explorer.prune.base import removal_savings
from pam_explorer.prune.masks import GroupId, NeuronMasks
from pam_explorer.prune.vib_gates import VIBGates, log_alpha

Candidate = tuple[bool, float, int, str, str, int]  # (live, value, -saving, layer, key, position)


def all_task_flops(net: MergedNet, widths: Mapping[str, Mapping[str, int]]) -> int:
    """FLOPs at batch 1 of running every task of ``net`` at ``widths``."""
    return costs_from_widths(net.geometry, widths)[subset_key(net.tasks)]["flops"]


def _candidates(net: MergedNet, masks: NeuronMasks, task: str, score: Mapping[GroupId, torch.Tensor],
                dead: Mapping[GroupId, torch.Tensor], flops_weight: float) -> list[Candidate]:
    """Live neurons of ``task``'s subgraph, dead ones first, then by importance / saving^w
    ascending; ties go to the larger saving (dead neurons all tie at zero)."""
    widths = masks.widths(net)
    groups = [g for g in masks.keep if task in g[1].split("+") and widths[g[0]][g[1]] > 0]
    savings = removal_savings(net, groups, widths)
    out: list[Candidate] = []
    for g in groups:
        div = float(max(savings[g], 1)) ** flops_weight
        values, is_dead = score[g].tolist(), dead[g].tolist()
        for pos in masks.live(g):
            out.append((not is_dead[pos], values[pos] / div, -savings[g], g[0], g[1], pos))
    return sorted(out)


def live_neurons(widths: Mapping[str, Mapping[str, int]]) -> int:
    return sum(n for ws in widths.values() for n in ws.values())


def taylor_event(net: MergedNet, masks: NeuronMasks, task: str, score: Mapping[GroupId, torch.Tensor],
                 dead: Mapping[GroupId, torch.Tensor], target: float, flops_weight: float,
                 pace: str = "flops") -> int:
    """Mask every dead neuron of ``task``'s subgraph, then the least important live ones until
    the all-task FLOPs (``pace="flops"``) or the number of live neurons (``"neurons"``) is <=
    ``target``; returns how many were masked."""
    widths = masks.widths(net)

    def measure() -> float:
        return all_task_flops(net, widths) if pace == "flops" else live_neurons(widths)
    current = measure()
    removed = 0
    for live, _, _, layer, key, pos in _candidates(net, masks, task, score, dead, flops_weight):
        if live and current <= target:
            break
        if not masks.removable(net, widths, (layer, key)):
            continue
        masks.mask((layer, key), [pos])
        widths[layer][key] -= 1
        current = measure()
        removed += 1
    return removed


def vib_event(net: MergedNet, masks: NeuronMasks, gates: VIBGates, target: float | None = None) -> int:
    """Mask the live neurons every gate of which has log alpha >= 0 (largest first), stopping
    once the all-task FLOPs are <= ``target`` (None: no stop); returns how many were masked."""
    per_group: dict[GroupId, torch.Tensor] = {}
    for position in gates.positions:
        la = log_alpha(*gates.params(position)).detach()
        owner = (gates.owner[position], position[1])
        per_group[owner] = torch.minimum(per_group[owner], la) if owner in per_group else la
    order = sorted(((-float(v), g, pos) for g, la in per_group.items() if g in masks.keep
                    for pos, v in enumerate(la.tolist()) if v >= 0 and bool(masks.keep[g][pos])))
    widths = masks.widths(net)
    removed = 0
    for _, (layer, key), pos in order:
        if target is not None and all_task_flops(net, widths) <= target:
            break
        if masks.removable(net, widths, (layer, key)):
            masks.mask((layer, key), [pos])
            widths[layer][key] -= 1
            removed += 1
    return removed


__all__ = ["all_task_flops", "live_neurons", "taylor_event", "vib_event"]
