"""Cost model: FLOPs and parameters of every task subset, computed analytically; gains.

The analytic model needs no built network, only a *skeleton*: the
:class:`~pam_explorer.core.geometry.NetGeometry` plus the group widths ``{layer: {key: n}}``, so
costs at any alpha are a few hundred integer operations (:func:`predicted_costs`, fast enough for
a dashboard slider). A built network is read only through
:class:`~pam_explorer.core.geometry.CostedNet` (its geometry and group widths).

What is counted, per executed (non-empty) group and head, for one sample:

* FLOPs = 2 x MACs of the conv/linear cores, including zero-initialised new connections (they are
  physically computed). Bias adds, BatchNorm, ReLU and pooling are not counted, matching
  ``torch.utils.flop_counter.FlopCounterMode``.
* params = core weights + core biases + per-neuron op parameters (affine BatchNorm weight and bias)
  + head weights and biases of the executed tasks. Buffers (BN running stats) are not counted.

Networks of different depth: each task's head reads its own head layer (``NetGeometry.head_layers``),
and the groups of the later layers never contain it, so a subset's cost is exactly the layers its
tasks have.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pam_explorer.core.errors import ConfigError, StructureError
from pam_explorer.core.geometry import CostedNet, NetGeometry, Widths, widths_of
from pam_explorer.core.subsets import all_subsets, connected, subset_key, subset_masks


# --------------------------------------------------------------------------- costs
def _cost_items(geometry: NetGeometry, widths: Widths) -> list[tuple[int, int, int]]:
    """(task mask that executes it, MACs, params) of every non-empty group of every module layer
    and every head; widths are per neuron layer (a coupled neuron layer's groups run in each of
    its module layers; identity additions are free, as for FlopCounterMode)."""
    masks = subset_masks(geometry.tasks)
    items: list[tuple[int, int, int]] = []
    for lg in geometry.layers:
        inp = geometry.input_of(lg.name)  # the previous layer for a chain net, None: the image
        for key, n in widths[geometry.grouping_of(lg.name)].items():
            if n == 0:
                continue  # empty groups are skipped at run time
            m = masks[key]
            n_in = geometry.in_channels if inp is None else sum(
                w for k, w in widths[inp].items() if connected(masks[k], m))
            params = n * n_in * lg.params_per_connection + n * (int(lg.bias) + lg.follower_params)
            items.append((m, n * n_in * lg.macs_per_connection, params))
    for j, (t, n_out) in enumerate(zip(geometry.tasks, geometry.head_outputs)):
        # the head reads its own (possibly earlier) layer's neuron layer
        at = widths[geometry.grouping_of(geometry.head_layer(t))]
        n_in = geometry.head_factor(t) * sum(w for k, w in at.items() if masks[k] >> j & 1)
        items.append((1 << j, n_out * n_in, n_out * n_in + n_out * int(geometry.head_bias)))
    return items


def costs_from_widths(geometry: NetGeometry, widths: Widths) -> dict[str, dict[str, int]]:
    """{subset name: {"flops": int, "params": int}} for every non-empty task subset."""
    items = _cost_items(geometry, widths)
    out = {}
    for name, mask in subset_masks(geometry.tasks).items():
        run = [(macs, params) for m, macs, params in items if m & mask]
        out[name] = {"flops": 2 * sum(r[0] for r in run), "params": sum(r[1] for r in run)}
    return out


def fused_costs(geometry: NetGeometry, widths: Widths) -> dict[str, dict[str, int]]:
    """{subset name: {"flops", "params"}} of the dense fused model of every subset
    (:func:`pam_explorer.merge.fuse.fuse`, layout "dense"), counted as :func:`costs_from_widths`.

    Per module layer up to the subset's deepest head layer, one core maps all n_in active neurons
    of the neuron layer it reads (the image channels for the first) to all n active neurons of its
    own neuron layer: n * n_in connections, the zero blocks between groups that do not read each
    other included, so a subset costs at least its grouped cost, and exactly that when the active
    groups of every layer are nested (one group per layer, as in B1 and B2). Identity additions
    are free, as in the grouped count. Heads read only their own groups, as grouped.
    """
    masks = subset_masks(geometry.tasks)
    names = [lg.name for lg in geometry.layers]
    heads = [(1 << j, n_out, geometry.head_factor(t), geometry.grouping_of(geometry.head_layer(t)),
              names.index(geometry.head_layer(t)))
             for j, (t, n_out) in enumerate(zip(geometry.tasks, geometry.head_outputs))]
    out = {}
    for name, mask in masks.items():
        active = {layer: sum(w for k, w in ws.items() if masks[k] & mask) for layer, ws in widths.items()}
        macs = params = 0
        for lg in geometry.layers[:max(h for m, *_, h in heads if m & mask) + 1]:
            inp = geometry.input_of(lg.name)
            n = active[geometry.grouping_of(lg.name)]
            n_in = geometry.in_channels if inp is None else active[inp]
            macs += n * n_in * lg.macs_per_connection
            params += n * n_in * lg.params_per_connection + n * (int(lg.bias) + lg.follower_params)
        for m, n_out, factor, at, _ in heads:
            if m & mask:
                n_in = factor * sum(w for k, w in widths[at].items() if masks[k] & m)
                macs += n_out * n_in
                params += n_out * n_in + n_out * int(geometry.head_bias)
        out[name] = {"flops": 2 * macs, "params": params}
    return out


def predicted_costs(geometry: NetGeometry, grouping: Mapping[str, Any]) -> dict[str, int]:
    """{subset name: FLOPs} of the merged network a grouping would give, from group sizes only.

    Does not check the structure (a group without input still counts its compute), so it can be
    called on any slider position; :func:`check_structure` tells whether the net can be built.
    """
    return {k: v["flops"] for k, v in costs_from_widths(geometry, widths_of(geometry, grouping)).items()}


def subset_costs(net: CostedNet) -> dict[str, dict[str, int]]:
    """{subset: {"flops", "params"}} of a merged network (B2 = a fully shared MergedNet)."""
    return costs_from_widths(net.geometry, net.group_widths())


def separate_costs(nets: Mapping[str, CostedNet]) -> dict[str, dict[str, int]]:
    """B1: the cost of a subset is the sum of its tasks' own networks (task order = mapping order)."""
    single = {}
    for task, net in nets.items():
        if task not in net.tasks:
            raise StructureError(f"the network given for task {task!r} has tasks {list(net.tasks)}")
        single[task] = subset_costs(net)[task]
    return {subset_key(s): {m: sum(single[t][m] for t in s) for m in ("flops", "params")}
            for s in all_subsets(list(nets))}


# --------------------------------------------------------------------------- gains
def _ratios(baseline: Mapping[str, float], scheme: Mapping[str, float]) -> list[float]:
    if set(baseline) != set(scheme) or not baseline:
        raise ConfigError(f"baseline and scheme must cost the same non-empty set of subsets; got "
                          f"{sorted(baseline)} and {sorted(scheme)}")
    bad = [k for k in scheme if not scheme[k] > 0]
    if bad:
        raise ConfigError(f"scheme costs must be > 0; subsets {bad} are not")
    return [baseline[k] / scheme[k] for k in baseline]


def average_gain(baseline: Mapping[str, float], scheme: Mapping[str, float]) -> float:
    """Mean over task subsets of baseline cost / scheme cost."""
    ratios = _ratios(baseline, scheme)
    return sum(ratios) / len(ratios)


def peak_gain(baseline: Mapping[str, float], scheme: Mapping[str, float]) -> float:
    """Max over task subsets of baseline cost / scheme cost."""
    return max(_ratios(baseline, scheme))


def expected_flops(costs: Mapping[str, float], probabilities: Mapping[str, float]) -> float:
    """sum_s p(s) * cost(s) for a user-given probability of each task combination.

    Subsets missing from ``probabilities`` have probability 0. ConfigError if a probability is
    negative or not a number, names an unknown subset, or they do not sum to 1 (within 1e-6).
    """
    unknown = sorted(set(probabilities) - set(costs))
    if unknown:
        raise ConfigError(f"probabilities name unknown subset(s) {unknown}; known: {list(costs)}")
    bad = {k: p for k, p in probabilities.items() if not (isinstance(p, (int, float)) and p >= 0)}
    if bad:
        raise ConfigError(f"probabilities must be numbers >= 0; got {bad}")
    total = float(sum(probabilities.values()))
    if abs(total - 1.0) > 1e-6:
        raise ConfigError(f"probabilities must sum to 1 (within 1e-6); they sum to {total:.8g}")
    return float(sum(p * costs[k] for k, p in probabilities.items()))



__all__ = ["costs_from_widths", "fused_costs", "predicted_costs", "subset_costs", "separate_costs",
           "average_gain", "peak_gain", "expected_flops"]
