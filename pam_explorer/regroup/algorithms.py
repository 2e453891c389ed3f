"""Neuron regrouping of merged layers: the paper's Algorithms 2 and 3 (He et al., KDD 2021).

For an exclusive task subset tau, the greedy grows L'^tau by repeatedly adding the neuron that
minimises I(L'^tau ∪ {j}; Y^{not tau}) while that MI stays <= alpha. The argmin sequence does
not depend on alpha, so it is computed once to the end (alpha = infinity, a ``Trajectory``;
the paper's MI phase curve, Fig. 8) and any alpha is answered by a prefix cut: the longest
prefix whose every score is <= alpha (bisect on the running maximum). This is the paper's
incremental alpha tuning (Sec. 5.2), exact and instant. The score of a step is the set's MI
minus its chance level (the mean estimate under label permutations; 0 when the trajectory was
computed without them), so alpha reads as "bits beyond chance".

A neuron picked by more than one exclusive set (Algorithm 2 line 16, Algorithm 3 lines 15-18)
carries little information about any task. ``both_picked="drop"`` removes it from the network,
as the paper and the authors' code do; ``"share"`` puts it in the shared group (this project's
first rule). See docs/estimator.md for what each measures like.

Neuron ids of a merged layer are global: network 0's C_0 neurons are 0..C_0-1, network 1's
follow, and so on (concatenation in task order). Activations passed here are expected to be
RMS-normalised already (``mutual_info.rms_normalise``, per original network's layer).
Task subsets are tuples of task names here; :func:`pam_explorer.core.subsets.subset_key` names them.
"""
from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

import torch

from pam_explorer.core import validate
from pam_explorer.core.config import BOTH_PICKED, RegroupConfig
from pam_explorer.core.errors import ConfigError, DataError, StructureError
from pam_explorer.regroup.greedy import DEFAULT_MAX_CHUNK_BYTES, greedy_run, greedy_steps

Tensor = torch.Tensor
Progress = Callable[[int, int], None]
TaskSubset = tuple[str, ...]  # task names in the preset's task order, e.g. ("A",), ("A", "B")


@dataclass(frozen=True)
class Trajectory:
    """One greedy run for exclusive subset ``subset`` on one layer, to the end (alpha = inf).

    order[k]: neuron added at step k; mi[k]: I(set after step k; Y^{not subset}) in bits;
    null[k]: that set's chance level in bits (mean MI under label permutations; () = not
    computed, read as 0); candidates: neuron ids the run could pick from (order is a
    permutation of them).
    """

    layer: str
    subset: TaskSubset
    order: tuple[int, ...]
    mi: tuple[float, ...]
    candidates: tuple[int, ...]
    null: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if len(self.order) != len(self.mi):
            raise DataError(f"order and mi differ in length ({len(self.order)} vs {len(self.mi)})")
        if self.null and len(self.null) != len(self.mi):
            raise DataError(f"null and mi differ in length ({len(self.null)} vs {len(self.mi)})")
        if sorted(self.order) != sorted(self.candidates):
            raise DataError("order must be a permutation of candidates")

    @cached_property
    def score(self) -> tuple[float, ...]:
        """mi[k] - null[k]: information beyond chance (bits); what alpha is compared with."""
        return tuple(m - n for m, n in zip(self.mi, self.null)) if self.null else tuple(self.mi)

    @cached_property
    def running_max(self) -> tuple[float, ...]:
        """max(score[0..k]) for every k: non-decreasing, so cuts are a bisect."""
        return tuple(itertools.accumulate(self.score, max))


@dataclass(frozen=True)
class LayerGroups:
    """Result of regrouping one layer: neuron ids per task-subset group.

    width: total neurons (sum of the K networks' widths at this layer). Every neuron is in
    exactly one group or in ``dropped`` (left out of the merged network); the all-task key
    (shared group) is always present, maybe empty.
    """

    layer: str
    width: int
    groups: dict[TaskSubset, tuple[int, ...]]
    dropped: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        ids = sorted([i for g in self.groups.values() for i in g] + list(self.dropped))
        if ids != list(range(self.width)):
            raise StructureError(f"groups and dropped neurons of layer {self.layer!r} must "
                                 f"partition 0..{self.width - 1}")

    @property
    def all_tasks(self) -> TaskSubset:
        """The shared group's key (the largest subset)."""
        return max(self.groups, key=len)

    @property
    def kept(self) -> int:
        """Neurons the merged layer keeps (width minus dropped)."""
        return self.width - len(self.dropped)

    def sharing_ratio(self) -> float:
        """Fraction of the kept neurons in the shared (all-task) group."""
        return len(self.groups[self.all_tasks]) / self.kept if self.kept else 0.0


def _check_tasks(tasks: tuple[str, ...], targets: Mapping[str, Tensor] | None = None) -> None:
    if not tasks or len(set(tasks)) != len(tasks):
        raise StructureError(f"tasks must be a non-empty tuple of distinct names, got {tasks!r}")
    missing = [t for t in tasks if targets is not None and t not in targets]
    if missing:
        raise DataError(f"no targets for task(s) {missing}")


def _labels_except(targets: Mapping[str, Tensor], tasks: Iterable[str],
                   subset: TaskSubset) -> Tensor:
    """Y^{not subset}: the other tasks' label columns side by side -> (N, sum L_t)."""
    cols = [targets[t] if targets[t].dim() == 2 else targets[t].unsqueeze(1)
            for t in tasks if t not in subset]
    return torch.cat(cols, 1)


def cut(traj: Trajectory, alpha: float) -> int:
    """Neurons the greedy run from scratch at ``alpha`` selects: the longest prefix of
    ``traj.order`` whose every score (MI minus chance level) is <= alpha; none at alpha = 0,
    so alpha = 0 always shares every neuron (a chance-corrected score can be negative, and
    "no information at all" is what 0 means on the slider). O(log n)."""
    validate.alpha(alpha)
    return bisect.bisect_right(traj.running_max, alpha) if alpha > 0 else 0


def max_mi(trajs: Mapping[TaskSubset, Trajectory]) -> float:
    """Largest score (bits) on any of a layer's trajectories: no alpha above it changes a cut."""
    return max((t.running_max[-1] for t in trajs.values() if t.mi), default=0.0)


BOTH_PICKED_RULES = BOTH_PICKED


def _assemble(layer: str, width: int, tasks: TaskSubset,
              picked: Mapping[TaskSubset, Iterable[int]], both_picked: str = "share") -> LayerGroups:
    """Exclusive groups from the sets each subset picked; a neuron picked by no subset goes to
    the shared (all-task) group, one picked by more than one is shared or dropped (``both_picked``).
    Dropping never empties the shared group: where every neuron left would be dropped (conv1 of
    the digits nets: both searches take every channel), they are shared (a layer without shared
    neurons cuts every task's path through the shared groups)."""
    _check_rule(both_picked)
    count: dict[int, int] = {}
    for ids in picked.values():
        for i in ids:
            count[i] = count.get(i, 0) + 1
    groups = {s: tuple(sorted(i for i in ids if count[i] == 1)) for s, ids in picked.items()}
    dropped = tuple(sorted(i for i, c in count.items() if c > 1)) if both_picked == "drop" else ()
    taken = {i for g in groups.values() for i in g} | set(dropped)
    shared = tuple(i for i in range(width) if i not in taken)
    if dropped and not shared:
        shared, dropped = dropped, ()
    groups[tasks] = shared
    return LayerGroups(layer, width, groups, dropped)


def _check_rule(both_picked: str) -> None:
    if both_picked not in BOTH_PICKED_RULES:
        raise ConfigError(f"both_picked must be one of {list(BOTH_PICKED_RULES)}, got {both_picked!r}")


def layer_trajectories(acts: Tensor, targets: Mapping[str, Tensor], tasks: TaskSubset,
                       sigma2: float, bound: str = "kl", label_mode: str = "sum",
                       progress: Progress | None = None, layer: str = "",
                       max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES, kernel: str = "fixed",
                       null_perms: int = 0, null_seed: int = 0) -> dict[TaskSubset, Trajectory]:
    """Trajectories of the simplified Algorithm 3 (n = 1; exactly Algorithm 2 for K = 2).

    acts: (N, C_total) merged layer; targets: task -> (N, L_t) binary labels. For every task
    t, tau = (t,) runs over all neurons against Y^{not tau}; kernel, null_perms and null_seed
    as in :func:`pam_explorer.regroup.greedy.greedy_steps`. K = 1 gives {} (nothing to
    separate). progress(done, total) counts greedy steps over all runs.
    """
    _check_tasks(tasks, targets)
    C = acts.shape[1]
    total = C * len(tasks) if len(tasks) > 1 else 0
    out: dict[TaskSubset, Trajectory] = {}
    for r, task in enumerate(tasks if len(tasks) > 1 else ()):
        tau = (task,)
        step = None if progress is None else (lambda k, n, r=r: progress(r * C + k, total))
        run = greedy_run(acts, _labels_except(targets, tasks, tau), sigma2, bound, label_mode,
                         progress=step, max_chunk_bytes=max_chunk_bytes, kernel=kernel,
                         null_perms=null_perms, null_seed=null_seed)
        out[tau] = Trajectory(layer, tau, tuple(run.order.tolist()), tuple(run.mi.tolist()),
                              tuple(range(C)), tuple(run.null.tolist()) if null_perms else ())
    return out


def groups_at(trajs: Mapping[TaskSubset, Trajectory], width: int, tasks: TaskSubset,
              alpha: float, layer: str = "", both_picked: str = "share") -> LayerGroups:
    """Groups of the simplified algorithm at ``alpha`` from precomputed trajectories.

    Exclusive set of task t = cut prefix of its trajectory; a neuron in more than one
    exclusive set is shared or dropped (``both_picked``); all others are shared.
    """
    validate.alpha(alpha)
    _check_tasks(tasks)
    if len(tasks) == 1:
        return LayerGroups(layer, width, {tasks: tuple(range(width))})
    missing = [t for t in tasks if (t,) not in trajs]
    if missing:
        raise DataError(f"no trajectory for task(s) {missing}")
    picked = {(t,): trajs[(t,)].order[:cut(trajs[(t,)], alpha)] for t in tasks}
    return _assemble(layer, width, tasks, picked, both_picked)


def _greedy_until(acts: Tensor, Y: Tensor, alpha: float, candidates: list[int],
                  search: Mapping) -> list[int]:
    """The paper's threshold loop: add the argmin neuron while the score (MI minus chance level)
    of the grown set stays <= alpha. ``search``: greedy_steps' keyword settings."""
    chosen: list[int] = []
    if not candidates or alpha <= 0:  # alpha = 0 selects nothing, as :func:`cut`
        return chosen
    for j, mi, null in greedy_steps(acts, Y, candidates=torch.tensor(candidates, dtype=torch.long),
                                    **search):
        if mi - null > alpha:
            break
        chosen.append(j)
    return chosen


def _search(sigma2: float, bound: str, label_mode: str, max_chunk_bytes: int, kernel: str,
            null_perms: int, null_seed: int) -> dict:
    return {"sigma2": sigma2, "bound": bound, "label_mode": label_mode, "kernel": kernel,
            "max_chunk_bytes": max_chunk_bytes, "null_perms": null_perms, "null_seed": null_seed}


def regroup_from_scratch(acts: Tensor, targets: Mapping[str, Tensor], tasks: TaskSubset,
                         alpha: float, sigma2: float, bound: str = "kl",
                         label_mode: str = "sum", layer: str = "",
                         max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES, kernel: str = "fixed",
                         null_perms: int = 0, null_seed: int = 0,
                         both_picked: str = "share") -> LayerGroups:
    """Reference for ``groups_at``: simplified Algorithm 3 with the alpha test inside the
    greedy loop (no trajectories). acts: (N, C_total)."""
    validate.alpha(alpha)
    _check_tasks(tasks, targets)
    C = acts.shape[1]
    if len(tasks) == 1:
        return LayerGroups(layer, C, {tasks: tuple(range(C))})
    search = _search(sigma2, bound, label_mode, max_chunk_bytes, kernel, null_perms, null_seed)
    picked = {(t,): _greedy_until(acts, _labels_except(targets, tasks, (t,)), alpha, list(range(C)),
                                  search) for t in tasks}
    return _assemble(layer, C, tasks, picked, both_picked)


def regroup_full(acts: Tensor, targets: Mapping[str, Tensor], tasks: TaskSubset,
                 alpha: float, sigma2: float, bound: str = "kl", label_mode: str = "sum",
                 progress: Progress | None = None, layer: str = "",
                 max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES, kernel: str = "fixed",
                 null_perms: int = 0, null_seed: int = 0, both_picked: str = "share") -> LayerGroups:
    """Full Algorithm 3: levels n = 1..K-1, every subset tau with |tau| = n greedily picks
    from the remaining set S against Y^{not tau}.

    A neuron picked by two subsets of one level: ``both_picked="drop"`` is the paper (lines
    15-18: it leaves every set AND S, so it is dropped from the network); ``"share"`` keeps it
    in S, where it competes at the next level and can still join a larger subset's group.
    Whatever is left in S at the end is the all-task group. Depends on alpha beyond a prefix
    cut (S shrinks after each level), so callers cache results per alpha. For K = 2 it equals
    the simplified one. acts: (N, C_total). progress(done, total) counts greedy runs (2^K - 2).
    """
    validate.alpha(alpha)
    _check_tasks(tasks, targets)
    _check_rule(both_picked)
    C, K = acts.shape[1], len(tasks)
    search = _search(sigma2, bound, label_mode, max_chunk_bytes, kernel, null_perms, null_seed)
    remaining, dropped = list(range(C)), []
    groups: dict[TaskSubset, tuple[int, ...]] = {}
    done, total = 0, 2 ** K - 2
    for n in range(1, K):
        picked: dict[TaskSubset, list[int]] = {}
        for tau in itertools.combinations(tasks, n):
            picked[tau] = _greedy_until(acts, _labels_except(targets, tasks, tau), alpha, remaining, search)
            done += 1
            if progress is not None:
                progress(done, total)
        count: dict[int, int] = {}
        for ids in picked.values():
            for i in ids:
                count[i] = count.get(i, 0) + 1
        for tau, ids in picked.items():
            groups[tau] = tuple(sorted(i for i in ids if count[i] == 1))
        if both_picked == "drop":
            dropped += [i for i in remaining if count.get(i, 0) > 1]
            remaining = [i for i in remaining if count.get(i, 0) == 0]
        else:
            remaining = [i for i in remaining if count.get(i, 0) != 1]
    if dropped and not remaining:  # as in _assemble: dropping never empties the shared group
        remaining, dropped = sorted(dropped), []
    groups[tasks] = tuple(remaining)
    return LayerGroups(layer, C, groups, tuple(sorted(dropped)))


def phases(traj: Trajectory, flat_frac: float = 0.05,
           saturate_frac: float = 0.95) -> tuple[tuple[str, int, int], ...]:
    """The three phases of an MI trajectory (paper Fig. 8 / Appendix C) as half-open step
    ranges: (("flat", 0, k1), ("rising", k1, k2), ("saturating", k2, n)).

    Rule, on the running maximum m_k of the MI and its final value M: flat while
    m_k <= flat_frac * M; saturating from the first step with m_k >= saturate_frac * M;
    rising in between. Ranges may be empty; a curve with M <= 0 is flat throughout.
    """
    if not 0.0 <= flat_frac <= saturate_frac <= 1.0:
        raise ConfigError("need 0 <= flat_frac <= saturate_frac <= 1")
    rm, n = traj.running_max, len(traj.mi)
    final = rm[-1] if n else 0.0
    if final <= 0.0:
        return (("flat", 0, n), ("rising", n, n), ("saturating", n, n))
    k1 = bisect.bisect_right(rm, flat_frac * final)
    k2 = max(k1, bisect.bisect_left(rm, saturate_frac * final))
    return (("flat", 0, k1), ("rising", k1, k2), ("saturating", k2, n))


def shared_count_vs_alpha(trajs: Mapping[TaskSubset, Trajectory], width: int,
                          tasks: TaskSubset, alphas: Iterable[float],
                          both_picked: str = "share") -> list[int]:
    """Number of shared neurons for every alpha (paper Fig. 7a); each is a few cuts."""
    return [len(groups_at(trajs, width, tasks, a, both_picked=both_picked).groups[tasks])
            for a in alphas]


def regroup_all(layer_trajs: Mapping[str, Mapping[TaskSubset, Trajectory]],
                widths: Mapping[str, int], tasks: TaskSubset,
                config: RegroupConfig) -> dict[str, LayerGroups]:
    """Groups of every layer at its alpha (``config.alpha_for(layer)``), from trajectories.

    Only the simplified algorithm works from trajectories; ``config.algorithm == "full"``
    with K > 2 needs activations (``regroup_full``) and raises ConfigError here.
    """
    if config.algorithm == "full" and len(tasks) > 2:
        raise ConfigError("the full Algorithm 3 depends on alpha beyond a prefix cut: "
                          "use regroup_full with the layer's activations")
    missing = [name for name in layer_trajs if name not in widths]
    if missing:
        raise DataError(f"no width for layer(s) {missing}")
    return {name: groups_at(trajs, widths[name], tasks, config.alpha_for(name), name, config.both_picked)
            for name, trajs in layer_trajs.items()}


__all__ = [
    "TaskSubset", "Trajectory", "LayerGroups", "cut", "max_mi", "layer_trajectories",
    "groups_at", "regroup_from_scratch", "regroup_full", "phases", "shared_count_vs_alpha",
    "regroup_all", "BOTH_PICKED_RULES",
]
