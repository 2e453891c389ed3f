"""Tests of regrouping: trajectory cuts vs the from-scratch algorithm, full Algorithm 3, phases."""
from __future__ import annotations

import math

import pytest
import torch

from pam_explorer.core.config import RegroupConfig
from pam_explorer.core.subsets import subset_key as subset_name
from pam_explorer.regroup.algorithms import (
    LayerGroups,
    Trajectory,
    cut,
    groups_at,
    layer_trajectories,
    phases,
    regroup_all,
    regroup_from_scratch,
    regroup_full,
    shared_count_vs_alpha,
)
from pam_explorer.regroup.mutual_info import rms_normalise

F64 = torch.float64
SIGMA2 = 0.2


def _merged_layer(tasks: tuple[str, ...], seed: int = 0, N: int = 40,
                  width: int = 6) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """K networks of ``width`` neurons each, concatenated in task order; network t's
    neurons mostly encode task t's two labels, some also the others'."""
    g = torch.Generator().manual_seed(seed)
    targets = {t: (torch.rand(N, 2, generator=g) < 0.5).to(F64) for t in tasks}
    parts = []
    for t in tasks:
        own = targets[t] @ torch.randn(2, width, generator=g, dtype=F64)
        other = sum(targets[u] @ torch.randn(2, width, generator=g, dtype=F64) for u in tasks)
        mix = (torch.rand(width, generator=g) < 0.3).to(F64) * 0.7
        z = torch.randn(N, width, generator=g, dtype=F64) * 0.5 + own + mix * other
        parts.append(rms_normalise(torch.relu(z)))
    return torch.cat(parts, 1), targets


def _alphas(trajs: dict) -> list[float]:
    """Every distinct MI value, midpoints between them, values just around them, 0, inf."""
    vals = sorted({v for tr in trajs.values() for v in tr.mi})
    mids = [(a + b) / 2 for a, b in zip(vals, vals[1:])]
    near = [v * (1 + s) for v in vals[::3] for s in (-1e-9, 1e-9)]
    return [0.0, math.inf, vals[0] / 2, vals[-1] * 2] + vals + mids + near


@pytest.fixture(scope="module")
def two_task() -> tuple[torch.Tensor, dict, tuple[str, ...], dict]:
    tasks = ("A", "B")
    acts, targets = _merged_layer(tasks)
    return acts, targets, tasks, layer_trajectories(acts, targets, tasks, SIGMA2, layer="fc1")


def test_trajectories_shape(two_task) -> None:
    acts, _, tasks, trajs = two_task
    assert set(trajs) == {("A",), ("B",)}
    for tau, tr in trajs.items():
        assert tr.layer == "fc1" and tr.subset == tau and tr.candidates == tuple(range(12))
        assert sorted(tr.order) == list(range(12)) and len(tr.mi) == 12


def test_cut_equals_from_scratch_for_many_alphas(two_task) -> None:
    acts, targets, tasks, trajs = two_task
    alphas = _alphas(trajs)
    assert len(alphas) > 30
    for alpha in alphas:
        fast = groups_at(trajs, acts.shape[1], tasks, alpha, "fc1")
        ref = regroup_from_scratch(acts, targets, tasks, alpha, SIGMA2, layer="fc1")
        assert fast == ref, alpha


def test_cut_equals_from_scratch_joint_bd() -> None:
    tasks = ("A", "B", "C")
    acts, targets = _merged_layer(tasks, seed=1, width=4)
    trajs = layer_trajectories(acts, targets, tasks, SIGMA2, "bd", "joint")
    for alpha in _alphas(trajs)[::2]:
        assert groups_at(trajs, 12, tasks, alpha) == regroup_from_scratch(
            acts, targets, tasks, alpha, SIGMA2, "bd", "joint")


def test_cut_semantics() -> None:
    tr = Trajectory("l", ("A",), (3, 1, 0, 2), (0.1, 0.05, 0.3, 0.2), (0, 1, 2, 3))
    assert tr.running_max == (0.1, 0.1, 0.3, 0.3)
    expected = {0.0: 0, 0.09: 0, 0.1: 2, 0.2: 2, 0.29: 2, 0.3: 4, math.inf: 4}
    assert {a: cut(tr, a) for a in expected} == expected


def test_groups_at_shares_neurons_picked_twice() -> None:
    ta = Trajectory("l", ("A",), (0, 1, 2, 3, 4), (0.0, 0.1, 0.2, 0.3, 0.4), tuple(range(5)))
    tb = Trajectory("l", ("B",), (4, 1, 3, 2, 0), (0.0, 0.1, 0.2, 0.3, 0.4), tuple(range(5)))
    g = groups_at({("A",): ta, ("B",): tb}, 5, ("A", "B"), 0.15, "l")
    assert g.groups == {("A",): (0,), ("B",): (4,), ("A", "B"): (1, 2, 3)}
    assert g.sharing_ratio() == pytest.approx(0.6) and g.all_tasks == ("A", "B")
    everything = groups_at({("A",): ta, ("B",): tb}, 5, ("A", "B"), math.inf)
    assert everything.groups[("A", "B")] == (0, 1, 2, 3, 4)  # picked by both -> shared
    # alpha = 0 shares everything, even a neuron whose score is exactly 0 (cut() selects none)
    assert shared_count_vs_alpha({("A",): ta, ("B",): tb}, 5, ("A", "B"),
                                 [0.0, 0.05, 0.15, 0.35, math.inf]) == [5, 3, 3, 3, 5]


def test_shared_count_vs_alpha_matches_groups(two_task) -> None:
    acts, _, tasks, trajs = two_task
    alphas = _alphas(trajs)
    counts = shared_count_vs_alpha(trajs, acts.shape[1], tasks, alphas)
    assert counts == [len(groups_at(trajs, 12, tasks, a).groups[tasks]) for a in alphas]
    assert min(counts) < 12  # some alpha separates neurons


def test_full_equals_simplified_for_two_tasks(two_task) -> None:
    acts, targets, tasks, trajs = two_task
    for alpha in _alphas(trajs)[::4]:
        assert regroup_full(acts, targets, tasks, alpha, SIGMA2) == groups_at(
            trajs, 12, tasks, alpha)


def test_full_three_tasks_partitions() -> None:
    tasks = ("A", "B", "C")
    acts, targets = _merged_layer(tasks, seed=2, width=4)
    trajs = layer_trajectories(acts, targets, tasks, SIGMA2)
    keys = {("A",), ("B",), ("C",), ("A", "B"), ("A", "C"), ("B", "C"), tasks}
    runs: list[tuple[int, int]] = []
    seen_pair = False
    for alpha in sorted({v for tr in trajs.values() for v in tr.mi})[::3] + [0.0, math.inf]:
        g = regroup_full(acts, targets, tasks, alpha, SIGMA2,
                         progress=lambda d, n: runs.append((d, n)))
        assert set(g.groups) == keys and g.width == 12  # partition checked by LayerGroups
        seen_pair |= any(g.groups[k] for k in keys if len(k) == 2)
        # the first level is the simplified algorithm's exclusive sets
        simple = groups_at(trajs, 12, tasks, alpha)
        for t in tasks:
            assert g.groups[(t,)] == simple.groups[(t,)]
    assert runs[-1] == (6, 6)
    assert seen_pair


def test_phases_on_synthetic_curve() -> None:
    n = 100
    mi = tuple(2.0 / (1 + math.exp(-(k - 50) / 5)) for k in range(n))
    tr = Trajectory("l", ("A",), tuple(range(n)), mi, tuple(range(n)))
    (f, f0, f1), (r, r0, r1), (s, s0, s1) = phases(tr)
    assert (f, r, s) == ("flat", "rising", "saturating")
    assert f0 == 0 and f1 == r0 and r1 == s0 and s1 == n
    assert all(v <= 0.05 * mi[-1] for v in mi[:f1]) and mi[f1] > 0.05 * mi[-1]
    assert mi[s0] >= 0.95 * mi[-1] > mi[s0 - 1]
    assert 25 < f1 < 40 and 60 < s0 < 75
    zero = Trajectory("l", ("A",), (0, 1), (0.0, 0.0), (0, 1))
    assert phases(zero) == (("flat", 0, 2), ("rising", 2, 2), ("saturating", 2, 2))


def test_regroup_all_uses_per_layer_alpha(two_task) -> None:
    acts, _, tasks, trajs = two_task
    vals = sorted(trajs[("A",)].mi)
    cfg = RegroupConfig(alpha=0.0, overrides=(("fc2", vals[len(vals) // 2]),))
    out = regroup_all({"fc1": trajs, "fc2": trajs}, {"fc1": 12, "fc2": 12}, tasks, cfg)
    assert out["fc1"] == groups_at(trajs, 12, tasks, 0.0, "fc1")
    assert out["fc2"] == groups_at(trajs, 12, tasks, vals[len(vals) // 2], "fc2")
    assert out["fc2"].layer == "fc2"
    with pytest.raises(ValueError, match="regroup_full"):
        regroup_all({}, {}, ("A", "B", "C"), RegroupConfig(algorithm="full"))


def test_single_task_layer_is_all_shared() -> None:
    acts, targets = _merged_layer(("A",))
    assert layer_trajectories(acts, targets, ("A",), SIGMA2) == {}
    g = groups_at({}, 6, ("A",), 0.1)
    assert g.groups == {("A",): tuple(range(6))} and g.sharing_ratio() == 1.0
    assert regroup_full(acts, targets, ("A",), 0.1, SIGMA2) == g


def test_deterministic_and_progress() -> None:
    tasks = ("A", "B")
    acts, targets = _merged_layer(tasks, seed=3)
    calls: list[tuple[int, int]] = []
    first = layer_trajectories(acts, targets, tasks, SIGMA2, progress=lambda k, n: calls.append((k, n)))
    assert first == layer_trajectories(acts, targets, tasks, SIGMA2)
    assert calls[-1] == (24, 24) and len(calls) == 24


def test_bad_alpha_and_input(two_task) -> None:
    acts, targets, tasks, trajs = two_task
    tr = trajs[("A",)]
    for alpha in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="alpha"):
            cut(tr, alpha)
        with pytest.raises(ValueError, match="alpha"):
            groups_at(trajs, 12, tasks, alpha)
        with pytest.raises(ValueError, match="alpha"):
            regroup_full(acts, targets, tasks, alpha, SIGMA2)
        with pytest.raises(ValueError, match="alpha"):
            regroup_from_scratch(acts, targets, tasks, alpha, SIGMA2)
    assert cut(tr, math.inf) == 12
    with pytest.raises(ValueError, match="targets"):
        layer_trajectories(acts, {"A": targets["A"]}, tasks, SIGMA2)
    with pytest.raises(ValueError, match="trajectory"):
        groups_at({("A",): tr}, 12, tasks, 0.1)
    with pytest.raises(ValueError, match="permutation"):
        Trajectory("l", ("A",), (0, 0), (0.1, 0.2), (0, 1))
    with pytest.raises(ValueError, match="length"):
        Trajectory("l", ("A",), (0, 1), (0.1,), (0, 1))
    with pytest.raises(ValueError, match="partition"):
        LayerGroups("l", 3, {("A",): (0,), ("A", "B"): (0, 1, 2)})


def test_subset_name() -> None:
    assert subset_name(("A", "B")) == "A+B" and subset_name(("A",)) == "A"


def test_cut_equals_from_scratch_with_chance_level() -> None:
    """With label permutations (null_perms > 0, the default 16 of MIConfig) alpha is compared
    with MI minus chance level: the trajectory cut and the threshold loop that subtracts the
    chance level at every step must agree at every score and between them, and the chance level
    must change some groups."""
    tasks = ("A", "B")
    acts, targets = _merged_layer(tasks, seed=4, N=32, width=5)
    trajs = layer_trajectories(acts, targets, tasks, SIGMA2, null_perms=4, null_seed=1)
    assert all(tr.null and min(tr.null) > 0 for tr in trajs.values())  # a real chance level
    plain = layer_trajectories(acts, targets, tasks, SIGMA2)
    # the score (MI minus chance level) rises and falls: the loop must stop at the first step
    # above alpha, which is what the cut on the running maximum does
    assert any(min(d) < 0 for d in (torch.tensor(tr.score).diff() for tr in trajs.values()))
    scores = sorted({v for tr in trajs.values() for v in tr.score})
    alphas = [a for a in scores + [(x + y) / 2 for x, y in zip(scores, scores[1:])] if a > 0]
    differs = False
    for alpha in alphas:
        ref = regroup_from_scratch(acts, targets, tasks, alpha, SIGMA2, null_perms=4, null_seed=1)
        assert groups_at(trajs, 10, tasks, alpha) == ref, alpha
        differs |= ref != groups_at(plain, 10, tasks, alpha)
    assert differs  # subtracting the chance level changes what a given alpha selects
