"""Pruning contract: config validation, registry, path-safe removal, the alternating driver and
its fair stopping rule, on B1 (from_single), B2 (fully_shared) and merged nets."""
import copy

import pytest
import torch

import pam_explorer.prune.base as base
from pam_explorer.core.geometry import check_structure
from pam_explorer.cost.analytic import subset_costs
from pam_explorer.merge.build import from_single, fully_shared, merge_networks
from pam_explorer.merge.merged_net import MergedNet
from pam_explorer.prune import (
    AlternatingPruner,
    PruneConfig,
    Pruner,
    PruneResult,
    TaskData,
    get_pruner,
    list_pruners,
    register_pruner,
)
from pam_explorer.prune.base import apply_removal, plan_removal, subgraph_groups
from pam_explorer.zoo import build_model
from tests.prune.prune_fixtures import TASKS, random_grouping, synthetic, tiny_nets


# --------------------------------------------------------------------------- fixtures
def scheme_net(scheme: str) -> MergedNet:
    nets = tiny_nets()
    if scheme == "B1":
        return from_single(nets[0], "A")
    if scheme == "B2":
        return fully_shared(nets, TASKS)
    return merge_networks(nets, TASKS, random_grouping(nets, random_anchor=True))


@pytest.fixture(scope="module")
def data() -> TaskData:
    return TaskData(synthetic(96, 1), synthetic(48, 2), synthetic(48, 3))


FAST = dict(step_fraction=0.3, finetune_batches=2, final_finetune_epochs=0, batch_size=32,
            score_batches=1, vib_epochs=1, device="cpu", schedule="floor-greedy")  # the accept/reject loop


def removable(net: MergedNet, task: str) -> dict:
    ranked = [(0.0, layer, key, pos) for layer, key in subgraph_groups(net, task)
              for pos in range(net.width(layer, key))]
    return plan_removal(net, ranked, 1)


# --------------------------------------------------------------------------- config + registry
def test_registry_lists_methods_and_rejects_unknown():
    assert {"taylor", "vib"} <= set(list_pruners())
    assert get_pruner("taylor").name == "taylor" and get_pruner("vib").name == "vib"
    assert get_pruner("taylor").structured and get_pruner("vib").structured
    with pytest.raises(ValueError, match="taylor.*vib|vib.*taylor"):
        get_pruner("nope")
    with pytest.raises(ValueError, match="Pruner subclass"):
        register_pruner("bad", dict)
    with pytest.raises(ValueError, match="already registered"):
        register_pruner("taylor", type("Other", (AlternatingPruner,), {"name": "taylor"}))


@pytest.mark.parametrize("field,value", [
    ("delta", -1.0), ("delta", float("nan")), ("step_fraction", 0.0), ("step_fraction", 1.5),
    ("min_step", 0), ("finetune_batches", -1), ("final_finetune_epochs", 1.5), ("batch_size", 0),
    ("lr", 0.0), ("seed", "x"), ("device", ""), ("max_steps", -1), ("score_batches", 0),
    ("vib_epochs", -1), ("kl_weight", -1.0), ("vib_lr", float("inf")),
    ("log_alpha_threshold", float("nan")), ("min_step", True), ("score_scope", "all"),
    ("patience", 0), ("flops_weight", -0.5), ("reference_accuracy", {"A": "high"}), ("adapmtl", {"x": 1})])
def test_config_validation_names_field(field, value):
    with pytest.raises(ValueError, match=f"PruneConfig.{field}"):
        PruneConfig(**{field: value})


def test_config_defaults():
    cfg = PruneConfig()
    assert (cfg.delta, cfg.step_fraction, cfg.min_step, cfg.log_alpha_threshold) == (0.5, 0.1, 1, 3.0)


# --------------------------------------------------------------------------- path-safe removal
def _chain_widths() -> dict:
    # conv2 "A+B" reads only conv1 "A+B": emptying both is valid, but only deepest-first
    return {"conv1": {"A": 1, "B": 1, "A+B": 1}, "conv2": {"A": 1, "B": 1, "A+B": 1},
            "fc1": {"A": 2, "B": 2, "A+B": 0}, "fc2": {"A": 2, "B": 2, "A+B": 0}}


def test_plan_skips_neurons_that_would_cut_a_path():
    net = MergedNet.from_widths(scheme_net("PAM").geometry, _chain_widths())
    ranked = [(0.0, "conv1", "A+B", 0), (1.0, "conv2", "A+B", 0), (2.0, "fc2", "A", 0),
              (3.0, "fc2", "A", 1)]
    plan = plan_removal(net, ranked, 10)
    assert plan == {("conv2", "A+B"): [0], ("fc2", "A"): [0]}  # conv1 A+B still fed conv2 A+B


def test_apply_removal_goes_deepest_first_and_slices_scores():
    net = MergedNet.from_widths(scheme_net("PAM").geometry, _chain_widths())
    scores = {("fc1", "A"): torch.tensor([5.0, 7.0])}
    apply_removal(net, {("conv1", "A+B"): [0], ("conv2", "A+B"): [0], ("fc1", "A"): [0]}, scores)
    w = net.group_widths()
    assert (w["conv1"]["A+B"], w["conv2"]["A+B"], w["fc1"]["A"]) == (0, 0, 1)
    assert scores[("fc1", "A")].tolist() == [7.0]
    check_structure(net.tasks, net.layer_names, w)


def test_batch_stream_covers_every_sample_per_pass():
    stream = base.BatchStream(10, 4, seed=0)
    first = torch.cat([stream.next() for _ in range(3)])  # 4 + 4 + 2
    assert sorted(first.tolist()) == list(range(10))


# --------------------------------------------------------------------------- the driver
class FixedPruner(AlternatingPruner):
    """Deterministic importance (neuron position), no gradients: isolates the driver."""

    name = "fixed-test"

    def importance(self, net, task, data, config, stream):
        return {g: torch.arange(net.width(*g), dtype=torch.float32) for g in subgraph_groups(net, task)}


def test_rejected_steps_halve_then_freeze_and_restore(data, monkeypatch):
    calls = []

    def fake_evaluate(net, images, targets, tasks=None, batch_size=512):
        calls.append(1)  # the reference is the first call; every later step "hurts" by 1 point
        return {t: 90.0 if len(calls) == 1 else 89.0 for t in net.tasks}
    monkeypatch.setattr(base, "evaluate", fake_evaluate)
    net = scheme_net("B1")
    cfg = PruneConfig(**{**FAST, "delta": 0.5, "step_fraction": 0.5})
    res = FixedPruner().prune(net, data, cfg)
    removed = [r["removed"] for r in res.log]
    assert not any(r["accepted"] for r in res.log)
    assert removed[0] == int(0.5 * sum(net.group_widths()[layer]["A"] for layer in net.layer_names))
    assert all(b == max(1, a // 2) for a, b in zip(removed, removed[1:])) and removed[-1] == 1
    assert res.net.group_widths() == net.group_widths()
    ref = net.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in res.net.state_dict().items())


def test_every_task_must_stay_above_its_floor(data, monkeypatch):
    """Only task B drops below its floor (A is unharmed): every step must be rejected, whichever
    task it prunes; a rule that asked only some task to hold its floor would accept them."""
    calls = []

    def fake_evaluate(net, images, targets, tasks=None, batch_size=512):
        calls.append(1)  # the reference first; after it B loses 2 points, A none
        return {"A": 90.0, "B": 90.0 if len(calls) == 1 else 88.0}
    monkeypatch.setattr(base, "evaluate", fake_evaluate)
    net = scheme_net("PAM")
    res = FixedPruner().prune(net, data, PruneConfig(**{**FAST, "delta": 0.5, "max_steps": 4}))
    assert [r["task"] for r in res.log] == ["A", "B", "A", "B"]
    assert [r["val_accuracy"] for r in res.log] == [{"A": 90.0, "B": 88.0}] * 4
    assert not any(r["accepted"] for r in res.log)
    assert res.net.group_widths() == net.group_widths()


def test_delta_zero_freezes_when_every_removal_hurts(data, monkeypatch):
    seen = []

    def fake_evaluate(net, images, targets, tasks=None, batch_size=512):
        seen.append(sum(sum(w.values()) for w in net.group_widths().values()))
        return {t: float(seen[-1]) / 1000 for t in net.tasks}  # fewer neurons -> lower accuracy
    monkeypatch.setattr(base, "evaluate", fake_evaluate)
    res = FixedPruner().prune(scheme_net("PAM"), data, PruneConfig(**{**FAST, "delta": 0.0}))
    assert res.log and not any(r["accepted"] for r in res.log)
    assert {r["task"] for r in res.log} == set(TASKS)  # both tried, both frozen
    assert [r["removed"] for r in res.log if r["task"] == "A"][-1] == 1


def test_huge_delta_prunes_until_paths_block(data):
    events = []
    net = scheme_net("PAM")
    res = FixedPruner().prune(net, data, PruneConfig(**{**FAST, "delta": 100.0, "step_fraction": 0.5}),
                              events.append)
    assert all(r["accepted"] for r in res.log)
    assert all(removable(res.net, t) == {} for t in TASKS)
    check_structure(res.net.tasks, res.net.layer_names, res.net.group_widths())
    # alternation: strictly A, B, A, B ... until the first task freezes
    first_freeze = next(i for i, e in enumerate(events) if e["phase"] == "frozen")
    tasks = [e["task"] for e in events[:first_freeze] if e["phase"] == "prune"]
    assert tasks == [TASKS[i % 2] for i in range(len(tasks))] and len(tasks) >= 4


def test_max_steps_and_cancellation(data):
    net = scheme_net("B2")
    before = copy.deepcopy(net.state_dict())
    res = FixedPruner().prune(net, data, PruneConfig(**{**FAST, "delta": 100.0, "max_steps": 3}))
    assert len(res.log) == 3 and [r["task"] for r in res.log] == ["A", "B", "A"]

    def cancel(event):
        if event["phase"] == "prune" and event["step"] == 1:
            raise KeyboardInterrupt("cancelled")
    with pytest.raises(KeyboardInterrupt):
        FixedPruner().prune(net, data, PruneConfig(**{**FAST, "delta": 100.0}), cancel)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # input untouched


@pytest.mark.parametrize("method", ["taylor", "vib"])
@pytest.mark.parametrize("scheme", ["B1", "B2", "PAM"])
def test_methods_shrink_every_scheme(method, scheme, data):
    net = scheme_net(scheme)
    events = []
    res = get_pruner(method).prune(net, data, PruneConfig(**{**FAST, "delta": 100.0, "max_steps": 4}),
                                   events.append)
    assert isinstance(res, PruneResult) and res.method == method and res.seconds > 0
    before, after = subset_costs(net), subset_costs(res.net)
    assert all(after[k]["flops"] < before[k]["flops"] and after[k]["params"] < before[k]["params"]
               for k in before)
    assert sum(p.numel() for p in res.net.parameters()) < sum(p.numel() for p in net.parameters())
    check_structure(res.net.tasks, res.net.layer_names, res.net.group_widths())
    out = res.net(data.test[0][:4])
    assert set(out) == set(net.tasks) and all(torch.isfinite(v).all() for v in out.values())
    for row in res.log:
        assert {"step", "task", "accepted", "removed", "widths", "flops", "val_accuracy"} <= set(row)
        assert set(row["val_accuracy"]) == set(net.tasks) and set(row["flops"]) == set(before)
    flops = [sum(r["flops"].values()) for r in res.log if r["accepted"]]
    assert flops == sorted(flops, reverse=True) and len(flops) == 4
    assert set(res.reference_accuracy) == set(res.val_accuracy) == set(res.test_accuracy) == set(net.tasks)
    phases = [e["phase"] for e in events]
    assert phases[0] == "reference" and phases[-1] == "done" and "prune" in phases


def test_custom_pruner_contract_is_general(data):
    class Noop(Pruner):  # an unstructured method only needs the contract
        name, structured = "noop-test", False

        def prune(self, net, data, config, progress=None):
            return PruneResult(net, method=self.name)
    register_pruner("noop-test", Noop)
    try:
        assert not get_pruner("noop-test").structured
        assert get_pruner("noop-test").prune(scheme_net("B1"), data, PruneConfig()).method == "noop-test"
    finally:
        base._REGISTRY.pop("noop-test")


# --------------------------------------------------------------------------- FLOPs-aware ranking
def test_removal_savings_equal_cost_differences():
    net = scheme_net("PAM")
    groups = subgraph_groups(net, "A")
    total = lambda w: sum(c["flops"] for c in base.costs_from_widths(net.geometry, w).values())  # noqa: E731
    savings = base.removal_savings(net, groups)
    for layer, key in groups:
        w = net.group_widths()
        w[layer][key] -= 1
        assert savings[(layer, key)] == total(net.group_widths()) - total(w) > 0
    conv = max(v for (layer, _), v in savings.items() if layer.startswith("conv"))
    fc = max(v for (layer, _), v in savings.items() if layer.startswith("fc"))
    assert conv > 10 * fc  # a conv channel costs far more than an fc neuron


def test_rank_neurons_divides_importance_by_savings():
    net = scheme_net("B1")
    scores = {g: torch.ones(net.width(*g)) for g in subgraph_groups(net, "A")}
    plain = base.rank_neurons(net, "A", scores, 0.0)
    assert {r[0] for r in plain} == {1.0} and len(plain) == sum(net.width(*g) for g in scores)
    aware = base.rank_neurons(net, "A", scores, 1.0)
    savings = base.removal_savings(net, list(scores))
    assert aware[0][1:3] == max(savings, key=savings.get)  # the most expensive group goes first
    for value, layer, key, _ in aware:
        assert value == pytest.approx(1.0 / savings[(layer, key)])
    # zero importance (dead neurons): every value is 0, so the saving alone must order them; in a
    # merged net, layer-name order puts group "A" before the costlier "A+B" of the same layer
    pam = scheme_net("PAM")
    zero = {g: torch.zeros(pam.width(*g)) for g in subgraph_groups(pam, "A")}
    pam_savings = base.removal_savings(pam, list(zero))
    saved = [pam_savings[r[1:3]] for r in base.rank_neurons(pam, "A", zero, 1.0)]
    assert saved == sorted(saved, reverse=True) and saved[0] > saved[-1]
    published = [r[1:] for r in base.rank_neurons(pam, "A", zero, 0.0)]
    assert published == sorted(published)  # the published rank keeps its (layer, key, position) order


# --------------------------------------------------------------------------- patience, blocking, reference
def test_patience_counts_single_neuron_rejections_before_freezing(data, monkeypatch):
    calls = []

    def fake_evaluate(net, images, targets, tasks=None, batch_size=512):
        calls.append(1)  # the reference, then every step loses 10 points
        return {t: 90.0 if len(calls) == 1 else 80.0 for t in net.tasks}
    monkeypatch.setattr(base, "evaluate", fake_evaluate)
    net = scheme_net("B1")
    cfg = PruneConfig(**{**FAST, "step_fraction": 0.01, "flops_weight": 0.0, "patience": 4})
    res = FixedPruner().prune(net, data, cfg)
    assert [r["removed"] for r in res.log] == [1, 1, 1, 1]  # four tries, then frozen
    assert res.net.group_widths() == net.group_widths()


def test_blocked_candidates_are_distinct(data, monkeypatch):
    seen = []
    real_apply = base.apply_removal

    def spy(net, plan, scores):
        seen.append({g: [net.provenance(*g)[p] for p in ps] for g, ps in plan.items()})
        real_apply(net, plan, scores)
    monkeypatch.setattr(base, "apply_removal", spy)
    monkeypatch.setattr(base, "evaluate",
                        lambda net, *a, **k: {t: 90.0 if not seen else 10.0 for t in net.tasks})
    cfg = PruneConfig(**{**FAST, "step_fraction": 0.01, "flops_weight": 0.0, "patience": 3})
    res = FixedPruner().prune(scheme_net("B1"), data, cfg)
    flat = [(g, tuple(v)) for d in seen for g, v in d.items()]
    assert len(flat) == 3 == len(set(flat)) == len(res.log)


def test_rejection_halves_and_acceptance_doubles_the_cap(data, monkeypatch):
    calls = []

    def fake_evaluate(net, images, targets, tasks=None, batch_size=512):
        calls.append(1)  # reference, a rejected first step, then accepted steps
        return {t: 80.0 if len(calls) == 2 else 90.0 for t in net.tasks}
    monkeypatch.setattr(base, "evaluate", fake_evaluate)
    net = scheme_net("B1")
    n = sum(w["A"] for w in net.group_widths().values())
    res = FixedPruner().prune(net, data, PruneConfig(**{**FAST, "step_fraction": 0.5, "max_steps": 3}))
    removed = [r["removed"] for r in res.log]
    assert [r["accepted"] for r in res.log] == [False, True, True]
    assert removed[0] == n // 2 and removed[1] == n // 4
    assert removed[2] == min(2 * removed[1], (n - removed[1]) // 2)


def test_given_reference_accuracy_sets_the_floor(data, monkeypatch):
    monkeypatch.setattr(base, "evaluate", lambda net, *a, **k: {t: 95.0 for t in net.tasks})
    strict = PruneConfig(**{**FAST, "delta": 0.5, "reference_accuracy": {"A": 99.0, "B": 99.0}})
    res = FixedPruner().prune(scheme_net("B2"), data, strict)
    assert res.reference_accuracy == {"A": 99.0, "B": 99.0} and not any(r["accepted"] for r in res.log)
    loose = PruneConfig(**{**FAST, "delta": 0.5, "reference_accuracy": {"A": 95.2, "B": 95.2},
                           "max_steps": 2})
    assert all(r["accepted"] for r in FixedPruner().prune(scheme_net("B2"), data, loose).log)
    with pytest.raises(ValueError, match="no value for task"):
        FixedPruner().prune(scheme_net("B2"), data,
                            PruneConfig(**{**FAST, "reference_accuracy": {"A": 90.0}}))


@pytest.mark.parametrize("method", ["taylor", "vib"])
def test_methods_prune_a_net_merged_from_different_depths(method, data):
    """Task A's head reads fc2, B's reads the taken-over fc3: pruning honours both paths."""
    torch.manual_seed(0)
    nets = [build_model("lenet5", 2, 1, 32, width=0.5),
            build_model("lenet5", 1, 1, 32, width=0.5, extra_fc=1)]
    from pam_explorer.merge.build import shared_grouping
    net = merge_networks(nets, TASKS, shared_grouping(nets, TASKS))
    assert net.head_layers == {"A": "fc2", "B": "fc3"}
    res = get_pruner(method).prune(net, data, PruneConfig(**{**FAST, "delta": 100.0, "max_steps": 4}))
    assert all(r["accepted"] for r in res.log) and len(res.log) == 4
    before, after = subset_costs(net), subset_costs(res.net)
    assert all(after[k]["flops"] < before[k]["flops"] for k in before)
    check_structure(res.net.tasks, res.net.layer_names, res.net.group_widths(),
                    head_layers=res.net.head_layers)
    out = res.net(data.test[0][:4])
    assert out["A"].shape == (4, 2) and out["B"].shape == (4, 1)
