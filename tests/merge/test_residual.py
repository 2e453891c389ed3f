"""Merged residual nets: the chain MergedNet's guarantees, exactly (reference: the original
torchvision ResNets; for surgery, the same net with the removed channels zeroed)."""
import pytest
import torch
from torch.testing import assert_close

from pam_explorer.core.errors import StructureError
from pam_explorer.core.subsets import all_subsets
from pam_explorer.merge.build import (
    exclusive_grouping,
    from_single,
    fully_shared,
    merge_networks,
    shared_grouping,
)
from pam_explorer.merge.merged_net import MergedNet
from tests.helpers import random_grouping, tiny_resnets

TOL = {"atol": 1e-5, "rtol": 1e-5}


def x_for(n: int = 3, size: int = 16) -> torch.Tensor:
    return torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(7))


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("scheme", ["shared", "exclusive"])
def test_reproduces_original_networks(k, scheme):
    nets, tasks = tiny_resnets(k), "ABC"[:k]
    grouping = (shared_grouping if scheme == "shared" else exclusive_grouping)(nets, tasks)
    merged = merge_networks(nets, tasks, grouping).eval()
    assert merged.layer_names == merged.geometry.neuron_layers
    assert sum(merged.group_widths()["layer3"].values()) == 16 * k
    out = merged(x_for())
    with torch.no_grad():
        for t, net in zip(tasks, nets):
            assert_close(out[t], net(x_for()), **TOL)


def test_single_and_fully_shared_forms():
    nets = tiny_resnets(2)
    with torch.no_grad():
        assert_close(from_single(nets[1], "B").eval()(x_for())["B"], nets[1](x_for()), **TOL)
        shared = fully_shared(nets, "AB").eval()
    assert set(shared.group_widths()["layer2"]) == {"A+B"}


@pytest.mark.parametrize("k", [2, 3])
def test_subset_runs_equal_full_run_and_skip_other_groups(k):
    nets, tasks = tiny_resnets(k, seed=4), "ABC"[:k]
    merged = merge_networks(nets, tasks, random_grouping(nets, tasks, seed=k, empty=("A",))).eval()
    calls: dict[tuple[str, str], int] = {}
    for layer in merged.module_layers:
        for key, mod in merged.groups[layer].items():
            calls[(layer, key)] = 0
            mod.register_forward_hook(lambda *a, lk=(layer, key): calls.__setitem__(lk, calls[lk] + 1))
    x = x_for()
    full = merged(x)
    for sub in all_subsets(tasks):
        calls.update({lk: 0 for lk in calls})
        part = merged(x, sub)
        assert list(part) == list(sub)
        for t in sub:
            assert_close(part[t], full[t])
        for (layer, key), n in calls.items():
            needed = bool(set(key.split("+")) & set(sub)) and merged.width(layer, key) > 0
            assert n == int(needed), (sub, layer, key)
    assert sum(calls.values()) > 0


def _zero_channel(net: MergedNet, layer: str, key: str, pos: int) -> None:
    """Make channel ``pos`` of group ``key`` output zero in every module layer of its neuron
    layer: zero BN weight and bias, so BN, ReLU, pooling and each addition give 0 there."""
    for member in net.members(layer):
        bn = net.groups[member][key][1]
        bn.weight.data[pos] = 0
        bn.bias.data[pos] = 0


@pytest.mark.parametrize("layer", ["layer1", "layer2", "layer3_0_conv1"])
def test_remove_neurons_equals_zeroing_them(layer):
    """Removing stream channels removes them from the stem/downsample, every conv2 and every
    reader; a coupled channel gone everywhere equals it zeroed everywhere."""
    nets = tiny_resnets(2, seed=2)
    merged = merge_networks(nets, "AB", random_grouping(nets, "AB", seed=5)).eval()
    key = max(merged.group_widths()[layer], key=lambda k: merged.width(layer, k))
    drop = [0, merged.width(layer, key) - 1]
    zeroed = merge_networks(nets, "AB", random_grouping(nets, "AB", seed=5)).eval()
    for pos in drop:
        _zero_channel(zeroed, layer, key, pos)
    keep = [i for i in range(merged.width(layer, key)) if i not in drop]
    merged.remove_neurons(layer, key, keep)
    assert all(merged.groups[m][key][0].out_channels == len(keep) for m in merged.members(layer))
    out, want = merged(x_for()), zeroed(x_for())
    for t in "AB":
        assert_close(out[t], want[t], **TOL)
    rebuilt = MergedNet.from_widths(merged.geometry, merged.group_widths(), merged.provenance_map())
    rebuilt.load_state_dict(merged.state_dict())  # the shapes after surgery are the geometry's


def test_removal_that_cuts_a_path_is_refused_and_changes_nothing():
    nets = tiny_resnets(2)
    grouping = shared_grouping(nets, "AB")
    merged = merge_networks(nets, "AB", grouping).eval()
    before = {k: v.clone() for k, v in merged.state_dict().items()}
    with pytest.raises(StructureError, match="no non-empty input group|no path"):
        merged.remove_neurons("layer2_1_conv1", "A+B", [])  # the stream's conv2 of block 1 loses input
    assert all(torch.equal(v, before[k]) for k, v in merged.state_dict().items())


def test_queries_by_neuron_layer_and_module_layer():
    nets = tiny_resnets(2)
    merged = merge_networks(nets, "AB", random_grouping(nets, "AB", seed=1))
    assert merged.members("layer2_0_conv2") == merged.members("layer2")
    assert merged.width("layer2_1_conv2", "A+B") == merged.width("layer2", "A+B")
    assert merged.provenance("conv1", "A") == merged.provenance("layer1", "A")
    assert merged.reads("layer2_0_downsample", "A") == [k for k in ("A", "A+B")
                                                        if k in merged.group_widths()["layer1"]]
    with pytest.raises(StructureError, match="not a module layer"):
        merged.reads("layer2", "A")
    assert merged.task_counts()["groups.layer2_0_conv2.A+B.0.weight"] == 2
    with pytest.raises(StructureError, match=r"missing \['layer3'\]"):
        merge_networks(nets, "AB", {k: v for k, v in shared_grouping(nets, "AB").items() if k != "layer3"})
