"""AdapMTL: components, exact soft-threshold reparameterisation, sparsity vs thresholds, the
freeze at the target, Eq. 6 and Eq. 7 by hand, ablations, effective FLOPs, and the contract."""
import copy
import math

import pytest
import torch
from torch.testing import assert_close

from pam_explorer.cost.analytic import subset_costs
from pam_explorer.merge.build import from_single, fully_shared, merge_networks
from pam_explorer.merge.merged_net import MergedNet
from pam_explorer.prune import PruneConfig, TaskData, get_pruner, list_pruners
from pam_explorer.prune.adapmtl import (
    BACKBONE,
    SHARED,
    alphas_of,
    bake,
    components,
    soft_threshold,
    sparse_forward,
    sparse_params,
    threshold_names,
)
from pam_explorer.prune.adapmtl_math import adaptive_weights, delta_t, task_deltas
from pam_explorer.prune.config import AdapMTLConfig
from pam_explorer.prune.sparse_cost import OVERALL, component_sparsity, sparsity_series, subset_flops
from tests.prune.prune_fixtures import TASKS, random_grouping, synthetic, tiny_nets


# --------------------------------------------------------------------------- fixtures
def scheme_net(scheme: str) -> MergedNet:
    nets = tiny_nets()
    if scheme == "B1":
        return from_single(nets[0], "A")
    if scheme == "B2":
        return fully_shared(nets, TASKS)
    return merge_networks(nets, TASKS, random_grouping(nets))


def task_data(tasks=TASKS) -> TaskData:
    return TaskData(synthetic(96, 1, tasks), synthetic(48, 2, tasks), synthetic(48, 3, tasks))


def config(**adapmtl) -> PruneConfig:
    base = dict(epochs=2, theta_init=-6.0, theta_lr=0.5, push=2.0, window=2)
    return PruneConfig(batch_size=32, device="cpu", adapmtl=AdapMTLConfig(**{**base, **adapmtl}))


def thetas_for(net: MergedNet, value: float, shared: bool = False) -> tuple[dict, dict, dict]:
    comps = components(net)
    owner = threshold_names(comps, shared)
    thetas = {o: torch.tensor(float(value)) for o in set(owner.values())}
    return comps, owner, thetas


# --------------------------------------------------------------------------- contract + config
def test_registry_lists_adapmtl():
    assert "adapmtl" in list_pruners()
    pruner = get_pruner("adapmtl")
    assert pruner.name == "adapmtl" and pruner.structured is False


@pytest.mark.parametrize("field,value", [
    ("target_sparsity", 0.0), ("target_sparsity", 1.0), ("target_sparsity", float("nan")),
    ("epochs", 0), ("epochs", 1.5), ("epochs", True), ("theta_init", float("inf")),
    ("theta_lr", 0.0), ("push", -1.0), ("window", 0), ("lam", 0.0), ("lam", "x"),
    ("shared_threshold", "yes"), ("adaptive_weighting", 1), ("log_every", 0)])
def test_config_validation_names_field(field, value):
    with pytest.raises(ValueError, match=f"AdapMTLConfig.{field}"):
        AdapMTLConfig(**{field: value})


def test_prune_config_accepts_only_adapmtl_config():
    assert PruneConfig(adapmtl=AdapMTLConfig(epochs=3)).adapmtl.epochs == 3
    with pytest.raises(ValueError, match="PruneConfig.adapmtl"):
        PruneConfig(adapmtl={"epochs": 3})


# --------------------------------------------------------------------------- components
def test_components_single_network():
    net = scheme_net("B1")
    comps = components(net)
    assert list(comps) == [BACKBONE, "A"]
    assert comps[BACKBONE] == [f"groups.{layer}.A.0.weight" for layer in net.layer_names]
    assert comps["A"] == ["heads.A.weight"]


def test_components_fully_shared_and_merged():
    b2 = components(scheme_net("B2"))
    assert list(b2) == [BACKBONE, "A", "B"]
    assert all(".A+B." in n for n in b2[BACKBONE]) and b2["B"] == ["heads.B.weight"]
    net = scheme_net("PAM")
    comps = components(net)
    keys = {n.split(".")[2] for n in comps[BACKBONE]}
    assert keys == {"A+B"}
    for t in TASKS:  # exclusive groups keyed t, then the head
        assert {n.split(".")[2] for n in comps[t][:-1]} == {t} and comps[t][-1] == f"heads.{t}.weight"
    every = [n for names in comps.values() for n in names]
    weights = [n for n, p in net.named_parameters() if n.endswith("weight") and p.numel() > 0]
    assert sorted(every) == sorted(weights)  # every conv/linear weight exactly once, no bias
    assert threshold_names(comps, True) == {c: SHARED for c in comps}


# --------------------------------------------------------------------------- reparameterisation
def test_soft_threshold_values_and_subgradient():
    w = torch.tensor([-0.5, -0.1, 0.0, 0.05, 0.3], requires_grad=True)
    alpha = torch.tensor(0.1, requires_grad=True)
    out = soft_threshold(w, alpha)
    assert_close(out, torch.tensor([-0.4, 0.0, 0.0, 0.0, 0.2]))
    out.sum().backward()
    assert w.grad.tolist() == [1.0, 0.0, 0.0, 0.0, 1.0]  # the mask B of Eq. 5
    assert_close(alpha.grad, torch.tensor(0.0))  # -sign(W) summed over survivors: -(-1) - 1


@pytest.mark.parametrize("scheme", ["B1", "B2", "PAM"])
def test_threshold_at_minus_infinity_prunes_nothing(scheme):
    net = scheme_net(scheme)
    comps, owner, thetas = thetas_for(net, -1e4)
    alphas = alphas_of(thetas, owner)
    x = torch.randn(4, 1, 32, 32)
    want = net(x)
    got = sparse_forward(net, sparse_params(net, comps, alphas), x)
    baked = bake(net, comps, alphas)
    for t in net.tasks:  # functional forward vs the module's: two code paths, float32 rounding
        assert_close(got[t], want[t])
        assert_close(baked(x)[t], want[t])
    ref = net.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in baked.state_dict().items())
    zeros = sum(int((net.get_parameter(n) == 0).sum()) for names in comps.values() for n in names)
    total = sum(net.get_parameter(n).numel() for names in comps.values() for n in names)
    assert component_sparsity(net, comps, alphas)[OVERALL] == zeros / total  # only existing zeros


def test_sparsity_rises_with_thresholds_and_bake_matches_forward():
    net = scheme_net("PAM")
    comps = components(net)
    last = {c: -1.0 for c in [*comps, OVERALL]}
    x = torch.randn(3, 1, 32, 32)
    for theta in (-12.0, -6.0, -4.0, -3.0, -2.0, -1.0, 0.0, 2.0):
        alphas = {c: torch.sigmoid(torch.tensor(theta + 0.1 * i)) for i, c in enumerate(comps)}
        s = component_sparsity(net, comps, alphas)
        assert all(s[c] >= last[c] for c in last)
        last = s
        baked = bake(net, comps, alphas)
        got = sparse_forward(net, sparse_params(net, comps, alphas), x)
        for t in TASKS:
            assert_close(baked(x)[t], got[t])
        zeros = sum(int((baked.get_parameter(n) == 0).sum()) for names in comps.values() for n in names)
        assert zeros / sum(baked.get_parameter(n).numel() for names in comps.values()
                           for n in names) == s[OVERALL]
    assert last[OVERALL] == 1.0  # sigmoid(2) = 0.88 exceeds every weight of the tiny nets


# --------------------------------------------------------------------------- Eq. 6, Eq. 7
def test_adaptive_weights_by_hand():
    history = {"A": [9.0, 1.0, 0.8, 0.6], "B": [9.0, 2.0, 2.0, 1.0]}  # only the last 3 count
    beta = adaptive_weights(history, window=2, lam=2.0, backbone_size=300, head_sizes={"A": 100, "B": 50})
    r_a = (0.2 / 0.8 + 0.2 / 0.6) / 2
    r_b = (0.0 / 2.0 + 1.0 / 1.0) / 2
    mean = (r_a + r_b) / 2
    scale = 2.0 * 300 / 150
    assert beta["A"] == pytest.approx(mean / r_a * scale) and beta["B"] == pytest.approx(mean / r_b * scale)
    assert beta["A"] > beta["B"]  # the steadier loss gets the larger weight
    short = adaptive_weights({"A": [1.0, 0.9], "B": [1.0, 0.5]}, 2, 2.0, 300, {"A": 100, "B": 50})
    assert short == {"A": scale, "B": scale}  # window not full yet: equal weights
    flat = adaptive_weights({"A": [1.0] * 3, "B": [1.0] * 3}, 2, 1.0, 0, {"A": 5, "B": 5})
    assert flat == {"A": 1.0, "B": 1.0}  # no change anywhere, no backbone: ratio 1


def test_delta_t_by_hand():
    assert delta_t({"A": 90.0, "B": 80.0}, {"A": 100.0, "B": 80.0}) == pytest.approx(-5.0)
    nested = task_deltas({"A": {"acc": 90.0, "err": 12.0}}, {"A": {"acc": 100.0, "err": 10.0}},
                         {"err": False})
    assert nested["A"] == pytest.approx((-10.0 - 20.0) / 2)
    assert delta_t({"A": 110.0}, {"A": 100.0}, higher_is_better=False) == pytest.approx(-10.0)
    with pytest.raises(ValueError, match="same tasks"):
        delta_t({"A": 1.0}, {"B": 1.0})


# --------------------------------------------------------------------------- effective FLOPs
@pytest.mark.parametrize("scheme", ["B1", "B2", "PAM"])
def test_dense_flops_equal_the_analytic_cost(scheme):
    net = scheme_net(scheme)
    example = torch.randn(1, 1, 32, 32)
    want = {k: v["flops"] for k, v in subset_costs(net).items()}
    assert subset_flops(net, example, count_zeros=True) == want
    if scheme == "B1":  # no zero weight at all: sparse counting changes nothing
        assert subset_flops(net, example) == want


def test_sparse_flops_hand_count():
    net = scheme_net("B1")
    dense = subset_flops(net, torch.randn(1, 1, 32, 32), count_zeros=True)["A"]
    with torch.no_grad():
        net.groups["conv1"]["A"][0].weight.view(-1)[:10] = 0.0  # each used at 28 x 28 positions
        net.groups["fc1"]["A"][0].weight.view(-1)[:7] = 0.0
        net.heads["A"].weight.view(-1)[:3] = 0.0
    got = subset_flops(net, torch.randn(1, 1, 32, 32))["A"]
    assert got == dense - 2 * (10 * 28 * 28 + 7 + 3)


# --------------------------------------------------------------------------- the method
def test_prune_freezes_at_target_and_returns_a_plain_net():
    net = scheme_net("PAM")
    before = copy.deepcopy(net.state_dict())
    events = []
    res = get_pruner("adapmtl").prune(net, task_data(), config(target_sparsity=0.6, epochs=3), events.append)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # input untouched
    x = res.extra
    frozen_at = x["frozen_at_step"]
    assert frozen_at is not None and x["sparsity"][OVERALL] >= 0.6
    rows = [r for r in res.log if r["step"] >= frozen_at]
    assert all(r["frozen"] and r["thresholds"] == rows[0]["thresholds"] for r in rows)
    assert all(r["sparsity"][OVERALL] >= 0.6 for r in rows)
    after = [r["sparsity"][OVERALL] for r in rows]  # weights zeroed at the freeze stay zero
    assert after == sorted(after)
    assert not any(r["frozen"] for r in res.log if r["step"] < frozen_at)
    steps = [r["step"] for r in res.log]
    assert steps == list(range(len(steps)))  # a row per step, from the initial state
    assert [r["epoch"] for r in res.log if r["val_accuracy"] is not None] == [1, 2, 3]
    assert set(res.log[-1]["thresholds"]) == {BACKBONE, "A", "B"}
    assert set(res.log[-1]["sparsity"]) == {BACKBONE, "A", "B", OVERALL}
    comps = components(res.net)
    zeros = sum(int((res.net.get_parameter(n) == 0).sum()) for names in comps.values() for n in names)
    total = sum(res.net.get_parameter(n).numel() for names in comps.values() for n in names)
    assert zeros / total == pytest.approx(x["sparsity"][OVERALL])
    assert type(res.net) is MergedNet and not any(p.requires_grad is False for p in res.net.parameters())
    assert set(x["sparse_flops"]) == set(x["dense_flops"]) == {"A", "B", "A+B"}
    assert all(x["sparse_flops"][k] < x["dense_flops"][k] for k in x["dense_flops"])
    assert x["delta_t"] == pytest.approx(delta_t(res.test_accuracy, x["dense_test_accuracy"]))
    assert res.method == "adapmtl" and res.seconds > 0 and set(res.reference_accuracy) == set(TASKS)
    assert x["sparsity_series"][0]["step"] == 0 and x["sparsity_series"][-1]["step"] == steps[-1]
    assert [e["phase"] for e in events][0] == "reference" and events[-1]["phase"] == "done"
    assert any(e["phase"] == "frozen" for e in events)


def test_thresholds_keep_rising_until_the_target():
    res = get_pruner("adapmtl").prune(scheme_net("B2"), task_data(),
                                      config(target_sparsity=0.999, epochs=1, theta_lr=0.1))
    alphas = [r["thresholds"][BACKBONE] for r in res.log]
    assert res.extra["frozen_at_step"] is None
    assert all(b > a for a, b in zip(alphas, alphas[1:]))  # push 2: at least one theta_lr per step
    s = [r["sparsity"][OVERALL] for r in res.log]
    assert all(b >= a for a, b in zip(s, s[1:]))


@pytest.mark.parametrize("scheme", ["B1", "B2"])
def test_ablations(scheme):
    tasks = ("A",) if scheme == "B1" else TASKS
    data = task_data(tasks)
    shared = get_pruner("adapmtl").prune(scheme_net(scheme), data, config(shared_threshold=True, epochs=1))
    assert all(list(r["thresholds"]) == [SHARED] for r in shared.log)
    equal = get_pruner("adapmtl").prune(scheme_net(scheme), data, config(adaptive_weighting=False, epochs=1))
    assert all(r["beta"] == {t: 1.0 for t in tasks} for r in equal.log[1:])
    adaptive = get_pruner("adapmtl").prune(scheme_net(scheme), data, config(epochs=1, lam=3.0))
    late = adaptive.log[-1]["beta"]  # window 2 is full after 3 steps
    if scheme == "B2":
        assert late["A"] != late["B"]
    else:  # one task: (r / mean r)^-1 = 1, only lambda * |W_B| / |W_head| is left
        sizes = adaptive.extra["component_sizes"]
        assert late["A"] == pytest.approx(3.0 * sizes[BACKBONE] / sizes["A"])


def test_cancellation_leaves_input_unchanged():
    net = scheme_net("B2")
    before = copy.deepcopy(net.state_dict())

    def cancel(event):
        if event["phase"] == "adapmtl" and event["step"] == 2:
            raise KeyboardInterrupt("cancelled")
    with pytest.raises(KeyboardInterrupt):
        get_pruner("adapmtl").prune(net, task_data(), config(), cancel)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_sparsity_series_is_thinned_and_keeps_the_freeze():
    log = [{"step": i, "sparsity": {OVERALL: i / 1000}, "frozen": i >= 777} for i in range(1000)]
    series = sparsity_series(log, max_points=50)
    steps = [p["step"] for p in series]
    assert len(series) <= 51 and steps[0] == 0 and steps[-1] == 999 and 777 in steps
    assert steps == sorted(steps) and math.isclose(series[-1][OVERALL], 0.999)
