"""The shape probe changes nothing in the net: mode restored, BatchNorm statistics untouched."""
import copy

import torch

from pam_explorer.graph.probe import probe
from pam_explorer.zoo import build_model
from tests.helpers import randomise_bn


def test_probe_runs_one_zero_image_and_changes_nothing():
    net = randomise_bn(build_model("vgg16", 2, 3, 32, width=0.0625, fc_width=8), 0).train()
    before = copy.deepcopy(net.state_dict())
    seen = []
    probe(net, lambda x: seen.append((x.shape, x.abs().sum().item(), torch.is_grad_enabled(), net.training)))
    assert seen == [((1, 3, 32, 32), 0.0, False, False)]
    assert net.training and all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
