"""Pruning residual nets: Taylor importance of coupled channels equals one explicit gate shared by
every coupled module (autograd reference); VIB folds exactly; P1/P2 prune merged ResNets and a
single one (B1), removing coupled channels together, with FLOPs still FlopCounterMode's."""
import pytest
import torch
from torch.testing import assert_close

from pam_explorer.core.errors import StructureError
from pam_explorer.core.subsets import all_subsets, subset_key
from pam_explorer.cost.analytic import subset_costs
from pam_explorer.merge.build import from_single, merge_networks
from pam_explorer.merge.merged_net import MergedNet
from pam_explorer.prune import PruneConfig, TaskData, get_pruner, taylor_importance
from pam_explorer.prune.base import BatchStream, apply_removal, subgraph_groups
from pam_explorer.prune.taylor import per_sample_task_loss
from pam_explorer.prune.vib import VIBGates, fold_gates, train_gates
from tests.helpers import measured, random_grouping, tiny_resnets
from tests.prune.prune_fixtures import TASKS, synthetic


def merged(seed: int = 0) -> MergedNet:
    nets = tiny_resnets(2, seed=seed, size=32, outputs=(2, 1))
    return merge_networks(nets, TASKS, random_grouping(nets, TASKS, seed))


def shared_gate_reference(net: MergedNet, task: str, images, targets) -> dict:
    """One explicit per-sample gate (N, C) = 1 per neuron-layer group, multiplying the output of
    that group in every module layer of the neuron layer; (g * dL/dg)^2 averaged over samples."""
    net.eval()
    gates = {g: torch.ones(images.shape[0], net.width(*g), requires_grad=True)
             for g in subgraph_groups(net, task)}
    hooks = [net.groups[m][g[1]].register_forward_hook(
        lambda mod, i, out, gate=gate: out * gate[:, :, None, None])
        for g, gate in gates.items() for m in net.members(g[0])]
    loss = per_sample_task_loss(net(images, [task])[task], targets)
    grads = torch.autograd.grad(loss, list(gates.values()))
    for h in hooks:
        h.remove()
    return {g: (gate.detach() * grad).pow(2).mean(0) for (g, gate), grad in zip(gates.items(), grads)}


@pytest.mark.parametrize("task", TASKS)
def test_taylor_importance_is_one_gate_per_coupled_channel(task):
    net = merged()
    images, targets = synthetic(6, seed=1)
    got = taylor_importance(net, task, [(images, targets[task])], mode="sample")  # per-sample gates
    want = shared_gate_reference(net, task, images, targets[task])
    assert set(got) == set(want) and any(layer == "layer2" for layer, _ in got)
    for g in want:
        assert_close(got[g], want[g], rtol=1e-4, atol=1e-12)


def test_vib_gates_fold_exactly_and_score_per_neuron_layer():
    net = merged(1)
    data = TaskData(synthetic(32, 2), synthetic(16, 3), synthetic(16, 4))
    gates = VIBGates(net)
    assert ("conv1", "A+B") not in gates.positions  # the stem's ReLU output is also added: not gated
    assert {("layer2_0_downsample", "A+B"), ("layer2_1_conv2", "A+B")} <= set(gates.positions)
    train_gates(net, gates, data, PruneConfig(vib_epochs=1, batch_size=16), BatchStream(32, 16, 0))
    x = data.val[0]
    gates.attach(net.eval())
    gated = net(x)
    fold_gates(net, gates)
    assert not any(mod._forward_hooks for mods in net.groups.values() for mod in mods.values())
    for t, out in net(x).items():
        assert_close(out, gated[t], atol=1e-5, rtol=1e-5)
    scores = gates.scores()
    assert set(scores) == {g for t in TASKS for g in subgraph_groups(net, t)}
    stream = [p for p in gates.positions if net.geometry.grouping_of(p[0]) == "layer2" and p[1] == "A+B"]
    total = sum(torch.exp(-(gates.params(p)[1] - torch.log(gates.params(p)[0] ** 2 + 1e-12))) for p in stream)
    assert_close(scores[("layer2", "A+B")], total.detach().float(), rtol=1e-4, atol=0)


def test_a_removal_plan_is_checked_as_a_whole_before_any_change():
    net = merged(2).eval()
    widths = net.group_widths()
    bad = {("layer3_1_conv1", "A+B"): list(range(widths["layer3_1_conv1"]["A+B"]))}  # the stream's
    before = {k: v.clone() for k, v in net.state_dict().items()}  # A+B conv2 would lose its input
    with pytest.raises(StructureError, match="layer3_1_conv2"):
        apply_removal(net, bad, None)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    plan = {(layer, "A"): list(range(widths[layer]["A"]))
            for layer in ("layer3", "layer3_1_conv1", "layer4_0_conv1")}
    apply_removal(net, plan, None)
    assert all(net.width(layer, "A") == 0 for layer, _ in plan)
    for sub in all_subsets(TASKS):
        assert measured(net, sub)[0] == subset_costs(net)[subset_key(sub)]["flops"]


@pytest.mark.parametrize("method", ["taylor", "vib"])
def test_prunes_merged_resnets_keeping_coupled_channels_together(method):
    net = merged(3)
    data = TaskData(synthetic(48, 5), synthetic(24, 6), synthetic(24, 7))
    cfg = PruneConfig(max_steps=4, finetune_batches=1, final_finetune_epochs=0, score_batches=1,
                      batch_size=16, vib_epochs=1, step_fraction=0.2, delta=100.0, flops_weight=0.0,
                      schedule="floor-greedy")
    result = get_pruner(method).prune(net, data, cfg)
    pruned = result.net
    assert sum(row["removed"] for row in result.log if row["accepted"]) > 0
    assert subset_costs(pruned)["A+B"]["flops"] < subset_costs(net)["A+B"]["flops"]
    for layer in pruned.layer_names:  # coupled module layers stay equally wide
        assert len({tuple(pruned.groups[m][k][0].out_channels for k in pruned.groups[m])
                    for m in pruned.members(layer)}) == 1
    for sub in all_subsets(TASKS):
        assert measured(pruned, sub)[0] == subset_costs(pruned)[subset_key(sub)]["flops"]


def test_prunes_a_single_resnet_b1():
    net = from_single(tiny_resnets(1, size=32, outputs=(2,))[0], "A")
    data = TaskData(*(synthetic(n, s, ("A",)) for n, s in ((32, 8), (16, 9), (16, 10))))
    cfg = PruneConfig(max_steps=2, finetune_batches=1, final_finetune_epochs=0, score_batches=1,
                      batch_size=16, step_fraction=0.2, delta=100.0, schedule="floor-greedy")
    pruned = get_pruner("taylor").prune(net, data, cfg).net
    assert subset_costs(pruned)["A"]["flops"] < subset_costs(net)["A"]["flops"]
    assert measured(pruned, ("A",))[0] == subset_costs(pruned)["A"]["flops"]
