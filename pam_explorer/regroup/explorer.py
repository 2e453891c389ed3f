"""The explorer backend: a preset's networks + cached trajectories -> groups at any alpha.

This is what the dashboard and the ``regroup`` command call. Trajectories are computed once
(cached on disk); every alpha after that is a prefix cut, so a slider move costs microseconds.
The full Algorithm 3 (K > 2, n > 1) depends on alpha beyond a cut and is cached per alpha.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch

from pam_explorer.core.config import DataConfig, MIConfig, RegroupConfig
from pam_explorer.core.errors import StructureError
from pam_explorer.core.geometry import NetGeometry, check_structure, check_widths, widths_of
from pam_explorer.core.paths import cache_root
from pam_explorer.core.subsets import all_subsets, subset_key
from pam_explorer.cost.analytic import costs_from_widths, predicted_costs
from pam_explorer.data import Preset, get_preset, load_preset_data, preset_relatedness, task_targets
from pam_explorer.graph.build import net_geometry
from pam_explorer.graph.networks import task_networks
from pam_explorer.regroup.algorithms import (
    LayerGroups,
    groups_at,
    max_mi,
    phases,
    regroup_full,
    shared_count_vs_alpha,
)
from pam_explorer.regroup.trajectories import (
    PresetTrajectories,
    compute_trajectories,
    merged_activations,
    sample_inputs,
)
from pam_explorer.zoo.chain import ChainNet


@dataclass
class Explorer:
    preset: Preset
    nets: list[ChainNet]
    mi: MIConfig
    data: DataConfig
    trajs: PresetTrajectories
    relatedness_bits: float
    geometry: NetGeometry | None = None
    _full_cache: dict = field(default_factory=dict, repr=False)
    _acts: tuple | None = field(default=None, repr=False)

    @classmethod
    def open(cls, preset: str | Preset, mi: MIConfig = MIConfig(), data: DataConfig = DataConfig(),
             nets: Sequence[ChainNet] | None = None, use_cache: bool = True, progress=None) -> Explorer:
        """Load data + networks (default: the committed pre-trained ones; a project's own, when
        ``preset`` is a project file or :class:`~pam_explorer.data.project.ProjectPreset`) and
        the trajectories."""
        preset = get_preset(preset) if isinstance(preset, str) else preset
        nets = list(nets) if nets is not None else task_networks(preset)
        if len(nets) != len(preset.task_names):
            raise StructureError(f"{len(nets)} networks given for {len(preset.task_names)} tasks of "
                                 f"{preset.name}")
        trajs = compute_trajectories(preset, nets, data, mi, cache_root() if use_cache else None, progress)
        rel = preset_relatedness(preset, load_preset_data(preset, data))
        return cls(preset, nets, mi, data, trajs, rel, net_geometry(nets, preset.task_names))

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.preset.task_names

    def groups(self, cfg: RegroupConfig,
               progress: Callable[[float, str], None] | None = None) -> dict[str, LayerGroups]:
        """Groups of every layer at cfg's alpha (per-layer overrides applied). The full
        Algorithm 3 (K > 2) runs 2^K - 2 greedy searches per layer and reports
        progress(fraction done in [0, 1], message) after each one; cached per (layer, alpha)."""
        if cfg.algorithm == "full" and len(self.tasks) > 2:
            layers = list(self.trajs.layers)
            out = {}
            for i, name in enumerate(layers):
                def step(done: int, total: int, i: int = i, name: str = name) -> None:
                    if progress is not None:
                        progress((i + done / total) / len(layers), f"{name}: greedy search {done}/{total}")
                out[name] = self._full(name, cfg.alpha_for(name), cfg.both_picked, step)
            return out
        return {name: groups_at(self.trajs.trajectories[name], self.trajs.widths[name], self.tasks,
                                cfg.alpha_for(name), name, cfg.both_picked)
                for name in self.trajs.layers}

    def _full(self, layer: str, alpha: float, both_picked: str,
              progress: Callable[[int, int], None]) -> LayerGroups:
        key = (layer, float(alpha), both_picked)
        if key not in self._full_cache:
            acts, targets = self._activations()
            mi = self.mi
            self._full_cache[key] = regroup_full(
                acts[layer], targets, self.tasks, alpha, mi.sigma2, mi.bound, mi.label_mode, progress,
                layer=layer, kernel=mi.kernel, null_perms=mi.null_perms, null_seed=mi.seed,
                both_picked=both_picked)
        else:
            total = 2 ** len(self.tasks) - 2
            progress(total, total)
        return self._full_cache[key]

    def _activations(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        if self._acts is None:
            images, labels = sample_inputs(self.preset, self.data, self.mi)
            targets = {t: task_targets(labels, self.preset, t) for t in self.tasks}
            self._acts = (merged_activations(self.nets, images, self.mi.pooling, self.mi.normalise), targets)
        return self._acts

    def regroup_report(self, cfg: RegroupConfig) -> dict:
        """The ``regroup --json`` contract: alpha, and per layer width, group sizes, sharing ratio."""
        layers = []
        for name, g in self.groups(cfg).items():
            sizes = {subset_key(k): len(v) for k, v in g.groups.items()}
            layers.append({"name": name, "width": g.width, "alpha": cfg.alpha_for(name),
                           "groups": sizes, "dropped": len(g.dropped), "sharing_ratio": g.sharing_ratio()})
        return {"preset": self.preset.name, "alpha": cfg.alpha, "algorithm": cfg.algorithm,
                "both_picked": cfg.both_picked, "mi": {**asdict(self.mi), "profile": self.mi.profile},
                "relatedness_bits": self.relatedness_bits, "cache_hit": self.trajs.cache_hit,
                "layers": layers}

    def check(self, cfg: RegroupConfig) -> str | None:
        """Why the groups at cfg cannot be built as a network (the StructureError's message of
        :func:`~pam_explorer.core.geometry.check_structure`), or None if they can."""
        try:
            widths = widths_of(self.geometry, self.groups(cfg))
            if self.geometry.kind == "chain":
                check_structure(self.tasks, list(self.trajs.layers), widths,
                                head_layers=self.geometry.head_layers)
            else:  # residual: the wired edges of coupled layers (core.geometry.check_widths)
                check_widths(self.geometry, widths)
        except StructureError as exc:
            return str(exc)
        return None

    def max_mi(self, layer: str | None = None) -> float:
        """Largest MI (bits) on the trajectories of ``layer`` (default: of every layer); no alpha
        above it changes that layer's groups."""
        layers = [layer] if layer is not None else list(self.trajs.layers)
        return max((max_mi(self.trajs.trajectories[name]) for name in layers), default=0.0)

    def shared_vs_alpha(self, layer: str, alphas: Sequence[float], both_picked: str = "share") -> list[int]:
        """Shared-neuron count of ``layer`` for each alpha (the paper's Fig. 7a)."""
        return shared_count_vs_alpha(self.trajs.trajectories[layer], self.trajs.widths[layer],
                                     self.tasks, alphas, both_picked)

    def sharing_curves(self, alphas: Sequence[float], both_picked: str = "share") -> dict[str, dict]:
        """Per layer and alpha (simplified algorithm): ``shared`` neurons, ``kept`` neurons (width
        minus dropped) and ``multi``: neurons picked by more than one exclusive set, which
        ``both_picked`` shares or drops. Sharing is not monotone in alpha: it falls as the
        exclusive sets grow, and rises again once they overlap (``multi`` > 0)."""
        out = {}
        for name in self.trajs.layers:
            trajs, width = self.trajs.trajectories[name], self.trajs.widths[name]
            rows = [(groups_at(trajs, width, self.tasks, a, name, both_picked),
                     groups_at(trajs, width, self.tasks, a, name, "drop")) for a in alphas]
            out[name] = {"shared": [len(g.groups[self.tasks]) for g, _ in rows],
                         "kept": [g.kept for g, _ in rows], "multi": [len(d.dropped) for _, d in rows]}
        return out

    def phase_curve(self, layer: str) -> dict[tuple[str, ...], dict]:
        """Per exclusive subset: MI after each greedy step, its chance level and the score
        alpha is compared with (bits), and the annotated phases."""
        return {sub: {"mi": list(t.mi), "null": list(t.null), "score": list(t.score), "phases": phases(t)}
                for sub, t in self.trajs.trajectories[layer].items()}

    def predicted_flops(self, cfg: RegroupConfig) -> dict[str, dict[str, int]]:
        """FLOPs of every task subset before pruning: {"PAM", "B1", "B2"} -> {subset: flops}.

        PAM from the group sizes at cfg (no network is built); B1 = the separate networks (a
        subset costs the sum of its tasks' networks); B2 = an MTZ-zipped trunk (every layer fully
        shared, width = the widest network's, since MTZ zips neurons pairwise) with task heads.
        """
        geo = self.geometry
        b1_single = {t: costs_from_widths(geo, {n: {t: w[j]} for n, w in self.trajs.net_widths.items()})[t]
                     for j, t in enumerate(self.tasks)}
        b1 = {subset_key(s): sum(b1_single[t]["flops"] for t in s) for s in all_subsets(list(self.tasks))}
        shared = subset_key(self.tasks)
        b2 = costs_from_widths(geo, {n: {shared: max(w)} for n, w in self.trajs.net_widths.items()})
        return {"PAM": predicted_costs(geo, self.groups(cfg)), "B1": b1,
                "B2": {s: c["flops"] for s, c in b2.items()}}

