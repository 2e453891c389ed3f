"""B2 (MTZ) on residual nets: zipping two copies of a net, or a net and a channel-permuted copy of
it, reproduces both exactly (the zipper must find every stream's and inner layer's permutation,
align the input columns of every reader and merge BN per pair); streams are paired from the
module layers whose inputs are already zipped; nets of different widths zip into the wider, with
each head reading its own channels; two different nets merge each pair by their own input
Hessians, recomputed here from scratch."""
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
    res = zip_networks([a, b], "AB", *_data(), MTZConfig(n_samples=16, retrain_batches=0, device="cpu"))
    wa, wb = _widths(a), _widths(b)
    assert res.net.group_widths() == {k: {"A+B": max(wa[k], wb[k])} for k in wa}
    out = res.net(torch.randn(3, 1, 32, 32))
    assert out["A"].shape == (3, 2) and out["B"].shape == (3, 1)
    assert all(torch.isfinite(v).all() for v in out.values())
    for rec in res.log[:-1]:  # every neuron of the narrower net is paired once
        pairs = rec["pairs"]
        assert len({i for i, _ in pairs}) == len({j for _, j in pairs}) == len(pairs) == wa[rec["layer"]]
    # heads: the wider B's channels sit at pairs then extras; A reads zeros at B's extra channels
    last = next(r["pairs"] for r in res.log if r["layer"] == "layer4")
    paired = [j for _, j in last]
    order = paired + [j for j in range(wb["layer4"]) if j not in set(paired)]
    head_a, head_b = res.net.heads["A"].weight, res.net.heads["B"].weight
    assert torch.equal(head_b, b.fc.weight[:, order])
    assert torch.equal(head_a[:, :len(last)], a.fc.weight[:, [i for i, _ in last]])
    assert not head_a[:, len(last):].any()


def test_three_residual_nets_are_refused():
    with pytest.raises(StructureError, match="exactly 2 networks"):
        zip_networks(tiny_resnets(3, size=32), "ABC", *_data(), CFG)


def _ridged(h: torch.Tensor, eps: float) -> torch.Tensor:
    return h + eps * h.diagonal().mean() * torch.eye(h.shape[0], dtype=h.dtype)


@torch.no_grad()
def test_two_different_nets_merge_by_their_own_hessians():
    """Zipped layer1_0_conv1 of two different nets, recomputed from scratch: each net's own input
    (the stem's output) gives its Hessian over the stream's zipped order, and each pair's merged
    kernel is argmin_w 1/2 |w - a|^2_{H_A} + 1/2 |w - b|^2_{H_B}, solved per kernel position."""
    a, b = tiny_resnets(2, size=32, outputs=(2, 1))
    train, val = _data()
    res = zip_networks([a, b], "AB", train, val, MTZConfig(n_samples=16, retrain_batches=0, device="cpu"))
    pairs = {rec["layer"]: rec["pairs"] for rec in res.log if "pairs" in rec}
    stream = pairs["layer1"]  # equal widths: every channel paired, zipped order = pairs by A's index
    images = train[0][:16]
    hs = []
    for net, side in ((a, 0), (b, 1)):
        x = torch.relu(net.bn1(net.conv1(images))).double()  # the stem's output: the stream
        cols = torch.nn.functional.unfold(x, 3, padding=1)  # (N, C * 9, L), channel-major
        v = cols.view(x.shape[0], x.shape[1], 9, -1).permute(1, 0, 2, 3).reshape(x.shape[1], -1)
        h = v @ v.T / v.shape[1]
        order = torch.tensor([p[side] for p in stream])
        hs.append(_ridged(h[order][:, order], CFG.eps))
    wa = a.layer1[0].conv1.weight.double()[:, [p[0] for p in stream]]
    wb = b.layer1[0].conv1.weight.double()[:, [p[1] for p in stream]]
    zipped = res.net.groups["layer1_0_conv1"]["A+B"][0].weight.double()
    inner = pairs["layer1_0_conv1"]
    assert len(inner) == wa.shape[0] and zipped.shape == wa.shape
    h_a, h_b = hs
    for k, (i, j) in enumerate(inner):
        for r in range(3):
            for c in range(3):
                want = torch.linalg.solve(h_a + h_b, h_a @ wa[i, :, r, c] + h_b @ wb[j, :, r, c])
                assert_close(zipped[k, :, r, c], want, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(zipped[0], (wa[inner[0][0]] + wb[inner[0][1]]) / 2, atol=1e-4), \
        "the Hessians differ, so a merged kernel is not the plain mean"
