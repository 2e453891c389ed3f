"""Fused subset models (merge.fuse): references are the merged net's own forward(x, subset) for the
outputs, torch.utils.flop_counter.FlopCounterMode for the FLOPs, and torch.export / torch.compile /
torch.ao dynamic quantisation for "an ordinary module"."""
from __future__ import annotations

import warnings
from collections import OrderedDict

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pam_explorer.core.errors import ConfigError, StructureError
from pam_explorer.core.subsets import subset_masks
from pam_explorer.cost.analytic import fused_costs, subset_costs
from pam_explorer.graph.build import common_layers
from pam_explorer.merge.build import from_single, fully_shared, merge_networks
from pam_explorer.merge.fuse import LAYOUTS, fuse, fuse_separate, measure_fused_latency
from pam_explorer.zoo import build_model
from pam_explorer.zoo.chain import ChainNet
from tests.helpers import random_grouping, randomise_bn

TASKS = ("A", "B", "C")


def _nets(arch: str, k: int) -> list[ChainNet]:
    torch.manual_seed(k)
    if arch == "lenet5":
        return [build_model("lenet5", 3 + t, 1, 32, width=0.5).eval() for t in range(k)]
    return [randomise_bn(build_model("vgg16", 2 + t, 3, 32, width=0.0625, fc_width=16), t).eval()
            for t in range(k)]


def _conv_only(net: ChainNet, n_out: int) -> ChainNet:
    """The conv blocks of ``net`` with a head on the conv map (a shallower member of its family)."""
    blocks = OrderedDict((k, b) for k, b in net.blocks.items() if k.startswith("conv"))
    with torch.no_grad():
        feat = ChainNet(blocks, nn.Identity(), net.arch, net.in_channels, net.image_size).eval().body(
            torch.zeros(1, net.in_channels, net.image_size, net.image_size)).shape[1]
    return ChainNet(blocks, nn.Linear(feat, n_out), net.arch, net.in_channels, net.image_size).eval()


def _depth_nets() -> list[ChainNet]:
    """A: conv only (head on conv2), B: LeNet-5, C: LeNet-5 with one more fc layer."""
    torch.manual_seed(5)
    a = _conv_only(build_model("lenet5", 3, 1, 32, width=0.5), 3)
    return [a, build_model("lenet5", 4, 1, 32, width=0.5).eval(),
            build_model("lenet5", 2, 1, 32, width=0.5, extra_fc=1).eval()]


def _merged(nets, seed: int, empty=None):
    tasks = TASKS[:len(nets)]
    grouping = random_grouping(nets, tasks, seed, empty=empty)
    common = set(common_layers(nets))
    grouping = {layer: g for layer, g in grouping.items() if layer in common}  # the rest: taken over
    return merge_networks(nets, tasks, grouping).eval()


def _check_outputs(net, x: torch.Tensor) -> int:
    """Every subset, both layouts: fused outputs == net(x, subset) to 1e-5; returns #cases."""
    n = 0
    for subset in subset_masks(net.tasks):
        ref = net(x, subset.split("+"))
        for layout in LAYOUTS:
            fused = fuse(net, subset, layout)
            out = fused(x)
            assert isinstance(out, tuple) and fused.tasks == tuple(subset.split("+"))
            for t, y in zip(fused.tasks, out):
                torch.testing.assert_close(y, ref[t], rtol=0, atol=1e-5)
            n += 1
    return n


@pytest.mark.parametrize("arch", ["lenet5", "vgg16"])
@pytest.mark.parametrize("k", [2, 3])
def test_fused_outputs_equal_grouped_for_every_subset(arch, k):
    nets = _nets(arch, k)
    x = torch.rand(3, nets[0].in_channels, 32, 32)
    cases = 0
    for seed, empty in ((0, None), (1, TASKS[:k][:1])):  # seed 1: group "A" present but empty
        cases += _check_outputs(_merged(nets, seed, empty), x)
    assert cases == 2 * len(LAYOUTS) * (2 ** k - 1)


def test_depth_takeover_heads_on_earlier_layers():
    nets = _depth_nets()
    net = _merged(nets, 3)
    assert net.head_layers == {"A": "conv2", "B": "fc2", "C": "fc3"}
    _check_outputs(net, torch.rand(2, 1, 32, 32))
    assert len(fuse(net, "A").layers) == 2 and len(fuse(net, "A+B").layers) == 4
    assert fuse(net, "A+C").head_at == (1, 4) and net.subset_model(["A", "C"]).head_at == (1, 4)


def _flops(model: nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


@pytest.mark.parametrize("arch", ["lenet5", "vgg16"])
def test_fused_flops_and_params_match_the_analytic_counts(arch):
    """FlopCounterMode: layout "exact" costs exactly subset_costs (the grouped net); layout "dense"
    exactly fused_costs, which is more wherever a layer holds groups that do not read each other."""
    nets = _nets(arch, 3 if arch == "lenet5" else 2)
    tasks = TASKS[:len(nets)]
    cases = [(_merged(nets, 2), True), (fully_shared(nets, tasks), False), (from_single(nets[0], "A"), False)]
    if arch == "lenet5":
        cases.append((_merged(_depth_nets(), 4), True))
    for net, has_zero_blocks in cases:
        x = torch.rand(1, net.geometry.in_channels, 32, 32)
        grouped = subset_costs(net)
        dense = fused_costs(net.geometry, net.group_widths())
        for subset in grouped:
            exact, fused = fuse(net, subset, "exact"), fuse(net, subset, "dense")
            assert _flops(exact, x) == grouped[subset]["flops"]
            assert _flops(fused, x) == dense[subset]["flops"]
            assert sum(p.numel() for p in exact.parameters()) == grouped[subset]["params"]
            assert sum(p.numel() for p in fused.parameters()) == dense[subset]["params"]
        more = [dense[s]["flops"] > grouped[s]["flops"] for s in grouped]
        assert all(more) if has_zero_blocks else dense == grouped


def test_torch_compile_captures_one_graph():
    """Dynamo must capture the whole forward as one graph (backend aot_eager: no C++ compiler, a few
    seconds). torch.export with a dynamic batch: tests/export/test_subset.py (the .pt2 export)."""
    fused = fuse(_merged(_nets("lenet5", 2), 0), "A+B")
    compiled = torch.compile(fused, fullgraph=True, backend="aot_eager", dynamic=False)
    x = torch.rand(2, 1, 32, 32)
    for y, ref in zip(compiled(x), fused(x)):
        torch.testing.assert_close(y, ref, rtol=0, atol=1e-5)


def test_dynamic_quantisation_accepts_it():
    net = _merged(_nets("lenet5", 2), 0)
    fused = fuse(net, "A+B")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.ao.quantization is deprecated
        warnings.simplefilter("ignore", UserWarning)
        q = torch.ao.quantization.quantize_dynamic(fused, {nn.Linear}, dtype=torch.qint8)
    dynamic = [m for m in q.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert len(dynamic) == 4  # fc1, fc2 and the two heads
    x = torch.rand(4, 1, 32, 32)
    for y, ref in zip(q(x), fused(x)):
        assert y.shape == ref.shape and torch.isfinite(y).all()
        assert (y - ref).abs().max() < 0.05 * ref.abs().max() + 1e-3  # int8 rounding only


def test_separate_nets_and_latency_helpers():
    nets = _nets("lenet5", 2)
    singles = {t: from_single(n, t) for t, n in zip("AB", nets)}
    both = fuse_separate(singles, "A+B")
    x = torch.rand(2, 1, 32, 32)
    for y, net, t in zip(both(x), nets, "AB"):
        torch.testing.assert_close(y, net(x), rtol=0, atol=1e-5)
    lat = measure_fused_latency(_merged(nets, 0), batch=2, threads=1, min_run_time=0.001)
    assert list(lat) == ["A", "B", "A+B"] and all(v > 0 for v in lat.values())


def test_bad_subset_and_layout():
    net = _merged(_nets("lenet5", 2), 0)
    with pytest.raises(StructureError, match=r"unknown task subset 'B\+A'; valid subsets: A, B, A\+B"):
        fuse(net, "B+A")
    with pytest.raises(ConfigError, match="layout"):
        fuse(net, "A", "sparse")
