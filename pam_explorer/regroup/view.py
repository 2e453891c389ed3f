"""Everything the merge explorer shows at one regroup config, in one call (the page only draws).

:func:`alpha_view` gathers what a slider move changes: the groups of every layer, whether they
can be built as a network, the predicted FLOPs of PAM, B1 and B2 before pruning, each layer's
sharing ratio and their mean, which layers alpha lies beyond (their trajectories end below it:
a larger alpha changes nothing there) and the first layer where alpha cuts inside the
trajectory (the MI phase chart opens there). :func:`expected_costs` gives the expected FLOPs of
every scheme under a task-usage mix and PAM's gain against each baseline.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pam_explorer.core.config import RegroupConfig
from pam_explorer.cost.analytic import average_gain, expected_flops
from pam_explorer.regroup.algorithms import LayerGroups
from pam_explorer.regroup.explorer import Explorer


@dataclass(frozen=True)
class AlphaView:
    """The explorer at one config. ``sharing``: shared / kept neurons per layer (the paper's
    sharing ratio); ``beyond``: {layer: its largest score, bits} for the layers whose whole
    trajectory lies at or below their alpha; ``phase_layer``: the first layer where alpha cuts
    inside the trajectory (the first layer when it cuts in none)."""

    cfg: RegroupConfig
    groups: dict[str, LayerGroups]
    problem: str | None
    predicted_flops: dict[str, dict[str, int]]
    sharing: dict[str, float]
    mean_sharing: float
    beyond: dict[str, float]
    phase_layer: str


def alpha_view(exp: Explorer, cfg: RegroupConfig) -> AlphaView:
    """What the explorer page shows at ``cfg`` (groups are cut once and reused by every part)."""
    groups = exp.groups(cfg)
    sharing = {layer: g.sharing_ratio() for layer, g in groups.items()}
    tops = {layer: exp.max_mi(layer) for layer in exp.trajs.layers}
    beyond = {layer: top for layer, top in tops.items() if cfg.alpha_for(layer) >= top}
    layers = list(exp.trajs.layers)
    return AlphaView(cfg=cfg, groups=groups, problem=exp.check(cfg), predicted_flops=exp.predicted_flops(cfg),
                     sharing=sharing, mean_sharing=sum(sharing.values()) / len(sharing) if sharing else 0.0,
                     beyond=beyond, phase_layer=next((n for n in layers if n not in beyond), layers[0]))


def expected_costs(predicted: Mapping[str, Mapping[str, float]], probabilities: Mapping[str, float]) -> dict:
    """{"expected": {scheme: expected FLOPs}, "gains": {"vs_B1"|"vs_B2": E[baseline] / E[PAM]}}
    under a task-usage mix (ConfigError unless it is a distribution over the subsets). A gain is
    the average gain over the one "subset" the mix is, so it is checked like every other gain."""
    expected = {s: expected_flops(c, probabilities) for s, c in predicted.items()}
    gains = {f"vs_{b}": average_gain({"mix": expected[b]}, {"mix": expected["PAM"]})
             for b in ("B1", "B2") if b in expected and "PAM" in expected}
    return {"expected": expected, "gains": gains}


__all__ = ["AlphaView", "alpha_view", "expected_costs"]
