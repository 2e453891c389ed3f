"""B1: one K = 1 MergedNet per task, reproducing its network (to float32 rounding: the merged
net's forward is another code path than the network's)."""
import pytest
import torch
from torch import nn
from torch.testing import assert_close

from pam_explorer.baselines import separate_nets
from pam_explorer.zoo import build_model


def test_separate_nets_reproduce_each_network():
    torch.manual_seed(0)
    nets = [build_model("lenet5", 3, 1, 32, width=0.5).eval(),
            build_model("lenet5", 2, 1, 32, width=1.0).eval()]
    out = separate_nets(nets, ["A", "B"])
    x = torch.rand(8, 1, 32, 32)
    assert list(out) == ["A", "B"]
    for net, (task, merged) in zip(nets, out.items()):
        assert merged.tasks == (task,)
        assert all(list(groups) == [task] for groups in merged.groups.values())
        with torch.no_grad():
            assert_close(merged(x)[task], net(x))  # two code paths: equal to float32 rounding


def test_separate_vgg_with_batchnorm():
    torch.manual_seed(1)
    net = build_model("vgg16", 2, 3, 32, width=0.0625, fc_width=16)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 1.5)
    net.eval()
    merged = separate_nets([net], ["T"])["T"]
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert_close(merged(x)["T"], net(x))


def test_separate_nets_rejects_mismatch():
    net = build_model("lenet5", 2, 1, 32, width=0.5)
    with pytest.raises(ValueError, match="one network per task"):
        separate_nets([net], ["A", "B"])
    with pytest.raises(ValueError):
        separate_nets([net, net], ["A", "A"])
