"""The published pruning schedule (prune/schedule.py, masks.py, schedule_select.py): masking equals
removal, gate gradients equal autograd's, dead neurons go first, FLOPs pacing, the equal budget,
VIBNet's H x W KL and threshold, and an interrupted schedule resumes exactly (one machine)."""
from __future__ import annotations

import copy
import dataclasses
import math
import types

import pytest
import torch
from torch.nn import functional as F

from pam_explorer.cost.analytic import subset_costs
from pam_explorer.merge.build import from_single
from pam_explorer.prune import PruneConfig, TaskData, get_pruner
from pam_explorer.prune.base import apply_removal
from pam_explorer.prune.config import ScheduleConfig
from pam_explorer.prune.masks import NeuronMasks
from pam_explorer.prune.schedule import MemoryStore, _flops_target, run_schedule
from pam_explorer.prune.schedule_grid import crossed_levels, grid_levels
from pam_explorer.prune.schedule_select import all_task_flops, vib_event
from pam_explorer.prune.vib_gates import VIBGates, kl_divergence
from pam_explorer.runs.checkpoints import FolderStore
from tests.prune.prune_fixtures import TASKS, merged_net, synthetic, tiny_nets

PLAN = ScheduleConfig(warmup_batches=3, every=2, events=4, checkpoint_epochs=1, grid_step=0.1,
                      end_fraction=0.3, pace="flops", grid="linear")


def cfg(**kw) -> PruneConfig:
    base = dict(batch_size=32, device="cpu", plan=PLAN, seed=0)
    return PruneConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def data() -> TaskData:
    return TaskData(synthetic(96, 1), synthetic(48, 2), synthetic(48, 3))


def test_masked_net_equals_the_physically_pruned_one(data):
    net = merged_net().eval()
    masks = NeuronMasks(net)
    gen = torch.Generator().manual_seed(0)
    for group, keep in masks.keep.items():
        drop = [i for i in range(keep.numel()) if torch.rand(1, generator=gen) < 0.4][: keep.numel() - 1]
        masks.mask(group, drop)  # every group keeps a neuron: every path stays
    masks.attach(net)
    x = data.val[0][:8]
    with torch.no_grad():
        masked = net(x)
    masks.detach()
    pruned = copy.deepcopy(net)
    apply_removal(pruned, masks.plan(), None)
    with torch.no_grad():
        physical = pruned(x)
    for t in TASKS:
        torch.testing.assert_close(physical[t], masked[t], rtol=1e-5, atol=1e-5)
    assert subset_costs(pruned)["A+B"]["flops"] == all_task_flops(net, masks.widths(net))


def test_gate_gradients_equal_autograd_of_explicit_gates(data):
    """Independent reference: a real gate parameter g = 1 multiplying every group output."""
    net = merged_net().eval()
    x, y = data.train[0][:16], data.train[1]["A"][:16]
    masks = NeuronMasks(net)
    masks.attach(net)
    masks.recording = True
    F.binary_cross_entropy_with_logits(net(x, ["A"])["A"], y).backward()
    ours = masks.take_gradients()
    masks.detach()
    net.zero_grad()
    gates = {g: torch.ones(k.numel(), requires_grad=True) for g, k in masks.keep.items()}
    handles = [net.groups[layer][key].register_forward_hook(
        lambda _m, _i, out, g=(layer, key): out * gates[g].reshape(1, -1, *[1] * (out.dim() - 2)))
        for layer, key in gates]
    loss = F.binary_cross_entropy_with_logits(net(x, ["A"])["A"], y)
    reached = [g for g in gates if "A" in g[1].split("+")]
    grads = torch.autograd.grad(loss, [gates[g] for g in reached])
    for h in handles:
        h.remove()
    assert set(ours) == set(reached)
    for g, grad in zip(reached, grads):
        torch.testing.assert_close(ours[g], grad, rtol=1e-4, atol=1e-7)


def _dead_net():
    """A single-task net with one conv1 channel that outputs zero (weights 0, bias -1: ReLU 0)
    and one fc1 neuron nobody reads (its fc2 column is 0; fc2 does not train, so it stays 0)."""
    net = from_single(tiny_nets()[0], "A")
    with torch.no_grad():
        conv = net.groups["conv1"]["A"][0]
        conv.weight[1].zero_()
        conv.bias[1] = -1.0
        net.groups["fc2"]["A"][0].weight[:, 5].zero_()
    net.groups["fc2"]["A"][0].weight.requires_grad_(False)
    return net


def _zero_everywhere(net, data) -> dict:
    """Independent reference: neurons whose output is exactly 0 on every training picture, or
    whose every outgoing weight is 0 (forward hooks and the weights, no gradients)."""
    outs = {}
    hooks = [net.groups[layer][key].register_forward_hook(
        lambda _m, _i, out, g=(layer, key): outs.__setitem__(g, out.detach()))
        for layer, ws in net.group_widths().items() for key in ws]
    net.eval()
    with torch.no_grad():
        net(data.train[0])
    for h in hooks:
        h.remove()
    dead = {g: (o.flatten(2).abs().amax(2) if o.dim() > 2 else o.abs()).amax(0) == 0 for g, o in outs.items()}
    for g in dead:
        for core, start, factor in net.reader_columns(*g):
            w = core.weight.detach()
            cols = w[:, start:start + dead[g].numel() * factor].reshape(w.shape[0], dead[g].numel(), -1)
            dead[g] |= cols.abs().amax(dim=(0, 2)) == 0
    return {(g, i) for g, d in dead.items() for i in d.nonzero().flatten().tolist()}


def test_dead_neurons_go_before_any_live_one(data):
    net = _dead_net()
    sub = TaskData(*((s[0], {"A": s[1]["A"]}) for s in (data.train, data.val, data.test)))
    expected = _zero_everywhere(net, sub)
    assert {(("conv1", "A"), 1), (("fc1", "A"), 5)} <= expected
    seen = {}

    class Enough(Exception):
        pass

    class Spy(MemoryStore):
        def save(self, point, n, state):
            super().save(point, n, state)
            seen[point["index"]] = n
            if point["index"] == 2:
                raise Enough
    # one window covering the whole training split, a lr that does not change the weights, and a
    # first FLOPs target one FLOP below the start: that event masks the dead neurons and no live one
    plan = dataclasses.replace(PLAN, warmup_batches=1, every=1, events=10**9, grid_step=1e-9)
    with pytest.raises(Enough):
        run_schedule("taylor", net, sub, cfg(plan=plan, batch_size=96, lr=1e-12), store=Spy())
    after = seen[2]  # 0: as given, 1: after the warmup, 2: after the first event
    kept = {((layer, key), origin) for layer, ws in after.group_widths().items() for key in ws
            for _, origin in after.provenance(layer, key)}
    everything = {((layer, "A"), i) for layer, ws in net.group_widths().items() for i in range(ws["A"])}
    assert everything - kept == expected


def test_events_follow_the_flops_pace_and_every_scheme_trains_the_same_budget(data):
    net = merged_net()
    res = get_pruner("taylor").prune(net, data, cfg(reference_accuracy={"A": 0.0, "B": 0.0}))
    curve = res.extra["curve"]
    start = subset_costs(net)["A+B"]["flops"]
    assert curve[0]["fraction"] == 1.0 and not curve[0]["finetuned"]
    assert curve[1]["step"] == PLAN.warmup_batches
    for p in curve[2:]:  # after event e the all-task FLOPs are at most the linear target
        e = p["event"]
        assert p["flops"]["A+B"] <= start * (1 - (1 - PLAN.end_fraction) * e / PLAN.events) + 1e-6
    assert [p["flops"]["A+B"] for p in curve] == sorted((p["flops"]["A+B"] for p in curve), reverse=True)
    assert res.extra["trained_batches"] == res.extra["budget_batches"] == PLAN.total_batches
    assert curve[-1]["fraction"] <= PLAN.end_fraction + 0.1
    single = get_pruner("taylor").prune(from_single(tiny_nets()[1], "B"),
                                        TaskData(*((s[0], {"B": s[1]["B"]}) for s in (data.train, data.val,
                                                                                      data.test))),
                                        cfg(reference_accuracy={"B": 0.0}))
    assert single.extra["trained_batches"] == PLAN.total_batches  # the same budget, whatever the scheme


@pytest.mark.parametrize("pace,want", [("flops", [752.5, 505.0, 257.5, 10.0]),
                                       ("geometric", [1000 / 10 ** 0.5, 100.0, 10 ** 1.5, 10.0])])
def test_event_targets_by_hand(pace, want):
    """From 1,000 to 10 FLOPs in 4 events: linear steps of 247.5; geometric a factor 10^-0.5 each."""
    plan = ScheduleConfig(events=4, pace=pace)
    run = types.SimpleNamespace(start_flops=1000, end_flops=10.0, plan=plan, event=0)
    got = []
    for e in range(4):
        run.event = e
        got.append(_flops_target(run))
    assert got == pytest.approx(want)


def test_a_geometric_schedule_removes_the_same_fraction_every_event(data):
    net = merged_net()
    plan = dataclasses.replace(PLAN, pace="geometric")
    res = get_pruner("taylor").prune(net, data, cfg(reference_accuracy={"A": 0.0, "B": 0.0}, plan=plan))
    start = subset_costs(net)["A+B"]["flops"]
    end = PLAN.end_fraction * start
    events = [p for p in res.extra["curve"][2:]]
    assert events and res.extra["trained_batches"] == PLAN.total_batches
    for p in events:  # after event e: at most start * (end / start)^(e / events), below the linear pace
        e = p["event"]
        assert p["flops"]["A+B"] <= start * math.exp(e / PLAN.events * math.log(end / start)) + 1e-6
    first = events[0]
    assert first["event"] == 1 and first["flops"]["A+B"] < start * (1 - (1 - PLAN.end_fraction) / PLAN.events)


def test_a_geometric_grid_takes_a_checkpoint_at_every_level_crossed(data):
    net = merged_net()
    plan = dataclasses.replace(PLAN, pace="geometric", grid="geometric", grid_step=0.3, end_fraction=0.1,
                               events=6)
    res = get_pruner("taylor").prune(net, data, cfg(reference_accuracy={"A": 0.0, "B": 0.0}, plan=plan))
    start = subset_costs(net)["A+B"]["flops"]
    curve = res.extra["curve"]
    crossed = [crossed_levels(p["flops"]["A+B"], start, start, 0.3, "geometric") for p in curve[2:]]
    assert crossed and crossed[0] >= 1 and crossed == sorted(set(crossed))  # a new level every time
    assert curve[-1]["flops"]["A+B"] <= 0.1 * start + 1e-6 and res.extra["stopped"] == "end"


def test_grid_levels_by_hand():
    # the unit at the start: every 5 % of the start (the first version's grid)
    assert grid_levels(1000.0, 1000.0, 0.05) == pytest.approx([1000.0 * (1 - g / 20) for g in range(1, 20)])
    # a merged net 4x the largest original: every 10 % of its start down to the unit, then the unit
    # and every 10 % of it
    assert grid_levels(400.0, 100.0, 0.1) == pytest.approx(
        [360, 320, 280, 240, 200, 160, 120, 100, 90, 80, 70, 60, 50, 40, 30, 20, 10])


def test_crossed_levels_counts_the_grid_levels_at_or_above_the_flops():
    rng = torch.Generator().manual_seed(0)
    for _ in range(300):
        start = float(torch.randint(100, 10_000, (1,), generator=rng))
        unit = start * float(torch.rand(1, generator=rng)) if torch.rand(1, generator=rng) < 0.7 else start
        step = [0.05, 0.1, 0.25, 0.3][int(torch.randint(0, 4, (1,), generator=rng))]
        levels = grid_levels(start, unit, step)
        for flops in [start, unit, 0.0, *levels, *(lv * 0.999 for lv in levels),
                      float(torch.rand(1, generator=rng)) * start]:
            want = sum(1 for lv in levels if flops <= lv + 1e-9 * step * start)  # plain count
            assert crossed_levels(flops, start, unit, step) == want, (start, unit, step, flops)
    assert crossed_levels(0.5, 1.0, 1.0, 1e-9) > 10 ** 8  # a grid of 1e9 points, never built


def test_geometric_grid_by_hand_and_counted():
    # from 1,000, unit 1,000, 20 % steps: 800, 640, 512, ...
    assert grid_levels(1000.0, 1000.0, 0.2, "geometric", floor=410) == pytest.approx([800, 640, 512])
    # a merged net 4x the unit: 50 % steps from its start down to the unit, the unit, then below it
    assert grid_levels(400.0, 100.0, 0.5, "geometric", floor=20) == pytest.approx([200, 100, 50, 25])
    with pytest.raises(ValueError, match="floor > 0"):
        grid_levels(400.0, 100.0, 0.5, "geometric")
    rng = torch.Generator().manual_seed(1)
    for _ in range(100):
        start = float(torch.randint(100, 10_000, (1,), generator=rng))
        unit = start * float(torch.rand(1, generator=rng)) if torch.rand(1, generator=rng) < 0.7 else start
        step = [0.05, 0.15, 0.3][int(torch.randint(0, 3, (1,), generator=rng))]
        floor = 0.01 * unit
        levels = grid_levels(start, unit, step, "geometric", floor=floor)
        assert all(a > b for a, b in zip(levels, levels[1:]))
        for flops in [start, unit, *levels, *(lv * 0.999 for lv in levels), *(lv * 1.001 for lv in levels),
                      floor + float(torch.rand(1, generator=rng)) * (start - floor)]:
            if flops <= floor * 1.01:
                continue
            want = sum(1 for lv in levels if flops <= lv + 1e-9 * step * start)  # plain count
            assert crossed_levels(flops, start, unit, step, "geometric") == want, (start, unit, step, flops)


@pytest.mark.parametrize("end_unit", ["original", "own"])
def test_a_merged_net_ends_at_a_tenth_of_the_largest_original(data, end_unit):
    net = merged_net()
    start = subset_costs(net)["A+B"]["flops"]
    unit = start // 3  # as a merged net several times one original network
    plan = dataclasses.replace(PLAN, end_unit=end_unit)
    res = get_pruner("taylor").prune(net, data, cfg(reference_accuracy={"A": 0.0, "B": 0.0}, plan=plan,
                                                    unit_flops=unit))
    curve = res.extra["curve"]
    end = PLAN.end_fraction * (unit if end_unit == "original" else start)
    assert res.extra["stopped"] == "end"
    assert curve[-1]["flops"]["A+B"] <= end + 1e-6  # reached the end the unit sets
    assert curve[-1]["flops"]["A+B"] >= 0.5 * end  # and not far past it (one event's overshoot)
    levels = grid_levels(start, unit if end_unit == "original" else start, PLAN.grid_step)
    for p in curve[2:-1]:  # every checkpoint but the last sits at or just below a grid level
        assert any(p["flops"]["A+B"] <= lv + 1e-6 for lv in levels)


def test_vib_kl_counts_a_conv_gate_once_per_output_position():
    """Hand computation: LeNet-5 at 32 px has conv outputs 28 x 28 (conv1) and 10 x 10 (conv2)."""
    net = from_single(tiny_nets()[0], "A")
    gates = VIBGates(net, init_logvar=-9.0)
    with torch.no_grad():
        for i, g in enumerate(gates.positions):
            mu, logvar = gates.params(g)
            mu.copy_(torch.linspace(0.5, 1.5, mu.numel()))
            logvar.fill_(-2.0 - i)
    hw = {"conv1": 28 * 28, "conv2": 10 * 10, "fc1": 1, "fc2": 1}
    by_hand = sum(hw[g[0]] * sum(0.5 * math.log(1 + m * m / math.exp(-2.0 - i))
                                 for m in gates.params(g)[0].detach().tolist())
                  for i, g in enumerate(gates.positions))
    assert float(gates.kl("A", hw_weighting=True).detach()) == pytest.approx(by_hand, rel=1e-5)
    plain = sum(float(kl_divergence(*gates.params(g)).sum().detach()) for g in gates.positions)
    assert float(gates.kl("A").detach()) == pytest.approx(plain, rel=1e-6)


def test_vib_event_masks_exactly_the_gates_at_or_above_log_alpha_zero():
    net = from_single(tiny_nets()[0], "A")
    gates = VIBGates(net)
    masks = NeuronMasks(net)
    with torch.no_grad():
        for g in gates.positions:
            mu, logvar = gates.params(g)
            mu.fill_(1.0)
            logvar.fill_(-1.0)
            logvar[0] = 0.0  # log alpha = 0: pruned (VIBNet masks log alpha >= 0)
            logvar[1] = 3.0
    removed = vib_event(net, masks, gates)
    assert removed == 2 * len(gates.positions)
    for g, keep in masks.keep.items():
        assert keep.tolist() == [False, False] + [True] * (keep.numel() - 2)


def test_a_flops_paced_vib_event_masks_the_largest_log_alphas_and_stops_at_its_target():
    net = from_single(tiny_nets()[0], "A")
    gates, masks = VIBGates(net), NeuronMasks(net)
    torch.manual_seed(0)
    with torch.no_grad():
        for g in gates.positions:
            mu, logvar = gates.params(g)
            mu.fill_(1.0)
            # fc neurons: log alpha in [-1, 3), most eligible; conv channels not (a conv channel
            # moves the FLOPs in steps too coarse to tell where the event stopped)
            fc = g[0].startswith("fc")
            logvar.copy_(torch.rand(logvar.shape) * 4 - 1 if fc else -torch.ones(logvar.shape))
    start = all_task_flops(net, masks.widths(net))
    everything = NeuronMasks(net)
    vib_event(net, everything, gates, None)  # the literal rule: every eligible gate
    target = (start + all_task_flops(net, everything.widths(net))) / 2
    removed = vib_event(net, masks, gates, target)
    widths = masks.widths(net)
    assert removed > 0 and all_task_flops(net, widths) <= target
    la = {(g, i): float(v) for g in gates.positions
          for i, v in enumerate((gates.params(g)[1] - gates.params(g)[0].pow(2).log()).tolist())}
    masked = [k for k in la if not bool(masks.keep[(gates.owner[k[0]], k[0][1])][k[1]])]
    kept = [k for k in la if k not in masked and la[k] >= 0]
    assert len(masked) == removed and all(la[k] >= 0 for k in masked)
    assert min(la[k] for k in masked) >= max((la[k] for k in kept), default=-1.0)  # largest first
    # minimal: one removal fewer is still above the target (plain count of the FLOPs by hand)
    last = min(masked, key=lambda k: la[k])
    group = (gates.owner[last[0]], last[0][1])
    widths[group[0]][group[1]] += 1
    assert all_task_flops(net, widths) > target
    assert int(sum((~k).sum() for k in everything.keep.values())) > removed  # the literal rule masks all


@pytest.mark.parametrize("method", ["taylor", "vib"])
def test_an_interrupted_schedule_resumes_exactly(tmp_path, data, method):
    """Same machine, same threads: the resumed curve equals the uninterrupted one exactly."""
    config = cfg(reference_accuracy={"A": 0.0, "B": 0.0}, vib_lr=5e-2)
    whole = run_schedule(method, merged_net(), data, config).extra["curve"]

    class Stop(Exception):
        pass

    class Interrupted(FolderStore):
        def save(self, point, net, state):
            super().save(point, net, state)
            if point["index"] == 2:
                raise Stop
    with pytest.raises(Stop):
        run_schedule(method, merged_net(), data, config, store=Interrupted(tmp_path, "k"))
    store = FolderStore(tmp_path, "k")
    state = store.resume_state()
    assert state is not None and len(state.meta["points"]) == 3
    assert FolderStore(tmp_path, "another key").resume_state() is None
    resumed = run_schedule(method, merged_net(), data, config, store=store, resume=state).extra["curve"]
    strip = lambda c: [{k: v for k, v in p.items() if k != "seconds"} for p in c]  # noqa: E731
    assert strip(resumed) == strip(whole)
