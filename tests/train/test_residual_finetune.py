"""Joint finetuning of a merged residual net: a shared parameter's gradient is the mean of the
per-task gradients (reference: autograd on each task's loss alone)."""
import torch
from torch.testing import assert_close

from pam_explorer.core.config import FinetuneConfig
from pam_explorer.merge.build import merge_networks
from pam_explorer.train.finetune import finetune, joint_loss, scale_gradients
from tests.helpers import random_grouping, tiny_resnets
from tests.prune.prune_fixtures import synthetic


def test_shared_gradients_are_task_averaged_and_finetune_runs():
    nets = tiny_resnets(2, size=32, outputs=(2, 1))
    net = merge_networks(nets, "AB", random_grouping(nets, "AB", 1)).train()
    images, targets = synthetic(8, 0)
    params = dict(net.named_parameters())
    per_task = {}
    for t in "AB":
        net.zero_grad()
        joint_loss(net, images, targets, [t]).backward()
        per_task[t] = {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p)
                       for n, p in params.items()}
    net.zero_grad()
    joint_loss(net, images, targets).backward()
    scale_gradients(net)
    for name in ("groups.layer2_1_conv2.A+B.0.weight", "groups.conv1.A+B.1.weight"):
        assert_close(params[name].grad, (per_task["A"][name] + per_task["B"][name]) / 2)
    own = "groups.layer2_1_conv2.A.0.weight"  # task A's exclusive group: A's gradient unchanged
    assert_close(params[own].grad, per_task["A"][own])
    before = params["groups.layer2_1_conv2.A+B.0.weight"].detach().clone()
    result = finetune(net, (images, targets), synthetic(8, 1), FinetuneConfig(epochs=1, batch_size=4))
    assert set(result.val_accuracy) == {"A", "B"}
    assert not torch.equal(before, net.groups["layer2_1_conv2"]["A+B"][0].weight)
