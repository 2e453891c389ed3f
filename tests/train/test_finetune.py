"""Joint finetuning: task-averaged gradients, no-op at zero epochs, learning, evaluation."""
import copy
import random

import pytest
import torch
from torch.testing import assert_close

import pam_explorer.train.finetune as ft
from pam_explorer.core.config import FinetuneConfig
from pam_explorer.core.subsets import all_subsets
from pam_explorer.graph.build import layer_widths
from pam_explorer.merge.build import merge_networks
from pam_explorer.train.finetune import evaluate, finetune, joint_loss, scale_gradients
from pam_explorer.zoo import build_model


def random_grouping(nets, tasks, seed: int) -> dict:
    """Random subsets per neuron; the all-task group is never empty."""
    rng = random.Random(seed)
    keys = all_subsets(tasks)
    out = {}
    for layer, widths in layer_widths(nets).items():
        total = sum(widths)
        anchor = rng.randrange(total)
        groups = {key: [] for key in keys}
        for i in range(total):
            groups[tuple(tasks) if i == anchor else rng.choice(keys)].append(i)
        out[layer] = groups
    return out


def merged_lenets(outputs=(2, 1), seed: int = 0):
    nets = []
    for t, n_out in enumerate(outputs):
        torch.manual_seed(seed + t)
        nets.append(build_model("lenet5", n_out, 1, 32, width=0.5))
    tasks = "ABC"[:len(outputs)]
    return merge_networks(nets, tasks, random_grouping(nets, tasks, seed)), tasks


def synthetic(n: int, seed: int):
    """Images = noise + a fixed pattern per positive label; task A has 2 labels, task B 1."""
    gen = torch.Generator().manual_seed(seed)
    patterns = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(99))
    labels = (torch.rand(n, 3, generator=gen) > 0.5).float()
    images = 0.5 * torch.randn(n, 1, 32, 32, generator=gen) + torch.einsum("nl,lchw->nchw", labels, patterns)
    return images, {"A": labels[:, :2], "B": labels[:, 2:]}


def _grads(net, x, y, tasks=None) -> dict[str, torch.Tensor]:
    net.zero_grad(set_to_none=True)
    joint_loss(net, x, y, tasks).backward()
    return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
            for n, p in net.named_parameters()}


def test_shared_gradients_are_task_averaged():
    net, _ = merged_lenets(seed=3)
    net.eval()
    x, y = synthetic(8, 0)
    g_a, g_b = _grads(net, x, y, ["A"]), _grads(net, x, y, ["B"])
    net.zero_grad(set_to_none=True)
    joint_loss(net, x, y).backward()
    scale_gradients(net)
    checked = set()
    for name, p in net.named_parameters():
        owner = name.split(".")[2] if name.startswith("groups.") else name.split(".")[1]
        tasks = owner.split("+")
        expected = sum((g_a if t == "A" else g_b)[name] for t in tasks) / len(tasks)
        assert_close(p.grad, expected)
        for other in {"A", "B"} - set(tasks):  # a group is not used by tasks outside its key
            assert torch.all((g_a if other == "A" else g_b)[name] == 0)
        checked.add(owner)
    assert checked == {"A", "B", "A+B"}
    shared = "groups.fc1.A+B.0.weight"
    assert_close(dict(net.named_parameters())[shared].grad, (g_a[shared] + g_b[shared]) / 2)
    assert not torch.allclose(g_a[shared] + g_b[shared], (g_a[shared] + g_b[shared]) / 2)


def test_finetune_applies_the_scaling_every_step(monkeypatch):
    calls = []
    real = ft.scale_gradients
    monkeypatch.setattr(ft, "scale_gradients", lambda net, scales=None: (calls.append(1), real(net, scales)))
    net, _ = merged_lenets()
    train, val = synthetic(40, 1), synthetic(16, 2)
    finetune(net, train, val, FinetuneConfig(epochs=2, batch_size=16, device="cpu"))
    assert len(calls) == 2 * 3  # batches of 16, 16, 8 per epoch


def test_zero_epochs_leaves_weights_and_bn_stats_untouched():
    nets = []
    for t in range(2):
        torch.manual_seed(t)
        nets.append(build_model("vgg16", 1 + t, 3, 32, width=0.0625, fc_width=16))
    net = merge_networks(nets, "AB", random_grouping(nets, "AB", 0))
    before = copy.deepcopy(net.state_dict())
    images = torch.randn(12, 3, 32, 32)
    targets = {"A": torch.ones(12, 1), "B": torch.zeros(12, 2)}
    result = finetune(net, (images, targets), (images, targets), FinetuneConfig(epochs=0, device="cpu"))
    assert result.history == [] and set(result.val_accuracy) == {"A", "B"}
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert net.training


def test_finetune_learns_a_separable_problem_and_reports_progress():
    net, tasks = merged_lenets(seed=1)
    train, val = synthetic(256, 10), synthetic(128, 11)
    before = evaluate(net, *val)
    seen = []
    config = FinetuneConfig(epochs=4, batch_size=32, lr=1e-2, seed=0, device="cpu")
    result = finetune(net, train, val, config, progress=seen.append)
    assert [r["epoch"] for r in seen] == [1, 2, 3, 4] and seen == result.history
    assert set(seen[0]) == {"epoch", "loss", "val_accuracy"}
    assert seen[-1]["loss"] < seen[0]["loss"]
    for t in tasks:
        assert result.val_accuracy[t] > max(85.0, before[t] + 15), (before, result.val_accuracy)


def test_finetune_is_seeded_bit_for_bit_on_one_machine():
    """Two finetunings with one seed give identical weights on one machine (not across machines:
    their kernels may round differently)."""
    net, _ = merged_lenets(seed=2)
    twin = copy.deepcopy(net)
    data = synthetic(48, 5)
    config = FinetuneConfig(epochs=1, batch_size=16, seed=7, device="cpu")
    finetune(net, data, data, config)
    finetune(twin, data, data, config)
    a, b = net.state_dict(), twin.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_evaluate_matches_manual_accuracy_and_validates_targets():
    net, _ = merged_lenets(outputs=(2, 1, 3), seed=4)
    x, y = synthetic(10, 3)
    y["C"] = (torch.rand(10, 3) > 0.5).float()
    acc = evaluate(net, x, y, batch_size=3)
    with torch.no_grad():
        logits = net.eval()(x)
    for t in "ABC":
        manual = ((torch.sigmoid(logits[t]) > 0.5) == (y[t] > 0.5)).float().mean().item() * 100
        assert acc[t] == pytest.approx(manual)
    assert list(evaluate(net, x, y, tasks=["B"])) == ["B"]
    with pytest.raises(ValueError, match="task 'C'.*shape"):
        evaluate(net, x, {**y, "C": torch.zeros(10, 2)})
    with pytest.raises(ValueError, match="no targets for task 'B'"):
        finetune(net, (x, {"A": y["A"]}), (x, y), FinetuneConfig(epochs=1, device="cpu"))
