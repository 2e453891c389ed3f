"""Analytic FLOPs/params of merged residual nets equal torch's FlopCounterMode and the executed
parameters, for every task subset (reference: tests.helpers.measured); latency runs."""
import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from pam_explorer.core.subsets import all_subsets, subset_key
from pam_explorer.cost.analytic import predicted_costs, subset_costs
from pam_explorer.cost.latency import measure_latency
from pam_explorer.graph.build import net_geometry
from pam_explorer.merge.build import exclusive_grouping, from_single, merge_networks, shared_grouping
from pam_explorer.zoo import build_model
from tests.helpers import measured, random_grouping, tiny_resnets


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("scheme", ["shared", "exclusive", "mixed", "empty"])
def test_costs_equal_flop_counter_for_every_subset(k, scheme):
    tasks = "ABC"[:k]
    nets = tiny_resnets(k)
    grouping = {"shared": shared_grouping(nets, tasks), "exclusive": exclusive_grouping(nets, tasks),
                "mixed": random_grouping(nets, tasks, 1),
                "empty": random_grouping(nets, tasks, 2, empty=tuple(tasks[:1]))}[scheme]
    net = merge_networks(nets, tasks, grouping).eval()
    costs, predicted = subset_costs(net), predicted_costs(net_geometry(nets, tasks), grouping)
    for sub in all_subsets(tasks):
        flops, params = measured(net, sub)
        assert (costs[subset_key(sub)]["flops"], costs[subset_key(sub)]["params"]) == (flops, params)
        assert predicted[subset_key(sub)] == flops


def test_single_full_width_resnet18_costs_what_torchvision_counts():
    """B1 form of a full ResNet-18 (7x7 stem, 64 px): torchvision's own FLOPs and parameters."""
    net = build_model("resnet18", 5, 3, 64).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        torchvision.models.resnet18(num_classes=5).eval()(torch.zeros(1, 3, 64, 64))
    cost = subset_costs(from_single(net, "A"))["A"]
    assert cost == {"flops": counter.get_total_flops(), "params": sum(p.numel() for p in net.parameters())}


def test_latency_per_subset():
    nets = tiny_resnets(2)
    lat = measure_latency(merge_networks(nets, "AB", random_grouping(nets, "AB", 3)), min_run_time=0.01)
    assert set(lat) == {"A", "B", "A+B"} and all(v > 0 for v in lat.values())
