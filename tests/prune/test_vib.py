"""P1 VIB gates: KL and log alpha by hand, identity gates, exact folding, training, pruning order."""
import math

import torch
from torch.testing import assert_close

from pam_explorer.core.geometry import check_structure
from pam_explorer.merge.build import merge_networks
from pam_explorer.prune import (
    PruneConfig,
    TaskData,
    VIBGates,
    fold_gates,
    get_pruner,
    kl_divergence,
    log_alpha,
)
from pam_explorer.prune.base import BatchStream, subgraph_groups
from pam_explorer.prune.vib import INIT_LOGVAR, VIBPruner, train_gates
from pam_explorer.zoo import build_model
from tests.prune.prune_fixtures import TASKS, merged_net, synthetic


def test_kl_and_log_alpha_hand_values():
    mu = torch.tensor([1.0, 2.0, 0.5])
    logvar = torch.tensor([0.0, math.log(2.0), -6.0])
    assert_close(kl_divergence(mu, logvar),
                 torch.tensor([0.5 * math.log(2.0), 0.5 * math.log(3.0),
                               0.5 * math.log1p(0.25 * math.exp(6))]))
    assert_close(log_alpha(mu, logvar),
                 torch.tensor([0.0, math.log(2.0) - math.log(4.0), -6.0 - math.log(0.25)]))


def test_identity_gates_leave_outputs_unchanged():
    net = merged_net()
    x = torch.randn(5, 1, 32, 32)
    want = net(x)
    gates = VIBGates(net, init_logvar=-40.0)  # mu = 1, sigma ~ 2e-9
    assert all(torch.equal(gates.params(g)[0], torch.ones(net.width(*g))) for g in gates.groups)
    gates.attach(net)
    got = net(x)  # gates sample in training mode
    gates.detach()
    for t in TASKS:
        assert_close(got[t], want[t])
    assert not any(net.groups[layer][key]._forward_hooks for layer, key in gates.groups)


def test_eval_gates_are_their_mean_and_fold_exactly():
    net = merged_net()
    gates = VIBGates(net)
    with torch.no_grad():
        for g in gates.groups:
            mu = gates.params(g)[0]
            mu.copy_(torch.randn(mu.shape))  # negative and near-zero means too
            gates.params(g)[1].fill_(2.0)  # large noise: eval must ignore it
    x = torch.randn(4, 1, 32, 32)
    gates.eval().attach(net)
    gated = net(x)
    assert all(torch.equal(gated[t], net(x)[t]) for t in TASKS)  # deterministic in eval mode
    fold_gates(net, gates)  # detaches the hooks, then folds mu into the readers
    assert not net.groups["fc2"]["A+B"]._forward_hooks
    out = net(x)
    for t in TASKS:
        assert_close(out[t], gated[t], rtol=1e-5, atol=1e-5)
    gates.attach(net)  # gating the folded net again would apply mu twice: folding did act
    assert not torch.allclose(net(x)["A"], gated["A"])
    gates.detach()


def test_reader_columns_cover_every_reader():
    net = merged_net()
    for layer in net.layer_names:
        for key in net.groups[layer]:
            for core, start, factor in net.reader_columns(layer, key):
                assert start + factor * net.width(layer, key) <= core.weight.shape[1]
    last = net.layer_names[-1]
    assert len(net.reader_columns(last, "A+B")) == 2  # both heads read the shared group


def test_gate_training_lowers_kl_and_scores_subgraph():
    net = merged_net()
    data = TaskData(synthetic(128, 1), synthetic(32, 2), synthetic(32, 3))
    gates = VIBGates(net)
    kl0 = float((gates.kl("A") + gates.kl("B")).detach())
    cfg = PruneConfig(vib_epochs=3, batch_size=32, kl_weight=1e-2, vib_lr=5e-2, device="cpu")
    events = []
    train_gates(net, gates, data, cfg, BatchStream(128, 32, 0), events.append)
    assert [e["epoch"] for e in events] == [1, 2, 3] and not gates.training
    assert float((gates.kl("A") + gates.kl("B")).detach()) < kl0
    la = torch.cat([log_alpha(*gates.params(g)) for g in gates.groups])
    assert la.max() > INIT_LOGVAR + 0.5  # noise grew somewhere
    scores = gates.scores()
    pruner = VIBPruner()
    n_above = pruner.forced_count(net, "A", scores, PruneConfig(log_alpha_threshold=-100.0))
    assert n_above == sum(net.width(*g) for g in subgraph_groups(net, "A"))
    assert pruner.forced_count(net, "A", scores, PruneConfig(log_alpha_threshold=100.0)) == 0


def test_shared_gate_gradient_is_task_averaged():
    net = merged_net()
    gates = VIBGates(net)
    shared, only_a = ("fc1", "A+B"), ("fc1", "A")
    kl = gates.kl("A") + gates.kl("B")  # the shared group's KL counts once per task
    kl.backward()
    gates.scale_grads()
    assert_close(gates.params(shared)[1].grad[0], gates.params(only_a)[1].grad[0])


def test_vib_prune_removes_high_log_alpha_first():
    net = merged_net()
    data = TaskData(synthetic(96, 1), synthetic(48, 2), synthetic(48, 3))
    cfg = PruneConfig(delta=100.0, vib_epochs=2, batch_size=32, kl_weight=1e-2, vib_lr=5e-2,
                      finetune_batches=1, final_finetune_epochs=0, max_steps=2, device="cpu",
                      log_alpha_threshold=-100.0, schedule="floor-greedy")
    # every neuron "above": the first step takes all it may
    res = get_pruner("vib").prune(net, data, cfg)
    first = res.log[0]
    assert first["task"] == "A" and first["accepted"]
    # all of A's subgraph that can go without cutting a path went in one step
    widths = first["widths"]
    assert all(sum(widths[layer][k] for k in widths[layer] if "A" in k.split("+")) >= 1
               for layer in net.layer_names)
    assert first["removed"] > 0.5 * sum(net.width(*g) for g in subgraph_groups(net, "A"))
    check_structure(res.net.tasks, res.net.layer_names, res.net.group_widths())


def test_fold_gates_exact_when_heads_read_different_layers():
    """Merged from different depths: A's head reads fc2, which is not the last layer."""
    torch.manual_seed(0)
    nets = [build_model("lenet5", 2, 1, 32, width=0.5),
            build_model("lenet5", 1, 1, 32, width=0.5, extra_fc=1)]
    from pam_explorer.merge.build import shared_grouping
    net = merge_networks(nets, TASKS, shared_grouping(nets, TASKS)).eval()
    assert any(core is net.heads["A"] for core, _, _ in net.reader_columns("fc2", "A+B"))
    gates = VIBGates(net)
    with torch.no_grad():
        for g in gates.groups:
            gates.params(g)[0].copy_(torch.randn(gates.params(g)[0].shape))
    x = torch.randn(4, 1, 32, 32)
    gates.eval().attach(net)
    gated = net(x)
    fold_gates(net, gates)
    out = net(x)
    for t in TASKS:
        assert_close(out[t], gated[t], rtol=1e-5, atol=1e-5)


def test_scores_are_mu2_over_sigma2_and_rank_high_log_alpha_lowest():
    """scores = mu^2 / sigma^2 = exp(-log alpha) by hand: the noisiest gate (largest log alpha)
    has the lowest score, i.e. goes first."""
    net = merged_net()
    gates = VIBGates(net)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for g in gates.groups:
            mu, logvar = gates.params(g)
            mu.copy_(torch.rand(mu.shape, generator=gen) + 0.5)
            logvar.copy_(torch.rand(logvar.shape, generator=gen) * 8 - 6)
    scores = gates.scores()
    for g in gates.groups:
        mu, logvar = (p.detach() for p in gates.params(g))
        assert_close(scores[g], mu.pow(2) / logvar.exp())
    flat_scores = torch.cat([scores[g] for g in gates.groups])
    flat_la = torch.cat([log_alpha(*gates.params(g)).detach() for g in gates.groups])
    assert int(flat_scores.argmin()) == int(flat_la.argmax())


def test_vib_driver_removes_the_noisiest_neuron_first(monkeypatch):
    """Through the pruning driver: gates set by hand (one noisy neuron in fc1's group "A", every
    other gate nearly noiseless), one single-neuron step for task A removes exactly that neuron."""
    import pam_explorer.prune.vib as vib
    noisy = ("fc1", "A", 2)

    def hand_gates(net, gates, data, config, stream, progress=None):
        with torch.no_grad():
            for g in gates.groups:
                gates.params(g)[1].fill_(-6.0)
            gates.params(noisy[:2])[1][noisy[2]] = 0.0  # log alpha 0 > -6 everywhere else
    monkeypatch.setattr(vib, "train_gates", hand_gates)
    net = merged_net()
    data = TaskData(synthetic(32, 1), synthetic(16, 2), synthetic(16, 3))
    cfg = PruneConfig(delta=100.0, step_fraction=1e-3, min_step=1, vib_epochs=1, finetune_batches=0,
                      final_finetune_epochs=0, max_steps=1, batch_size=16, flops_weight=0.0,
                      log_alpha_threshold=100.0, device="cpu", schedule="floor-greedy")
    res = get_pruner("vib").prune(net, data, cfg)
    assert [(r["task"], r["removed"], r["accepted"]) for r in res.log] == [("A", 1, True)]
    gone = set(net.provenance("fc1", "A")) - set(res.net.provenance("fc1", "A"))
    assert gone == {net.provenance("fc1", "A")[noisy[2]]}
