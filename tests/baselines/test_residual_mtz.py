"""B2 (MTZ) on residual nets: zipping two copies of a net, or a net and a channel-permuted copy of
it, reproduces both exactly (the zipper must find every stream's and inner layer's permutation,
align the input columns of every reader and merge BN per pair); streams are paired from the
module layers whose inputs are already zipped; nets of different widths zip into the wider."""
import copy

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from pam_explorer.baselines.mtz import MTZConfig, zip_networks
from pam_explorer.core.errors import StructureError
from pam_explorer.graph.residual import residual_geometry, residual_modules
from pam_explorer.zoo import build_model
from tests.helpers import randomise_bn, tiny_resnets
from tests.prune.prune_fixtures import synthetic

CFG = MTZConfig(n_samples=32, retrain_batches=0, device="cpu")


def _permuted(net: nn.Module, seed: int) -> nn.Module:
    """A copy of ``net`` computing the same function with the channels of every neuron layer
    (each stream and each inner conv1) in a random order."""
    out = copy.deepcopy(net)
    geo, mods = residual_geometry([out], "A"), residual_modules(out)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for nl in geo.neuron_layers:
            perm = torch.randperm(mods[geo.members(nl)[0]][0].out_channels, generator=gen)
            for m in geo.members(nl):  # writers: output rows and their BN
                core, ops = mods[m]
                core.weight.copy_(core.weight[perm])
                for op in ops:
                    for t in [*op.parameters(recurse=False), *op.buffers(recurse=False)]:
                        if t.dim() == 1:
                            t.copy_(t[perm])
            for lg in geo.layers:  # readers: input columns
                if geo.input_of(lg.name) == nl:
                    w = mods[lg.name][0].weight
                    w.copy_(w[:, perm])
            if geo.grouping_of(geo.head_layer("A")) == nl:
                out.fc.weight.copy_(out.fc.weight[:, perm])
    return out


def _data():
    return synthetic(16, 0), synthetic(8, 1)  # 32 x 32 pictures; A has 2 labels, B 1


def test_a_permuted_copy_is_reassembled_exactly():
    (a,) = tiny_resnets(1, size=32, outputs=(2,))
    b = _permuted(a, seed=3)
    b.fc = nn.Linear(b.fc.in_features, 1)  # another task's head: heads are not zipped
    torch.manual_seed(5)
    nn.init.normal_(b.fc.weight)
    x = torch.randn(6, 1, 32, 32)
    assert_close(_permuted(a, 3)(x), a(x), atol=1e-5, rtol=1e-5)  # the helper keeps the function
    zipped = zip_networks([a, b], "AB", *_data(), CFG)
    assert_close(zipped.net(x, ["A"])["A"], a(x), atol=1e-5, rtol=1e-5)
    assert_close(zipped.net(x, ["B"])["B"], b(x), atol=1e-5, rtol=1e-5)
    widths = zipped.net.group_widths()
    assert all(set(w) == {"A+B"} for w in widths.values())
    assert widths == {nl: {"A+B": w} for nl, w in _widths(a).items()}
    assert all(rec["mean_cost"] < 1e-9 for rec in zipped.log if "mean_cost" in rec)


def _widths(net: nn.Module) -> dict[str, int]:
    """{neuron layer: channels} of a single net."""
    geo, mods = residual_geometry([net], "A"), residual_modules(net)
    return {nl: mods[geo.members(nl)[0]][0].out_channels for nl in geo.neuron_layers}


def test_two_copies_reproduce_each_and_streams_are_paired_from_ready_layers():
    (a,) = tiny_resnets(1, size=32, outputs=(2,))
    b = copy.deepcopy(a)
    b.fc = nn.Linear(b.fc.in_features, 1)
    x = torch.randn(4, 1, 32, 32)
    res = zip_networks([a, b], "AB", *_data(), CFG)
    assert_close(res.net(x)["A"], a(x), atol=1e-5, rtol=1e-5)
    assert_close(res.net(x)["B"], b(x), atol=1e-5, rtol=1e-5)
    cost_from = {rec["layer"]: rec["cost_from"] for rec in res.log if "cost_from" in rec}
    assert cost_from["layer1"] == ["conv1"]  # the stem; the conv2s read inner layers not yet zipped
    assert cost_from["layer2"] == ["layer2_0_downsample", "layer2_0_conv2"]
    assert cost_from["layer1_0_conv1"] == ["layer1_0_conv1"]
    assert [r["layer"] for r in res.log][-1] == "retrain"


def test_different_widths_zip_into_the_wider_and_run():
    torch.manual_seed(0)
    a = randomise_bn(build_model("resnet18", 2, 1, 32, width=1 / 16, small_input=True), 0).eval()
    b = randomise_bn(build_model("resnet18", 1, 1, 32, width=1 / 8, small_input=True), 1).eval()
    res = zip_networks([a, b], "AB", *_data(), MTZConfig(n_samples=16, retrain_batches=2, device="cpu"))
    wa, wb = _widths(a), _widths(b)
    assert res.net.group_widths() == {k: {"A+B": max(wa[k], wb[k])} for k in wa}
    out = res.net(torch.randn(3, 1, 32, 32))
    assert out["A"].shape == (3, 2) and out["B"].shape == (3, 1)
    assert all(torch.isfinite(v).all() for v in out.values())
    for rec in res.log[:-1]:  # every neuron of the narrower net is paired once
        pairs = rec["pairs"]
        assert len({i for i, _ in pairs}) == len({j for _, j in pairs}) == len(pairs)


def test_three_residual_nets_are_refused():
    with pytest.raises(StructureError, match="exactly 2 networks"):
        zip_networks(tiny_resnets(3, size=32), "ABC", *_data(), CFG)
