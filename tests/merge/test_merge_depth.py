"""Merging networks of different depth (PAM Sec. 5.1 step 3: the deeper networks' extra layers
are taken over as exclusive groups; each head reads its own network's last layer)."""
import io
import json
import random
import zipfile
from collections import OrderedDict

import pytest
import torch
from torch import nn
from torch.testing import assert_close
from torch.utils.flop_counter import FlopCounterMode

from pam_explorer import export
from pam_explorer.core.geometry import NetGeometry, check_structure
from pam_explorer.core.subsets import all_subsets, subset_key
from pam_explorer.cost.analytic import predicted_costs, separate_costs, subset_costs
from pam_explorer.graph.build import chain_geometry, common_layers, layer_widths
from pam_explorer.merge.build import (
    complete_grouping,
    exclusive_grouping,
    from_single,
    merge_networks,
    shared_grouping,
    takeover_grouping,
)
from pam_explorer.merge.merged_net import MergedNet
from pam_explorer.zoo import build_model, load_checkpoint, save_checkpoint
from pam_explorer.zoo.chain import ChainNet
from tests.helpers import measured, randomise_bn


def _truncate(net: ChainNet, n_fc: int, n_out: int) -> ChainNet:
    """The conv blocks and the first ``n_fc`` fc blocks of ``net``, with a fresh head."""
    names = [k for k in net.blocks if k.startswith("conv")] + [f"fc{i + 1}" for i in range(n_fc)]
    blocks = OrderedDict((k, net.blocks[k]) for k in names)
    with torch.no_grad():
        feat = ChainNet(blocks, nn.Identity(), net.arch, net.in_channels, net.image_size).eval().body(
            torch.zeros(1, net.in_channels, net.image_size, net.image_size)).shape[1]
    return ChainNet(blocks, nn.Linear(feat, n_out), net.arch, net.in_channels, net.image_size)


def make_nets(arch: str, n_fcs: tuple[int, ...], seed: int = 0) -> list[ChainNet]:
    """One net per task with ``n_fcs[t]`` fc layers (0: conv blocks only, head on the conv map)."""
    nets = []
    for t, n_fc in enumerate(n_fcs):
        torch.manual_seed(seed + t)
        if arch == "lenet5":
            net = build_model("lenet5", 3 + t, 1, 32, extra_fc=max(0, n_fc - 2))
        else:
            net = randomise_bn(build_model("vgg16", 2 + t, 3, 32, width=0.0625, fc_width=16,
                                            extra_fc=max(0, n_fc - 2)), seed + t)
        nets.append((_truncate(net, n_fc, 3 + t) if n_fc < 2 else net).eval())
    return nets


def random_grouping(nets, tasks, seed: int, deep: bool = False) -> dict:
    """Random subsets per neuron of the common layers (the all-task group never empty); with
    ``deep`` also of the later layers, among subsets of the tasks that have them."""
    rng = random.Random(seed)
    common = common_layers(nets)
    out = {}
    for layer, widths in layer_widths(nets).items():
        if layer not in common and not deep:
            continue  # taken over by merge_networks
        have = tuple(t for t, w in zip(tasks, widths) if w > 0)
        keys = all_subsets(have)
        groups = {key: [] for key in keys}
        anchor = rng.randrange(sum(widths))
        for i in range(sum(widths)):
            groups[have if i == anchor else rng.choice(keys)].append(i)
        out[layer] = groups
    return out


def x_for(nets, n: int = 3) -> torch.Tensor:
    torch.manual_seed(123)
    return torch.randn(n, nets[0].in_channels, 32, 32)


# (arch, fc layers per task): K = 2 and 3, the shallow net first or not, two deeper nets of
# equal depth (d1 < d2 = d3), three depths, and a head on a conv layer (0 fc layers)
CASES = [("lenet5", (2, 3)), ("lenet5", (3, 2)), ("vgg16", (3, 2)), ("lenet5", (0, 2)),
         ("lenet5", (2, 3, 4)), ("lenet5", (3, 2, 3)), ("vgg16", (4, 2, 3)), ("lenet5", (0, 3, 2))]


@pytest.mark.parametrize("arch,n_fcs", CASES)
@pytest.mark.parametrize("scheme", ["shared", "exclusive"])
def test_reproduces_original_networks(arch, n_fcs, scheme):
    nets = make_nets(arch, n_fcs)
    tasks = "ABC"[:len(nets)]
    grouping = (shared_grouping if scheme == "shared" else exclusive_grouping)(nets, tasks)
    merged = merge_networks(nets, tasks, grouping).eval()
    assert merged.head_layers == {t: list(n.blocks)[-1] for t, n in zip(tasks, nets)}
    x = x_for(nets)
    out = merged(x)
    with torch.no_grad():
        for t, net in zip(tasks, nets):
            assert_close(out[t], net(x))
            assert_close(merged(x, [t])[t], net(x))


@pytest.mark.parametrize("arch,n_fcs", CASES)
@pytest.mark.parametrize("deep", [False, True])
def test_subset_outputs_equal_full_run(arch, n_fcs, deep):
    nets = make_nets(arch, n_fcs, seed=5)
    tasks = "ABC"[:len(nets)]
    merged = merge_networks(nets, tasks, random_grouping(nets, tasks, seed=len(nets), deep=deep)).eval()
    x = x_for(nets)
    full = merged(x)
    for sub in all_subsets(tasks):
        part = merged(x, sub)
        assert list(part) == list(sub)
        for t in sub:
            assert_close(part[t], full[t])


def test_takeover_groups_keep_the_original_weights():
    nets = make_nets("lenet5", (2, 4, 3))
    merged = merge_networks(nets, "ABC", random_grouping(nets, "ABC", seed=1))
    assert merged.group_widths()["fc3"] == {"B": 84, "C": 84}
    assert merged.group_widths()["fc4"] == {"B": 84}
    assert merged.reads("fc3", "B") == [k for k in merged.groups["fc2"] if "B" in k.split("+")]
    assert merged.provenance("fc4", "B") == tuple((1, j) for j in range(84))
    assert_close(merged.groups["fc4"]["B"][0].weight, nets[1].blocks["fc4"][0].weight)
    assert_close(merged.heads["B"].weight, nets[1].head.weight)
    assert_close(merged.heads["C"].weight, nets[2].head.weight)


@pytest.mark.parametrize("arch,n_fcs", CASES)
def test_costs_equal_flop_counter_and_executed_params(arch, n_fcs):
    nets = make_nets(arch, n_fcs)
    tasks = "ABC"[:len(nets)]
    geometry = chain_geometry(nets, tasks)
    for grouping in (shared_grouping(nets, tasks), exclusive_grouping(nets, tasks),
                     random_grouping(nets, tasks, 1), random_grouping(nets, tasks, 2, deep=True)):
        net = merge_networks(nets, tasks, grouping).eval()
        costs = subset_costs(net)
        predicted = predicted_costs(geometry, complete_grouping(nets, tasks, grouping))
        for sub in all_subsets(tasks):
            flops, params = measured(net, sub)
            assert costs[subset_key(sub)] == {"flops": flops, "params": params}, subset_key(sub)
            assert predicted[subset_key(sub)] == flops


def test_exclusive_merge_costs_what_the_separate_networks_cost():
    nets = make_nets("lenet5", (3, 2, 4))
    b1 = separate_costs({t: from_single(n, t) for t, n in zip("ABC", nets)})
    assert subset_costs(merge_networks(nets, "ABC", exclusive_grouping(nets, "ABC"))) == b1
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        nets[1](torch.zeros(1, 1, 32, 32))
    assert b1["B"]["flops"] == counter.get_total_flops()


def test_forward_stops_after_the_deepest_needed_layer():
    nets = make_nets("lenet5", (2, 4, 3))
    merged = merge_networks(nets, "ABC", random_grouping(nets, "ABC", seed=3)).eval()
    calls: list[str] = []
    for layer, mods in merged.groups.items():
        for mod in mods.values():
            mod.register_forward_hook(lambda *a, layer=layer: calls.append(layer))
    merged(x_for(nets), ["A"])
    assert set(calls) == {"conv1", "conv2", "fc1", "fc2"}
    calls.clear()
    merged(x_for(nets), ["A", "C"])
    assert "fc3" in calls and "fc4" not in calls
    assert merged.active_keys(["C"])["fc4"] == []


def test_geometry_head_layers_and_serialisation():
    nets = make_nets("lenet5", (0, 3))
    geo = chain_geometry(nets, "AB")
    assert geo.head_layers == ("conv2", "fc3") and geo.layer_names[-1] == "fc3"
    assert geo.head_factor("A") == 25 and geo.head_factor("B") == 1
    raw = json.loads(json.dumps(geo.to_dict()))
    assert raw["head_layers"] == ["conv2", "fc3"]
    assert NetGeometry.from_dict(raw) == geo
    same = chain_geometry(make_nets("lenet5", (2, 2)), "AB")
    assert "head_layers" not in same.to_dict()  # same-depth geometries serialise as before
    assert NetGeometry.from_dict(same.to_dict()).head_layers == ("fc2", "fc2")
    with pytest.raises(ValueError, match="head_layers"):
        NetGeometry(**{**same.to_dict(), "layers": same.layers, "head_layers": ("fc2", "fc9")})
    assert common_layers(nets) == ["conv1", "conv2"]
    assert layer_widths(nets)["fc1"] == [0, 120]
    assert takeover_grouping(nets, "AB") == {f: {("B",): tuple(range(n))}
                                             for f, n in (("fc1", 120), ("fc2", 84), ("fc3", 84))}


def test_check_structure_needs_the_head_layers_and_rejects_ended_tasks():
    nets = make_nets("lenet5", (2, 3))
    merged = merge_networks(nets, "AB", shared_grouping(nets, "AB"))
    widths = merged.group_widths()
    check_structure(merged.tasks, merged.layer_names, widths, head_layers=merged.head_layers)
    check_structure(merged.tasks, merged.layer_names, widths, head_layers=merged.geometry.head_layers)
    with pytest.raises(ValueError, match="task 'A'.*no path"):
        check_structure(merged.tasks, merged.layer_names, widths)  # A's head is not at fc3
    grouping = shared_grouping(nets, "AB")
    grouping["fc3"] = {("A", "B"): tuple(range(84))}
    with pytest.raises(ValueError, match=r"layer 'fc3', group 'A\+B': task\(s\) \['A'\] end before"):
        merge_networks(nets, "AB", grouping)
    bad = {**widths, "fc3": {"B": 84, "A+B": 0}}  # even an empty group may not name A
    with pytest.raises(ValueError, match="end before this layer"):
        MergedNet.from_widths(merged.geometry, bad)


def test_families_must_share_their_first_layers():
    a = build_model("lenet5", 3)
    b = build_model("lenet5", 3, extra_fc=1)
    b.blocks = nn.ModuleDict(OrderedDict((("conv1", b.blocks["conv1"]), ("conv2", b.blocks["conv2"]),
                                          ("fcX", b.blocks["fc1"]), ("fc2", b.blocks["fc2"]),
                                          ("fc3", b.blocks["fc3"]))))
    with pytest.raises(ValueError, match="network 0 has layers .* one family"):
        merge_networks([a, b], "AB", {})


def _silence(net: MergedNet, layer: str, key: str, positions: list[int]) -> None:
    """Reference for removal without BN: zero the neurons' core rows and biases (ReLU(0) = 0)."""
    core = net.groups[layer][key][0]
    with torch.no_grad():
        core.weight[positions] = 0
        core.bias[positions] = 0


def test_remove_neurons_on_head_and_takeover_layers_matches_silencing():
    nets = make_nets("lenet5", (2, 4, 3), seed=2)
    merged = merge_networks(nets, "ABC", random_grouping(nets, "ABC", seed=4)).eval()
    x = x_for(nets)
    # fc2: A's head layer (read by head A and fc3); fc3: takeover, read by head C and fc4 B
    targets = [("fc2", k) for k in merged.groups["fc2"]] + [("fc3", "B"), ("fc3", "C"), ("fc4", "B")]
    for layer, key in targets:
        width = merged.width(layer, key)
        if width < 2:
            continue
        drop = list(range(0, width, 2))
        _silence(merged, layer, key, drop)
        ref = {s: merged(x, s) for s in all_subsets("ABC")}
        keep = torch.ones(width, dtype=torch.bool)
        keep[drop] = False
        merged.remove_neurons(layer, key, keep)
        assert merged.width(layer, key) == width - len(drop)
        for s, out in ref.items():
            for t, y in merged(x, s).items():
                assert_close(y, out[t], msg=f"{layer} {key} {s}")
    readers = [core for core, _, _ in merged.reader_columns("fc2", "A+B+C")]
    assert merged.heads["A"] in readers and merged.groups["fc3"]["B"][0] in readers
    assert subset_costs(merged)["A"]["flops"] == measured(merged, ["A"])[0]


def test_remove_neurons_refuses_to_cut_a_takeover_path():
    nets = make_nets("lenet5", (2, 4, 3))
    merged = merge_networks(nets, "ABC", shared_grouping(nets, "ABC"))
    before = {k: v.clone() for k, v in merged.state_dict().items()}
    with pytest.raises(ValueError, match="task 'B'"):
        merged.remove_neurons("fc4", "B", [])
    with pytest.raises(ValueError, match="task 'C'"):
        merged.remove_neurons("fc3", "C", [])
    with pytest.raises(ValueError, match="layer 'fc4', group 'B'"):
        merged.remove_neurons("fc3", "B", [])
    with pytest.raises(ValueError, match="task 'A'|layer 'fc3'"):
        merged.remove_neurons("fc2", "A+B+C", [])
    after = merged.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    merged.remove_neurons("fc3", "B", [0, 5])  # a partial removal is fine
    merged(x_for(nets))["B"].sum().backward()


def test_export_round_trip_of_a_takeover_net(tmp_path):
    nets = make_nets("vgg16", (3, 2, 4))
    net = merge_networks(nets, "ABC", random_grouping(nets, "ABC", seed=6)).eval()
    net.remove_neurons("fc3", "A", [1, 2])
    path = export.save(net, tmp_path / "m.zip")
    manifest = export.read_manifest(path)
    assert manifest["geometry"]["head_layers"] == ["fc3", "fc2", "fc4"]
    assert manifest["head_reads"]["B"] == net.head_reads("B")
    again = export.load(path)
    assert again.head_layers == net.head_layers
    x = x_for(nets)
    for sub in all_subsets("ABC"):
        out, ref = again(x, sub), net(x, sub)
        for t in sub:
            assert_close(out[t], ref[t], rtol=0, atol=0)


def test_manifest_without_head_layers_still_loads():
    """Exports written before different depths existed have no head_layers: every head reads
    the last layer."""
    nets = make_nets("lenet5", (2, 2))
    net = merge_networks(nets, "AB", random_grouping(nets, "AB", seed=0)).eval()
    data = export.to_bytes(net)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    assert "head_layers" not in manifest["geometry"]
    again = export.load(data)
    assert again.head_layers == {"A": "fc2", "B": "fc2"}
    assert_close(again(x_for(nets)), net(x_for(nets)), rtol=0, atol=0)


def test_zoo_extra_fc_round_trips_through_a_checkpoint(tmp_path):
    net = build_model("lenet5", 3, extra_fc=2).eval()
    assert list(net.blocks)[-2:] == ["fc3", "fc4"] and net.hparams["extra_fc"] == 2
    assert "extra_fc" not in build_model("lenet5", 3).hparams
    again = load_checkpoint(save_checkpoint(net, tmp_path / "n.safetensors")).eval()
    x = torch.randn(2, 1, 32, 32)
    assert_close(again(x), net(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="extra_fc"):
        build_model("vgg16", 3, 3, 32, width=0.0625, fc_width=8, extra_fc=-1)
