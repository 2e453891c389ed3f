"""MergedNet invariants: exact reproduction, subset consistency, skipped groups, errors, surgery."""
import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from pam_explorer.core.geometry import NetGeometry
from pam_explorer.core.subsets import all_subsets, subset_key
from pam_explorer.graph.build import chain_geometry, layer_widths
from pam_explorer.merge.build import (
    exclusive_grouping,
    from_single,
    fully_shared,
    merge_networks,
    shared_grouping,
)
from pam_explorer.merge.merged_net import MergedNet
from pam_explorer.zoo import build_model
from tests.helpers import random_grouping, randomise_bn


def make_nets(arch: str, k: int, seed: int = 0, widths: tuple[float, ...] | None = None) -> list[nn.Module]:
    nets = []
    for t in range(k):
        torch.manual_seed(seed + t)
        if arch == "lenet5":
            net = build_model("lenet5", 3 + t, 1, 32, width=(widths or (1.0,) * k)[t])
        else:
            net = randomise_bn(build_model("vgg16", 2 + t, 3, 32, width=0.0625, fc_width=16), seed + t)
        nets.append(net.eval())
    return nets


def x_for(nets, n: int = 3) -> torch.Tensor:
    torch.manual_seed(123)
    return torch.randn(n, nets[0].in_channels, 32, 32)


CASES = [("lenet5", 2), ("vgg16", 2), ("lenet5", 3), ("vgg16", 3)]


@pytest.mark.parametrize("arch,k", CASES)
@pytest.mark.parametrize("scheme", ["shared", "exclusive"])
def test_reproduces_original_networks(arch, k, scheme):
    nets = make_nets(arch, k)
    tasks = "ABC"[:k]
    grouping = (shared_grouping if scheme == "shared" else exclusive_grouping)(nets, tasks)
    merged = merge_networks(nets, tasks, grouping).eval()
    x = x_for(nets)
    out = merged(x)
    with torch.no_grad():
        for t, net in zip(tasks, nets):
            assert_close(out[t], net(x))


def test_different_widths_per_network():
    nets = make_nets("lenet5", 2, widths=(1.0, 0.5))
    x = x_for(nets)
    for grouping in (shared_grouping(nets, "AB"), exclusive_grouping(nets, "AB")):
        merged = merge_networks(nets, "AB", grouping).eval()
        assert sum(merged.group_widths()["conv2"].values()) == 16 + 8
        out = merged(x)
        for t, net in zip("AB", nets):
            assert_close(out[t], net(x))
    merged = merge_networks(nets, "AB", random_grouping(nets, "AB", 3)).eval()
    assert_close(merged(x, ["B"])["B"], merged(x)["B"])


@pytest.mark.parametrize("arch,k", CASES)
def test_subset_outputs_equal_full_run(arch, k):
    nets = make_nets(arch, k, seed=5)
    tasks = "ABC"[:k]
    merged = merge_networks(nets, tasks, random_grouping(nets, tasks, seed=k, empty=("A",))).eval()
    x = x_for(nets)
    full = merged(x)
    for sub in all_subsets(tasks):
        part = merged(x, sub)
        assert list(part) == list(sub)
        for t in sub:
            assert_close(part[t], full[t])


def test_mixed_grouping_keeps_weights_and_zeroes_new_connections():
    nets = make_nets("lenet5", 2)
    grouping = shared_grouping(nets, "AB")
    grouping["conv1"] = {("A", "B"): (0,), ("B",): tuple(range(1, 12))}  # A's neuron 0 shared
    grouping["conv2"] = {("A", "B"): (0,), ("B",): tuple(range(1, 32))}
    merged = merge_networks(nets, "AB", grouping)
    assert merged.reads("conv2", "B") == ["B", "A+B"]  # canonical order: A, B, A+B
    assert merged.provenance("conv1", "A+B") == ((0, 0),)
    assert merged.provenance("conv2", "B") == tuple((0, j) for j in range(1, 16)) + tuple(
        (1, j) for j in range(16))
    w = merged.groups["conv2"]["B"][0].weight  # (31, 12, 5, 5); columns: B (A1..A5, B0..B5), A+B (A0)
    w_a, w_b = nets[0].blocks["conv2"][0].weight, nets[1].blocks["conv2"][0].weight
    assert_close(w[:15, :5], w_a[1:, 1:])  # A -> A connections keep their weights
    assert_close(w[:15, 11], w_a[1:, 0])
    assert torch.all(w[:15, 5:11] == 0)  # B -> A: new connection, zero
    assert_close(w[15:, 5:11], w_b)
    assert torch.all(w[15:, :5] == 0) and torch.all(w[15:, 11] == 0)
    assert_close(merged.groups["conv1"]["A+B"][0].bias, nets[0].blocks["conv1"][0].bias[:1])
    assert_close(merged.groups["conv2"]["B"][0].bias[15:], nets[1].blocks["conv2"][0].bias)


def test_inactive_and_empty_groups_are_not_executed():
    nets = make_nets("vgg16", 3)
    merged = merge_networks(nets, "ABC", random_grouping(nets, "ABC", seed=1, empty=("A", "C"))).eval()
    calls: dict[tuple[str, str], int] = {}
    for layer, mods in merged.groups.items():
        for key, mod in mods.items():
            calls[(layer, key)] = 0
            mod.register_forward_hook(lambda *a, lk=(layer, key): calls.__setitem__(lk, calls[lk] + 1))
    head_calls = {t: 0 for t in "ABC"}
    for t, head in merged.heads.items():
        head.register_forward_hook(lambda *a, t=t: head_calls.__setitem__(t, head_calls[t] + 1))
    merged(x_for(nets), ["A"])
    for (layer, key), n in calls.items():
        expected = int("A" in key.split("+") and merged.width(layer, key) > 0)
        assert n == expected, (layer, key)
    assert calls[("conv1", "A+C")] == 0 and merged.width("conv1", "A+C") == 0
    assert head_calls == {"A": 1, "B": 0, "C": 0}
    active = merged.active_keys(["A"])
    assert all("A" in k.split("+") for ks in active.values() for k in ks)


def test_from_single_and_fully_shared():
    nets = make_nets("vgg16", 2)
    x = x_for(nets)
    single = from_single(nets[0], "A").eval()
    assert single.tasks == ("A",) and list(single.groups["conv1"]) == ["A"]
    assert_close(single(x)["A"], nets[0](x))
    shared = fully_shared(nets, ["A", "B"]).eval()
    assert all(list(g) == ["A+B"] for g in shared.group_widths().values())
    assert_close(shared(x)["B"], nets[1](x))


def test_accepts_layergroups_objects_and_string_keys():
    nets = make_nets("lenet5", 2)
    grouping = {layer: SimpleNamespace(layer=layer, width=sum(w), groups={
        ("A", "B"): tuple(range(sum(w)))}) for layer, w in layer_widths(nets).items()}
    grouping["fc2"] = {"A": range(84), "B": range(84, 168)}
    merged = merge_networks(nets, ["A", "B"], grouping)
    assert merged.group_widths()["fc2"] == {"A": 84, "B": 84}


@pytest.mark.parametrize("change,match", [
    (lambda g: g["conv1"].update({("A",): (0, 0, 1)}), "neuron id 0 is twice"),
    (lambda g: g["conv1"].update({("A", "B"): (0,)}), "neuron id 0 is also in group 'A'"),
    (lambda g: g["conv2"].pop(("B",)), "layer 'conv2': neuron id"),
    (lambda g: g["fc1"].update({("B", "A"): ()}), "task order"),
    (lambda g: g["fc1"].update({("Z",): ()}), "unknown task"),
    (lambda g: g["fc1"].update({(): ()}), "non-empty"),
    (lambda g: g["fc1"].update({("A",): (0, 999)}), "outside"),
    (lambda g: g.pop("fc2"), "missing \\['fc2'\\]"),
])
def test_grouping_validation(change, match):
    nets = make_nets("lenet5", 2)
    grouping = {layer: dict(groups) for layer, groups in exclusive_grouping(nets, "AB").items()}
    change(grouping)
    with pytest.raises(ValueError, match=match):
        merge_networks(nets, "AB", grouping)


def test_group_without_input_and_task_without_path_are_rejected():
    nets = make_nets("lenet5", 2)
    grouping = exclusive_grouping(nets, "AB")
    grouping["fc1"] = {("A", "B"): tuple(range(240))}  # reads conv2's A+B group: absent
    with pytest.raises(ValueError, match="layer 'fc1', group 'A\\+B'.*no non-empty input"):
        merge_networks(nets, "AB", grouping)
    grouping = shared_grouping(nets, "AB")
    grouping["fc2"] = {("A",): tuple(range(168)), ("B",): ()}
    with pytest.raises(ValueError, match="task 'B'.*no path"):
        merge_networks(nets, "AB", grouping)


def test_rejects_networks_of_different_families():
    """Different depth is merged (tests/test_merge_depth.py); different first layers are not."""
    a = build_model("lenet5", 3)
    b = build_model("vgg16", 3, 1, 32, width=0.0625, fc_width=16)
    with pytest.raises(ValueError, match="network 0 has layers .* one family"):
        merge_networks([a, b], "AB", {})


def _zero_outgoing(net: MergedNet, layer: str, key: str, positions: list[int]) -> None:
    """Reference for removal: zero the input columns of ``positions`` in every reader."""
    names = net.layer_names
    i = names.index(layer)
    if i + 1 < len(names):
        nxt = names[i + 1]
        factor = net.geometry.layers[i + 1].in_factor
        readers = [(net.groups[nxt][k][0], net.reads(nxt, k)) for k in net.groups[nxt]
                   if key in net.reads(nxt, k)]
    else:
        factor = net.geometry.head_in_factor
        readers = [(net.heads[t], net.head_reads(t)) for t in net.tasks if key in net.head_reads(t)]
    with torch.no_grad():
        for core, reads in readers:
            offset = sum(net.width(layer, k) for k in reads[:reads.index(key)])
            for p in positions:
                core.weight[:, (offset + p) * factor:(offset + p + 1) * factor] = 0


@pytest.mark.parametrize("arch", ["lenet5", "vgg16"])
def test_remove_neurons_matches_zeroing(arch):
    nets = make_nets(arch, 3, seed=2)
    merged = merge_networks(nets, "ABC", random_grouping(nets, "ABC", seed=4)).eval()
    x = x_for(nets)
    layers = merged.layer_names
    removed = 0
    for layer in (layers[0], layers[len(layers) // 2], layers[-1]):
        for key, width in merged.group_widths()[layer].items():
            drop = list(range(0, width, 2))
            _zero_outgoing(merged, layer, key, drop)
            ref = merged(x)
            prov = merged.provenance(layer, key)
            keep = torch.ones(width, dtype=torch.bool)
            keep[drop] = False
            try:
                merged.remove_neurons(layer, key, keep)
            except ValueError:
                continue  # it would cut a path (tested below)
            removed += 1
            assert merged.width(layer, key) == width - len(drop)
            assert merged.provenance(layer, key) == tuple(p for j, p in enumerate(prov) if keep[j])
            out = merged(x)
            for t in "ABC":
                assert_close(out[t], ref[t])
                assert_close(merged(x, [t])[t], ref[t])
    assert removed >= 10


def test_remove_neurons_refuses_to_cut_a_path_and_leaves_net_unchanged():
    nets = make_nets("lenet5", 2)
    merged = merge_networks(nets, "AB", shared_grouping(nets, "AB"))
    before = {k: v.clone() for k, v in merged.state_dict().items()}
    with pytest.raises(ValueError, match="task 'A'"):
        merged.remove_neurons("fc2", "A+B", [])
    with pytest.raises(ValueError, match="layer 'fc1', group 'A\\+B'"):
        merged.remove_neurons("conv2", "A+B", torch.zeros(32, dtype=torch.bool))
    with pytest.raises(ValueError, match="distinct"):
        merged.remove_neurons("conv2", "A+B", [1, 1])
    after = merged.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_remove_can_empty_a_group_and_keeps_train_mode_and_grads():
    nets = make_nets("vgg16", 2)
    merged = merge_networks(nets, "AB", random_grouping(nets, "AB", seed=7)).eval()
    key = next(k for k in ("A", "B") if merged.width("conv3", k) > 0)
    merged.remove_neurons("conv3", key, [])
    assert merged.width("conv3", key) == 0 and not merged.training
    assert not any(m.training for m in merged.modules())
    merged(x_for(nets))["A"].sum().backward()


def test_from_widths_state_dict_round_trip():
    nets = make_nets("vgg16", 2)
    merged = merge_networks(nets, "AB", random_grouping(nets, "AB", seed=2, empty=("B",))).eval()
    merged.remove_neurons("conv5", "A+B", [0])
    geo = NetGeometry.from_dict(json.loads(json.dumps(merged.geometry.to_dict())))
    assert geo == merged.geometry
    rebuilt = MergedNet.from_widths(geo, merged.group_widths(), merged.provenance_map())
    rebuilt.load_state_dict(merged.state_dict())
    rebuilt.eval()
    x = x_for(nets)
    assert_close(rebuilt(x), merged(x))
    assert rebuilt.provenance_map() == merged.provenance_map()


def test_geometry_and_query_api():
    nets = make_nets("lenet5", 2)
    geo = chain_geometry(nets, "AB")
    assert [lg.kind for lg in geo.layers] == ["conv", "conv", "fc", "fc"]
    assert geo.layers[0].conv_out_hw == (28, 28) and geo.layers[0].out_hw == (14, 14)
    assert geo.layers[2].in_factor == 25 and geo.head_outputs == (3, 4)
    merged = merge_networks(nets, "AB", random_grouping(nets, "AB", seed=0))
    assert merged.layer_kinds == {"conv1": "conv", "conv2": "conv", "fc1": "fc", "fc2": "fc"}
    assert merged.reads("conv1", "A") == []
    assert merged.reads("fc1", "A") == [k for k in ("A", "A+B") if k in merged.groups["conv2"]]
    assert merged.head_reads("B") == [k for k in ("B", "A+B") if k in merged.groups["fc2"]]
    counts = merged.task_counts()
    assert counts["groups.fc1.A+B.0.weight"] == 2 and counts["heads.A.bias"] == 1
    assert list(counts) == [name for name, _ in merged.named_parameters()]
    assert all(n == len(name.split(".")[2].split("+")) if name.startswith("groups.") else n == 1
               for name, n in counts.items())
    assert list(merged(x_for(nets), "A+B")) == ["A", "B"]
    with pytest.raises(ValueError, match="subset"):
        merged(x_for(nets), ["Z"])
    assert subset_key(("A", "B")) == "A+B"
