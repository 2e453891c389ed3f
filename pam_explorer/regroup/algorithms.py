"""Neuron regrouping of merged layers: the paper's Algorithms 2 and 3 (He et al., KDD 2021).

For an exclusive task subset tau, the greedy grows L'^tau by repeatedly adding the neuron that
minimises I(L'^tau ∪ {j}; Y^{not tau}) while that MI stays <= alpha. The argmin sequence does
not depend on alpha, so it is computed once to the end (alpha = infinity, a ``Trajectory``;
the paper's MI phase curve, Fig. 8) and any alpha is answered by a prefix cut: the longest
prefix whose every MI value is <= alpha (bisect on the running maximum). This is the paper's
incremental alpha tuning (Sec. 5.2), exact and instant.

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
from pam_explorer.core.config import RegroupConfig
from pam_explorer.core.errors import ConfigError, DataError, StructureError
from pam_explorer.regroup.mutual_info import DEFAULT_MAX_CHUNK_BYTES, greedy_steps, greedy_trajectory

Tensor = torch.Tensor
Progress = Callable[[int, int], None]
TaskSubset = tuple[str, ...]  # task names in the preset's task order, e.g. ("A",), ("A", "B")


@dataclass(frozen=True)
class Trajectory:
    """One greedy run for exclusive subset ``subset`` on one layer, to the end (alpha = inf).

    order[k]: neuron added at step k; mi[k]: I(set after step k; Y^{not subset}) in bits;
    candidates: neuron ids the run could pick from (order is a permutation of them).
    """

    layer: str
    subset: TaskSubset
    order: tuple[int, ...]
    mi: tuple[float, ...]
    candidates: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.order) != len(self.mi):
            raise DataError(f"order and mi differ in length ({len(self.order)} vs {len(self.mi)})")
        if sorted(self.order) != sorted(self.candidates):
            raise DataError("order must be a permutation of candidates")

    @cached_property
    def running_max(self) -> tuple[float, ...]:
        """max(mi[0..k]) for every k: non-decreasing, so cuts are a bisect."""
        return tuple(itertools.accumulate(self.mi, max))


@dataclass(frozen=True)
class LayerGroups:
    """Result of regrouping one layer: neuron ids per task-subset group.

    width: total neurons (sum of the K networks' widths at this layer). Every neuron is in
    exactly one group; the all-task key (shared group) is always present, maybe empty.
    """

    layer: str
    width: int
    groups: dict[TaskSubset, tuple[int, ...]]

    def __post_init__(self) -> None:
        ids = sorted(i for g in self.groups.values() for i in g)
        if ids != list(range(self.width)):
            raise StructureError(f"groups of layer {self.layer!r} must partition 0..{self.width - 1}")

    @property
    def all_tasks(self) -> TaskSubset:
        """The shared group's key (the largest subset)."""
        return max(self.groups, key=len)

    def sharing_ratio(self) -> float:
        """Fraction of the layer's neurons in the shared (all-task) group."""
        return len(self.groups[self.all_tasks]) / self.width if self.width else 0.0


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
    ``traj.order`` whose every MI value is <= alpha. O(log n)."""
    validate.alpha(alpha)
    return bisect.bisect_right(traj.running_max, alpha)


def max_mi(trajs: Mapping[TaskSubset, Trajectory]) -> float:
    """Largest MI (bits) on any of a layer's trajectories: no alpha above it changes the cut."""
    return max((t.running_max[-1] for t in trajs.values() if t.mi), default=0.0)


def _assemble(layer: str, width: int, tasks: TaskSubset,
              picked: Mapping[TaskSubset, Iterable[int]]) -> LayerGroups:
    """Exclusive groups from the sets each subset picked; a neuron picked by more than one
    subset, or by none, goes to the shared (all-task) group."""
    count: dict[int, int] = {}
    for ids in picked.values():
        for i in ids:
            count[i] = count.get(i, 0) + 1
    groups = {s: tuple(sorted(i for i in ids if count[i] == 1)) for s, ids in picked.items()}
    taken = {i for g in groups.values() for i in g}
    groups[tasks] = tuple(i for i in range(width) if i not in taken)
    return LayerGroups(layer, width, groups)


def layer_trajectories(acts: Tensor, targets: Mapping[str, Tensor], tasks: TaskSubset,
                       sigma2: float, bound: str = "kl", label_mode: str = "sum",
                       progress: Progress | None = None, layer: str = "",
                       max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES
                       ) -> dict[TaskSubset, Trajectory]:
    """Trajectories of the simplified Algorithm 3 (n = 1; exactly Algorithm 2 for K = 2).

    acts: (N, C_total) merged layer; targets: task -> (N, L_t) binary labels. For every task
    t, tau = (t,) runs over all neurons against Y^{not tau}. K = 1 gives {} (nothing to
    separate). progress(done, total) counts greedy steps over all runs.
    """
    _check_tasks(tasks, targets)
    C = acts.shape[1]
    total = C * len(tasks) if len(tasks) > 1 else 0
    out: dict[TaskSubset, Trajectory] = {}
    for r, task in enumerate(tasks if len(tasks) > 1 else ()):
        tau = (task,)
        step = None if progress is None else (lambda k, n, r=r: progress(r * C + k, total))
        order, mi = greedy_trajectory(acts, _labels_except(targets, tasks, tau), sigma2, bound,
                                      label_mode, progress=step, max_chunk_bytes=max_chunk_bytes)
        out[tau] = Trajectory(layer, tau, tuple(order.tolist()), tuple(mi.tolist()),
                              tuple(range(C)))
    return out


def groups_at(trajs: Mapping[TaskSubset, Trajectory], width: int, tasks: TaskSubset,
              alpha: float, layer: str = "") -> LayerGroups:
    """Groups of the simplified algorithm at ``alpha`` from precomputed trajectories.

    Exclusive set of task t = cut prefix of its trajectory; neurons in more than one
    exclusive set, and all others, are shared.
    """
    validate.alpha(alpha)
    _check_tasks(tasks)
    if len(tasks) == 1:
        return LayerGroups(layer, width, {tasks: tuple(range(width))})
    missing = [t for t in tasks if (t,) not in trajs]
    if missing:
        raise DataError(f"no trajectory for task(s) {missing}")
    picked = {(t,): trajs[(t,)].order[:cut(trajs[(t,)], alpha)] for t in tasks}
    return _assemble(layer, width, tasks, picked)


def _greedy_until(acts: Tensor, Y: Tensor, alpha: float, sigma2: float, bound: str,
                  label_mode: str, candidates: list[int], max_chunk_bytes: int) -> list[int]:
    """The paper's threshold loop: add the argmin neuron while the MI after adding it <= alpha."""
    chosen: list[int] = []
    if not candidates:
        return chosen
    for j, mi in greedy_steps(acts, Y, sigma2, bound, label_mode,
                              torch.tensor(candidates, dtype=torch.long), max_chunk_bytes):
        if mi > alpha:
            break
        chosen.append(j)
    return chosen


def regroup_from_scratch(acts: Tensor, targets: Mapping[str, Tensor], tasks: TaskSubset,
                         alpha: float, sigma2: float, bound: str = "kl",
                         label_mode: str = "sum", layer: str = "",
                         max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES) -> LayerGroups:
    """Reference for ``groups_at``: simplified Algorithm 3 with the alpha test inside the
    greedy loop (no trajectories). acts: (N, C_total)."""
    validate.alpha(alpha)
    _check_tasks(tasks, targets)
    C = acts.shape[1]
    if len(tasks) == 1:
        return LayerGroups(layer, C, {tasks: tuple(range(C))})
    picked = {(t,): _greedy_until(acts, _labels_except(targets, tasks, (t,)), alpha, sigma2,
                                  bound, label_mode, list(range(C)), max_chunk_bytes)
              for t in tasks}
    return _assemble(layer, C, tasks, picked)


def regroup_full(acts: Tensor, targets: Mapping[str, Tensor], tasks: TaskSubset,
                 alpha: float, sigma2: float, bound: str = "kl", label_mode: str = "sum",
                 progress: Progress | None = None, layer: str = "",
                 max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES) -> LayerGroups:
    """Full Algorithm 3: levels n = 1..K-1, every subset tau with |tau| = n greedily picks
    from the remaining set S against Y^{not tau}.

    Deviation from the paper (lines 15-18 drop a neuron picked by two subsets of one level
    from every set AND from S): here such a neuron stays in S and competes at the next
    level, so it can still become part of a larger subset's group; whatever is left in S at
    the end is the all-task group. Depends on alpha beyond a prefix cut (S shrinks after
    each level), so callers cache results per alpha. For K = 2 it equals the simplified one.
    acts: (N, C_total). progress(done, total) counts greedy runs (2^K - 2 in all).
    """
    validate.alpha(alpha)
    _check_tasks(tasks, targets)
    C, K = acts.shape[1], len(tasks)
    remaining = list(range(C))
    groups: dict[TaskSubset, tuple[int, ...]] = {}
    done, total = 0, 2 ** K - 2
    for n in range(1, K):
        picked: dict[TaskSubset, list[int]] = {}
        for tau in itertools.combinations(tasks, n):
            picked[tau] = _greedy_until(acts, _labels_except(targets, tasks, tau), alpha, sigma2,
                                        bound, label_mode, remaining, max_chunk_bytes)
            done += 1
            if progress is not None:
                progress(done, total)
        count: dict[int, int] = {}
        for ids in picked.values():
            for i in ids:
                count[i] = count.get(i, 0) + 1
        for tau, ids in picked.items():
            groups[tau] = tuple(sorted(i for i in ids if count[i] == 1))
        remaining = [i for i in remaining if count.get(i, 0) != 1]
    groups[tasks] = tuple(remaining)
    return LayerGroups(layer, C, groups)


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
                          tasks: TaskSubset, alphas: Iterable[float]) -> list[int]:
    """Number of shared neurons for every alpha (paper Fig. 7a); each is a few cuts."""
    return [len(groups_at(trajs, width, tasks, a).groups[tasks]) for a in alphas]


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
    return {name: groups_at(trajs, widths[name], tasks, config.alpha_for(name), name)
            for name, trajs in layer_trajs.items()}


__all__ = [
    "TaskSubset", "Trajectory", "LayerGroups", "cut", "max_mi", "layer_trajectories",
    "groups_at", "regroup_from_scratch", "regroup_full", "phases", "shared_count_vs_alpha",
    "regroup_all",
]
