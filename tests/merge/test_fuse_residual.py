"""Fused subset models of residual merged nets (merge.fuse): references are the merged net's own
forward(x, subset) for the outputs (the grouped blocks: one conv/BN per group, the shortcut added
group by group), torch.utils.flop_counter.FlopCounterMode for the FLOPs, and torch.export for
"an ordinary module". Tiny ResNet-18s (4-8-16-32 channels, 8x8 pictures) keep each test fast."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pam_explorer.core.errors import StructureError
from pam_explorer.core.subsets import subset_masks
from pam_explorer.cost.analytic import fused_costs, subset_costs
from pam_explorer.merge.build import from_single, fully_shared, merge_networks
from pam_explorer.merge.fuse import LAYOUTS, FusedNet, fuse
from pam_explorer.zoo import build_model
from tests.helpers import random_grouping, randomise_bn, tiny_resnets

SIZE = 8
TASKS = "ABC"


def _merged(k: int, seed: int, empty: tuple[str, ...] | None = ("A",), nets=None):
    nets = nets or tiny_resnets(k, seed=seed, size=SIZE)
    return merge_networks(nets, TASKS[:k], random_grouping(nets, TASKS[:k], seed, empty=empty)).eval()


def _x(n: int = 3) -> torch.Tensor:
    return torch.rand(n, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(11))


def _check_outputs(net, layouts=LAYOUTS) -> int:
    """Every subset: fused outputs == net(x, subset) to 1e-5; returns the number of cases."""
    x, n = _x(), 0
    for subset in subset_masks(net.tasks):
        ref = net(x, subset.split("+"))
        for layout in layouts:
            fused = fuse(net, subset, layout)
            out = fused(x)
            assert fused.tasks == tuple(subset.split("+")) and len(out) == len(fused.tasks)
            for t, y in zip(fused.tasks, out):
                torch.testing.assert_close(y, ref[t], rtol=0, atol=1e-5)
            n += 1
    return n


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_residual_fused_outputs_equal_grouped_for_every_subset(k, layout):
    """Random groups (group "A" present but empty) in every stream and inner conv."""
    assert _check_outputs(_merged(k, seed=k), (layout,)) == 2 ** k - 1


def test_residual_dense_layout_is_one_conv_per_module_layer_with_the_block_wiring():
    net = _merged(2, seed=5, empty=None)
    fused = fuse(net, "B")
    assert fused.layer_names == net.module_layers and fused.wired
    convs = [m for m in fused.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == len(net.module_layers)
    assert [type(m) for m in fused.modules() if isinstance(m, nn.Linear)] == [nn.Linear]  # B's head
    names = fused.layer_names
    i = names.index("layer2_0_conv2")  # reads its conv1, adds the downsample, then ReLU
    assert fused.wiring[i] == (names.index("layer2_0_conv1"), names.index("layer2_0_downsample"))
    assert fused.wiring[names.index("layer2_0_downsample")] == (names.index("layer1_1_conv2"), -1)
    assert fused.wiring[names.index("layer1_0_conv2")][1] == names.index("conv1")  # the stem's identity
    assert [type(m).__name__ for m in fused.posts[str(len(names) - 1)]] == ["ReLU", "AdaptiveAvgPool2d"]
    widths = net.group_widths()["layer2"]  # the stream of layer2_0_conv2: B's groups only
    assert widths["A"] > 0 and convs[i].out_channels == widths["B"] + widths["A+B"]


def test_residual_7x7_stem_with_max_pool():
    torch.manual_seed(3)
    nets = [randomise_bn(build_model("resnet18", 2 + t, 1, 16, width=1 / 16, small_input=False), t).eval()
            for t in range(2)]
    net = merge_networks(nets, "AB", random_grouping(nets, "AB", 6)).eval()
    assert any(isinstance(m, nn.MaxPool2d) for m in fuse(net, "A").layers[0].modules())
    x = torch.rand(2, 1, 16, 16)
    for subset in ("A", "A+B"):
        ref = net(x, subset.split("+"))
        for t, y in zip(subset.split("+"), fuse(net, subset)(x)):
            torch.testing.assert_close(y, ref[t], rtol=0, atol=1e-5)


def _flops(model: nn.Module) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(_x(1))
    return counter.get_total_flops()


def _check_costs(net, has_zero_blocks: bool) -> None:
    """FlopCounterMode and the parameter count: layout "exact" == subset_costs (the grouped net),
    "dense" == fused_costs, which is more wherever a layer holds groups that do not read each other."""
    grouped = subset_costs(net)
    dense = fused_costs(net.geometry, net.group_widths())
    for subset in grouped:
        exact, fused = fuse(net, subset, "exact"), fuse(net, subset, "dense")
        assert _flops(exact) == grouped[subset]["flops"]
        assert _flops(fused) == dense[subset]["flops"]
        assert sum(p.numel() for p in exact.parameters()) == grouped[subset]["params"]
        assert sum(p.numel() for p in fused.parameters()) == dense[subset]["params"]
    more = [dense[s]["flops"] > grouped[s]["flops"] for s in grouped]
    assert all(more) if has_zero_blocks else dense == grouped


@pytest.mark.parametrize("k", [2, 3])
def test_residual_fused_flops_and_params_match_the_analytic_counts(k):
    _check_costs(_merged(k, seed=k + 1, empty=None), True)


def test_residual_b1_and_b2_forms_fuse_without_zero_blocks():
    nets = tiny_resnets(2, seed=2, size=SIZE)
    _check_costs(fully_shared(nets, "AB").eval(), False)
    single = from_single(nets[1], "B").eval()
    _check_costs(single, False)
    with torch.no_grad():
        torch.testing.assert_close(fuse(single, "B")(_x())[0], nets[1](_x()), rtol=0, atol=1e-5)


def test_pruned_residual_net_fuses_exactly():
    """After removing channels from two streams (each from its stem or downsample, every conv2
    and every block output at once), from an inner conv, and a whole inner group, fused ==
    grouped and FLOPs == the counts."""
    net = _merged(2, seed=7, empty=None)
    before = subset_costs(net)["A+B"]["flops"]
    for layer in ("layer1", "layer3", "layer2_1_conv1"):
        key = max(net.group_widths()[layer], key=lambda k: net.width(layer, k))
        net.remove_neurons(layer, key, list(range(1, net.width(layer, key), 2)))
    net.remove_neurons("layer4_0_conv1", "B", [])  # a group emptied by pruning
    assert net.width("layer4_0_conv1", "B") == 0 and subset_costs(net)["A+B"]["flops"] < before
    assert _check_outputs(net) == 3 * len(LAYOUTS)
    _check_costs(net, True)


def test_torch_export_accepts_a_residual_fused_model():
    """torch.export with a dynamic batch; the exported program equals net(x, subset)."""
    net = _merged(2, seed=1)
    fused = fuse(net, "A+B")
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(fused, (_x(2),), dynamic_shapes={"x": {0: batch}})
    x = _x(5)
    ref = net(x, ["A", "B"])
    for t, y in zip("AB", program.module()(x)):
        torch.testing.assert_close(y, ref[t], rtol=0, atol=1e-5)


def test_bad_wiring_is_refused():
    fused = fuse(_merged(2, seed=1), "A")
    layers, heads = list(fused.layers), list(fused.heads)
    with pytest.raises(StructureError, match="earlier source"):
        FusedNet(fused.tasks, layers, heads, fused.head_at, fused.groups, "dense", fused.layer_names,
                 [(0, -1)] * len(layers))
