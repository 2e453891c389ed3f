"""The paper's rule for a neuron picked by several exclusive sets (``both_picked="drop"``,
Algorithm 2 line 16): it leaves the network. Checked on the assembly of groups and on the merged
net, against removing the same neurons from a fully shared merge (an independent path)."""
from __future__ import annotations

import torch

from pam_explorer.merge.build import fully_shared, merge_networks
from pam_explorer.regroup.algorithms import LayerGroups, _assemble
from pam_explorer.zoo.registry import build_model

AB = ("A", "B")


def test_picked_by_both_is_dropped_or_shared():
    picked = {("A",): (0, 1, 2), ("B",): (2, 3)}
    drop = _assemble("fc1", 6, AB, picked, "drop")
    assert drop.groups == {("A",): (0, 1), ("B",): (3,), AB: (4, 5)} and drop.dropped == (2,)
    assert drop.kept == 5
    share = _assemble("fc1", 6, AB, picked, "share")
    assert share.groups[AB] == (2, 4, 5) and share.dropped == ()


def test_dropping_never_empties_the_shared_group():
    every = {("A",): tuple(range(4)), ("B",): tuple(range(4))}  # conv1 of the digits nets
    g = _assemble("conv1", 4, AB, every, "drop")
    assert g.groups[AB] == (0, 1, 2, 3) and g.dropped == ()


def test_merged_net_without_dropped_neurons_equals_removing_them_from_a_shared_merge():
    torch.manual_seed(0)
    nets = [build_model("lenet5", 2, 1, 32, width=0.5).eval() for _ in AB]
    widths = {"conv1": 6, "conv2": 16, "fc1": 120, "fc2": 84}  # two half-width LeNet-5s
    drop = {"fc1": (3, 70, 100), "conv2": (1, 9)}
    grouping = {layer: LayerGroups(layer, w, {AB: tuple(i for i in range(w) if i not in drop.get(layer, ()))},
                                   drop.get(layer, ())) for layer, w in widths.items()}
    merged = merge_networks(nets, AB, grouping)
    reference = fully_shared(nets, AB).eval()
    for layer, ids in drop.items():
        keep = torch.ones(widths[layer], dtype=torch.bool)
        keep[list(ids)] = False
        reference.remove_neurons(layer, "A+B", keep)
    assert merged.group_widths()["fc1"]["A+B"] == 117 and merged.group_widths()["conv2"]["A+B"] == 14
    x = torch.randn(5, 1, 32, 32)
    for tasks in (["A"], ["B"], ["A", "B"]):
        got, want = merged.eval()(x, tasks), reference(x, tasks)
        for t in tasks:
            torch.testing.assert_close(got[t], want[t], rtol=1e-5, atol=1e-5)
