"""Analytic costs equal torch's FLOP counter and the executed parameters; gains; latency smoke."""
import time
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pam_explorer.core.geometry import check_structure
from pam_explorer.core.subsets import all_subsets, subset_key
from pam_explorer.cost.analytic import (
    average_gain,
    costs_from_widths,
    expected_flops,
    peak_gain,
    predicted_costs,
    separate_costs,
    subset_costs,
)
from pam_explorer.cost.latency import measure_latency
from pam_explorer.graph.build import chain_geometry
from pam_explorer.merge.build import (
    exclusive_grouping,
    from_single,
    fully_shared,
    merge_networks,
    shared_grouping,
)
from pam_explorer.zoo import build_model
from tests.helpers import measured, random_grouping


def make_nets(arch: str, k: int, seed: int = 0) -> list[nn.Module]:
    nets = []
    for t in range(k):
        torch.manual_seed(seed + t)
        net = (build_model("lenet5", 3 + t) if arch == "lenet5"
               else build_model("vgg16", 2 + t, 3, 32, width=0.0625, fc_width=16))
        nets.append(net.eval())
    return nets


def groupings(nets, tasks):
    return {"shared": shared_grouping(nets, tasks), "exclusive": exclusive_grouping(nets, tasks),
            "mixed": random_grouping(nets, tasks, 1),
            "empty": random_grouping(nets, tasks, 2, empty=tasks[:1])}


@pytest.mark.parametrize("arch,k", [("lenet5", 2), ("vgg16", 2), ("lenet5", 3), ("vgg16", 3)])
def test_costs_equal_flop_counter_and_executed_params(arch, k):
    tasks = "ABC"[:k]
    nets = make_nets(arch, k)
    geometry = chain_geometry(nets, tasks)
    for name, grouping in groupings(nets, tasks).items():
        net = merge_networks(nets, tasks, grouping).eval()
        costs = subset_costs(net)
        assert list(costs) == [subset_key(s) for s in all_subsets(tasks)]
        predicted = predicted_costs(geometry, grouping)
        for sub in all_subsets(tasks):
            flops, params = measured(net, sub)
            key = subset_key(sub)
            assert costs[key] == {"flops": flops, "params": params}, (name, key)
            assert predicted[key] == flops


def test_costs_follow_pruning():
    nets = make_nets("vgg16", 2)
    net = merge_networks(nets, "AB", random_grouping(nets, "AB", 5)).eval()
    net.remove_neurons("conv4", "A+B", [0])
    net.remove_neurons("fc2", "A+B", [1, 2])
    key = next(k for k in ("A", "B") if net.width("conv2", k) > 0)
    net.remove_neurons("conv2", key, [])
    for sub in all_subsets("AB"):
        flops, params = measured(net, sub)
        assert subset_costs(net)[subset_key(sub)] == {"flops": flops, "params": params}


def test_b1_separate_costs_equal_sum_of_networks():
    nets = make_nets("lenet5", 3)
    b1 = {t: from_single(n, t) for t, n in zip("ABC", nets)}
    costs = separate_costs(b1)
    x = torch.randn(1, 1, 32, 32)
    own = []
    for n in nets:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            n(x)
        own.append((counter.get_total_flops(), sum(p.numel() for p in n.parameters())))
    assert costs["A"] == {"flops": own[0][0], "params": own[0][1]}
    assert costs["A+C"]["flops"] == own[0][0] + own[2][0]
    assert costs["A+B+C"]["params"] == sum(o[1] for o in own)
    # merging with every neuron exclusive costs exactly what separate networks cost
    assert subset_costs(merge_networks(nets, "ABC", exclusive_grouping(nets, "ABC"))) == costs


def test_b2_fully_shared_runs_the_whole_trunk_for_any_subset():
    nets = make_nets("lenet5", 2)
    costs = subset_costs(fully_shared(nets, "AB"))
    trunk = costs["A"]["flops"] - 2 * 168 * 3  # minus head A (168 inputs -> 3 outputs)
    assert costs["B"]["flops"] == trunk + 2 * 168 * 4
    assert costs["A+B"]["flops"] == trunk + 2 * 168 * 7


def test_predicted_costs_accepts_counts_and_layergroups_and_is_fast():
    nets = make_nets("vgg16", 3)
    geometry = chain_geometry(nets, "ABC")
    grouping = random_grouping(nets, "ABC", 3)
    objects = {layer: SimpleNamespace(layer=layer, width=sum(len(v) for v in g.values()), groups=g)
               for layer, g in grouping.items()}
    counts = {layer: {"+".join(k): len(v) for k, v in g.items()} for layer, g in grouping.items()}
    reference = predicted_costs(geometry, grouping)
    assert predicted_costs(geometry, objects) == reference
    assert predicted_costs(geometry, counts) == reference
    start = time.perf_counter()
    for _ in range(20):
        predicted_costs(geometry, objects)
    assert (time.perf_counter() - start) / 20 < 0.05  # generous; typically well under 1 ms


def test_costs_from_widths_by_hand():
    geometry = chain_geometry(make_nets("lenet5", 2), "AB")
    widths = {"conv1": {"A": 1, "A+B": 2}, "conv2": {"A+B": 3}, "fc1": {"B": 4, "A+B": 5},
              "fc2": {"A": 6, "B": 7}}
    costs = costs_from_widths(geometry, widths)
    conv1 = {"A": 1 * 1 * 25 * 28 * 28, "A+B": 2 * 1 * 25 * 28 * 28}
    conv2 = 3 * 2 * 25 * 10 * 10  # A+B reads only conv1's A+B group
    fc1 = {"B": 4 * 3 * 25, "A+B": 5 * 3 * 25}
    fc2 = {"A": 6 * 5, "B": 7 * 9}  # A reads fc1 A+B; B reads fc1 B and A+B
    heads = {"A": 3 * 6, "B": 4 * 7}
    macs_a = sum(conv1.values()) + conv2 + fc1["A+B"] + fc2["A"] + heads["A"]
    assert costs["A"]["flops"] == 2 * macs_a
    macs_ab = sum(conv1.values()) + conv2 + sum(fc1.values()) + sum(fc2.values()) + sum(heads.values())
    assert costs["A+B"]["flops"] == 2 * macs_ab
    with pytest.raises(ValueError, match="layer 'conv2', group 'A\\+B'"):
        check_structure("AB", geometry.layer_names, {**widths, "conv1": {"A": 1, "A+B": 0}})


def test_gains_on_hand_numbers():
    baseline = {"A": 2.0, "B": 4.0, "A+B": 6.0}
    scheme = {"A": 1.0, "B": 2.0, "A+B": 6.0}
    assert average_gain(baseline, scheme) == pytest.approx(5 / 3)
    assert peak_gain(baseline, scheme) == 2.0
    with pytest.raises(ValueError, match="same"):
        average_gain(baseline, {"A": 1.0})
    with pytest.raises(ValueError, match="> 0"):
        peak_gain(baseline, {**scheme, "B": 0.0})


def test_expected_flops():
    costs = {"A": 10.0, "B": 20.0, "A+B": 30.0}
    assert expected_flops(costs, {"A": 0.5, "A+B": 0.5}) == pytest.approx(20.0)
    assert expected_flops(costs, {"A": 0.2, "B": 0.3, "A+B": 0.5}) == pytest.approx(23.0)
    with pytest.raises(ValueError, match=">= 0"):
        expected_flops(costs, {"A": -0.5, "B": 1.5})
    with pytest.raises(ValueError, match="sum to 1"):
        expected_flops(costs, {"A": 0.5, "B": 0.4})
    with pytest.raises(ValueError, match="unknown subset"):
        expected_flops(costs, {"C": 1.0})


def test_measure_latency_smoke():
    nets = make_nets("lenet5", 2)
    net = merge_networks(nets, "AB", random_grouping(nets, "AB", 0)).train()
    lat = measure_latency(net, min_run_time=0.01)
    assert list(lat) == ["A", "B", "A+B"] and all(v > 0 for v in lat.values())
    assert list(measure_latency(net, subsets=[("A",)], min_run_time=0.01)) == ["A"]
    assert net.training
