"""P2 Taylor importance: equals explicit per-sample gates g = 1 with autograd; prunes real nets."""
import copy

import pytest
import torch
from torch.testing import assert_close

from pam_explorer.core.config import DataConfig
from pam_explorer.core.geometry import check_structure
from pam_explorer.cost.analytic import subset_costs
from pam_explorer.data import load_preset_data
from pam_explorer.merge.build import from_single, fully_shared
from pam_explorer.merge.merged_net import MergedNet
from pam_explorer.prune import PruneConfig, TaskData, get_pruner, taylor_importance
from pam_explorer.prune.base import BatchStream, subgraph_groups
from pam_explorer.prune.taylor import per_sample_task_loss
from pam_explorer.zoo import build_model
from pam_explorer.zoo.pretrained import has_pretrained, load_pretrained
from tests.prune.prune_fixtures import TASKS, merged_net


def batches(n_batches: int, n: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, 1, 32, 32, generator=gen), (torch.rand(n, 2, generator=gen) > 0.5).float())
            for _ in range(n_batches)]


def gate_reference(net: MergedNet, task: str, data, mode: str) -> dict:
    """Explicit gates g = 1 on every group output: per sample (N, C) ("sample") or one per
    neuron shared by the batch (C,) with the batch's mean loss ("batch", Molchanov 2019);
    (g * dL/dg)^2 summed, then averaged over the samples or the batches."""
    total, count = {}, 0
    net.eval()
    for images, targets in data:
        shape = (images.shape[0],) if mode == "sample" else (1,)
        gates = {g: torch.ones(*shape, net.width(*g), requires_grad=True) for g in subgraph_groups(net, task)}
        hooks = [net.groups[g[0]][g[1]].register_forward_hook(
            lambda m, i, out, gate=gate: out * gate.reshape(*gate.shape, *[1] * (out.dim() - 2)))
            for g, gate in gates.items()]
        loss = per_sample_task_loss(net(images, [task])[task], targets)
        if mode == "batch":
            loss = loss / images.shape[0]
        grads = torch.autograd.grad(loss, list(gates.values()))
        for h in hooks:
            h.remove()
        for g, gate, grad in zip(gates, gates.values(), grads):
            total[g] = total.get(g, 0) + (gate.detach() * grad).pow(2).sum(0)
        count += images.shape[0] if mode == "sample" else 1
    return {g: v / count for g, v in total.items()}


@pytest.mark.parametrize("mode", ["batch", "sample"])
@pytest.mark.parametrize("task", TASKS)
def test_importance_equals_explicit_gate_gradients(task, mode):
    net = merged_net()
    data = [(x, y[:, :2] if task == "A" else y[:, :1]) for x, y in batches(2, 6, seed=3)]
    got = taylor_importance(net, task, data, mode)
    want = gate_reference(net, task, data, mode)
    assert set(got) == set(want) == set(subgraph_groups(net, task))
    assert all(task in key.split("+") for _, key in got)
    for g in want:
        assert_close(got[g], want[g], rtol=1e-4, atol=1e-10)
    assert any(v.abs().sum() > 0 for v in got.values())


def test_scoring_leaves_the_net_unchanged():
    net = merged_net().train()
    before = copy.deepcopy(net.state_dict())
    taylor_importance(net, "A", batches(1, 4, seed=1))
    assert net.training and not net.groups["conv1"]["A+B"]._forward_hooks
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters())


def test_dead_neuron_scores_zero():
    net = merged_net()
    core = net.groups["fc1"]["A+B"][0]
    with torch.no_grad():  # ReLU(0 * x + 0) = 0: the neuron never contributes
        core.weight[0].zero_()
        core.bias[0] = 0.0
    imp = taylor_importance(net, "A", [(x, y) for x, y in batches(1, 8, seed=2)])
    assert imp[("fc1", "A+B")][0] == 0
    assert imp[("fc1", "A+B")][1:].sum() > 0


def test_sharing_scope_scores_other_tasks_neurons_of_a_shared_net():
    nets = []
    for t, n_out in enumerate((2, 1)):
        torch.manual_seed(t)
        nets.append(build_model("lenet5", n_out, 1, 32, width=0.5))
    net = fully_shared(nets, TASKS)
    x, y = batches(1, 16, seed=4)[0]
    data = TaskData((x, {"A": y, "B": y[:, :1]}), (x, {"A": y, "B": y[:, :1]}), (x, {"A": y, "B": y[:, :1]}))
    pruner = get_pruner("taylor")
    own = pruner.importance(net, "A", data, PruneConfig(score_batches=1, batch_size=16, score_scope="task"),
                            BatchStream(16, 16, 0))
    both = pruner.importance(net, "A", data,
                             PruneConfig(score_batches=1, batch_size=16, score_scope="sharing"),
                             BatchStream(16, 16, 0))
    for layer in net.layer_names:
        origin_b = torch.tensor([o == 1 for o, _ in net.provenance(layer, "A+B")])
        # B's neurons reach A's head only through zero-initialised connections: 0 for A alone
        assert torch.all(own[(layer, "A+B")][origin_b] == 0)
        assert both[(layer, "A+B")][origin_b].sum() > 0  # (a few are dead ReLUs: 0 for both)
        assert_close(both[(layer, "A+B")][~origin_b], own[(layer, "A+B")][~origin_b])


@pytest.mark.skipif(not has_pretrained("digits-2task", TASKS), reason="no pre-trained digits nets")
def test_prunes_a_pretrained_lenet_within_delta():
    from pam_explorer.data import get_preset
    splits = load_preset_data("digits-2task", DataConfig(n_train=600, n_val=200, n_test=200))
    data = TaskData.from_splits(splits, get_preset("digits-2task"))
    net = from_single(load_pretrained("digits-2task", TASKS)[1], "B")
    cfg = PruneConfig(delta=1.0, step_fraction=0.2, finetune_batches=5, final_finetune_epochs=1,
                      batch_size=64, score_batches=2, max_steps=6, device="cpu", schedule="floor-greedy")
    res = get_pruner("taylor").prune(net, data, cfg)
    assert any(r["accepted"] for r in res.log)
    for r in res.log:  # the fair rule, as logged
        assert r["accepted"] == (r["val_accuracy"]["B"] >= res.reference_accuracy["B"] - cfg.delta - 1e-9)
    assert subset_costs(res.net)["B"]["flops"] < subset_costs(net)["B"]["flops"]
    check_structure(res.net.tasks, res.net.layer_names, res.net.group_widths())
    assert res.test_accuracy["B"] > 80.0
