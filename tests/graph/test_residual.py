"""Residual layer map (PAM Sec. 5.3): module layers, coupled neuron layers, wiring, activations
(reference: the torchvision blocks run by hand)."""
import json

import pytest
import torch
from torch.nn import functional as F
from torch.testing import assert_close

from pam_explorer.core.errors import StructureError
from pam_explorer.core.geometry import NetGeometry, check_widths
from pam_explorer.graph.activations import capture_activations
from pam_explorer.graph.build import chain_geometry, layer_widths, net_geometry
from pam_explorer.graph.layer_map import layer_map
from pam_explorer.zoo import build_model
from tests.helpers import tiny_resnets


@pytest.mark.parametrize("small", [True, False])
def test_stage_streams_couple_shortcuts_and_the_stem(small):
    net = build_model("resnet18", 2, 3, 32, width=1 / 16, small_input=small)
    geo = net_geometry([net], "A")
    assert geo.kind == "residual"
    assert geo.members("layer1") == ["conv1", "layer1_0_conv2", "layer1_1_conv2"]  # no downsample in layer1
    assert geo.members("layer2") == ["layer2_0_downsample", "layer2_0_conv2", "layer2_1_conv2"]
    assert geo.neuron_layers[:4] == ["layer1", "layer1_0_conv1", "layer1_1_conv1", "layer2_0_conv1"]
    assert len(geo.neuron_layers) == 4 + 8 and len(geo.layers) == 1 + 8 * 2 + 3
    assert geo.members("layer3_1_conv1") == ["layer3_1_conv1"]
    # wiring: conv2 reads conv1 and adds the block input; the downsample reads the previous stream
    assert geo.input_of("layer2_0_conv1") == geo.input_of("layer2_0_downsample") == "layer1"
    assert geo.input_of("layer2_0_conv2") == "layer2_0_conv1"
    by_name = {lg.name: lg for lg in geo.layers}
    assert by_name["layer1_0_conv2"].add == "conv1" and by_name["layer2_0_conv2"].add == "layer2_0_downsample"
    assert by_name["layer2_1_conv2"].add == "layer2_0_conv2"
    assert [s[0] for s in by_name["layer4_1_conv2"].post] == ["ReLU", "AdaptiveAvgPool2d"]
    assert geo.head_layers == ("layer4_1_conv2",) and geo.head_factor("A") == 1


def test_resnet34_blocks_and_json_round_trip():
    geo = net_geometry(tiny_resnets(2, arch="resnet34"), "AB")
    assert len(geo.members("layer3")) == 1 + 6 and len(geo.neuron_layers) == 4 + 16
    assert NetGeometry.from_dict(json.loads(json.dumps(geo.to_dict()))) == geo


def test_chain_geometry_serialises_without_wiring():
    raw = chain_geometry([build_model("lenet5", 2)], "A").to_dict()
    assert not {"source", "grouping", "add", "post"} & set(raw["layers"][0])


def test_layer_map_and_widths_are_the_neuron_layers():
    nets = tiny_resnets(2)
    geo = net_geometry(nets, "AB")
    infos = layer_map(nets[0])
    assert [i.name for i in infos] == geo.neuron_layers
    assert {i.name: i.width for i in infos}["layer3"] == 16
    assert {i.name: i.out_hw for i in infos}["layer4"] == (2, 2)  # before the head's pool
    assert layer_widths(nets)["layer2_1_conv1"] == [8, 8]


def test_activations_at_block_outputs_and_inner_convs():
    """The stream's activation is its last block's output (after add + ReLU), the inner conv's
    is ReLU(bn1(conv1)), both max-pooled; compared with the torchvision blocks run by hand."""
    net = tiny_resnets(1)[0]
    x = torch.randn(5, 1, 16, 16)
    acts = capture_activations(net, x)
    with torch.no_grad():
        h = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        h = net.layer1(h)
        inner = F.relu(net.layer2[1].bn1(net.layer2[1].conv1(net.layer2[0](h))))
        out2 = net.layer2(h)
    assert_close(acts["layer1"], h.amax(dim=(2, 3)))
    assert_close(acts["layer2"], out2.amax(dim=(2, 3)))
    assert_close(acts["layer2_1_conv1"], inner.amax(dim=(2, 3)))
    assert set(acts) == set(net_geometry([net], "A").neuron_layers)


def test_different_architectures_or_kinds_do_not_merge():
    with pytest.raises(StructureError, match="same blocks"):
        net_geometry([tiny_resnets(1)[0], tiny_resnets(1, arch="resnet34")[0]], "AB")
    other = build_model("resnet18", 2, 1, 16, width=1 / 16, small_input=False)
    with pytest.raises(StructureError, match="differs from network 0"):
        net_geometry([tiny_resnets(1)[0], other], "AB")
    with pytest.raises(StructureError, match="different kinds"):
        net_geometry([tiny_resnets(1)[0], build_model("lenet5", 2, 1, 16)], "AB")


def test_check_widths_follows_every_wired_edge():
    geo = net_geometry(tiny_resnets(2), "AB")
    widths = {n: {"A": 1, "B": 1, "A+B": 2} for n in geo.neuron_layers}
    check_widths(geo, widths)
    widths["layer2_1_conv1"] = {"A": 0, "B": 1, "A+B": 0}  # the stream's A channels in block 1 lose input
    with pytest.raises(StructureError, match="layer2_1_conv2.*neuron layer 'layer2'.*group 'A'"):
        check_widths(geo, widths)
    widths["layer2_1_conv1"] = {"A": 1, "B": 1, "A+B": 2}
    widths["layer4"] = widths["layer4_1_conv1"] = {"A": 0, "B": 1, "A+B": 0}
    with pytest.raises(StructureError, match="task 'A'.*no path"):
        check_widths(geo, widths)
