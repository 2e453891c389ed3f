"""One stage (one scheme under one seed) as the experiment and the sweep run it: the inputs every
stage of a preset shares, the stage's content key, and resume-or-reuse-or-compute.

The experiment (:mod:`.experiment`) and the sweep (:mod:`.sweep`) both go through here, so a
stage computed by one is found by the other: the key of B1 and B2 does not depend on alpha, and a
PAM stage's key holds its regrouping (alpha included). A stage's record lands in
``<folder>/<name>.json`` with its pruned networks beside it (``<file><tag>.zip``).
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pam_explorer.core.config import DataConfig
from pam_explorer.core.io import write_json_atomic
from pam_explorer.data import Preset, get_preset, load_preset_data
from pam_explorer.graph.layer_map import layer_map
from pam_explorer.graph.networks import task_networks
from pam_explorer.merge.build import from_single
from pam_explorer.prune import TaskData
from pam_explorer.regroup.trajectories import weights_hash
from pam_explorer.runs.schemes import SchemeSettings
from pam_explorer.runs.stage_cache import StageCache, stage_key
from pam_explorer.train.finetune import evaluate
from pam_explorer.zoo.pretrained import DEFAULT_ARCH

Compute = Callable[[], tuple[dict, dict]]  # -> (record, {file name in the entry: path})


@dataclass(frozen=True)
class StageContext:
    """What every stage of one preset and data setting reads: the networks, the data, the
    original networks' accuracies (%, per task) and the layers (name, kind)."""

    preset: Preset
    nets: tuple
    data: TaskData
    original_val: Mapping[str, float]
    original_test: Mapping[str, float]
    layers: tuple[tuple[str, str], ...]
    weights: str  # hash of the networks' weights (part of every stage key)

    @classmethod
    def load(cls, preset: str | Preset, data: DataConfig, nets: Sequence | None = None,
             arch: str = DEFAULT_ARCH) -> StageContext:
        """The committed ``arch`` networks of ``preset`` (a project: its own; or ``nets``), the
        data of ``data``, and the originals' validation and test accuracy."""
        preset = get_preset(preset) if isinstance(preset, str) else preset
        nets = list(nets) if nets is not None else task_networks(preset, arch)
        split = TaskData.from_splits(load_preset_data(preset, data), preset)
        singles = [from_single(n, t) for n, t in zip(nets, preset.task_names)]
        val = {t: evaluate(s, *split.val)[t] for s, t in zip(singles, preset.task_names)}
        test = {t: evaluate(s, *split.test)[t] for s, t in zip(singles, preset.task_names)}
        layers = tuple((info.name, info.kind) for info in layer_map(nets[0]))
        return cls(preset, tuple(nets), split, val, test, layers, weights_hash(nets))

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.preset.task_names

    def reference(self, floor: str) -> dict[str, float] | None:
        """The accuracy floor's reference per task: the originals' validation accuracy
        (``floor="original"``), or None (each scheme's own unpruned accuracy)."""
        return None if floor == "own" else dict(self.original_val)


def stage_inputs(name: str, s: SchemeSettings) -> dict:
    """What a stage's result depends on beyond preset, networks, seed and method."""
    inputs = {"scheme": name, "prune": dataclasses.asdict(s.prune), "data": dataclasses.asdict(s.data)}
    if name == "B2":
        inputs.update(mtz=dataclasses.asdict(s.mtz), finetune=dataclasses.asdict(s.finetune))
    if name == "PAM":
        inputs.update(mi=dataclasses.asdict(s.mi), regroup=dataclasses.asdict(s.regroup),
                      finetune=dataclasses.asdict(s.finetune), mi_data=dataclasses.asdict(s.mi_data))
    if s.prune.flops_weight > 0:  # ties now go to the larger saving (prune.base.rank_neurons): stages
        inputs["rank_ties"] = "savings"  # ranked before that are stale; published-rank keys unchanged
    return inputs


def stage_key_of(ctx: StageContext, seed: int, quick: bool, name: str, s: SchemeSettings) -> str:
    """The content key of stage ``name`` ("B1" | "B2" | "PAM") under ``seed`` with settings ``s``."""
    payload = {"preset": ctx.preset.key_name, "weights": ctx.weights, "seed": seed, "quick": quick,
               "method": s.method}
    return stage_key({**payload, **stage_inputs(name, s)})


def resolve_stage(path: Path, key: str, cache: StageCache, compute: Compute | None,
                  tag: str) -> tuple[dict | None, str]:
    """The record of the stage stored at ``path`` (its folder receives the networks).

    Returns (record, source): ``"resumed"`` from ``path``; ``"cached"`` from the stage cache
    (its files copied beside ``path``, ``B2.zip`` as ``B2<tag>.zip``); ``"computed"`` by
    ``compute`` (then stored in the cache); (None, "missing") when ``compute`` is None and it is
    neither on disk nor in the cache. ``path`` is written atomically, last.
    """
    if path.is_file():
        return json.loads(path.read_text()), "resumed"
    hit = cache.get(key)
    if hit is not None:
        record, entry = hit
        for f in record.pop("_files", []):
            shutil.copyfile(entry / f, path.parent / f.replace(".zip", f"{tag}.zip"))
        source = "cached"
    elif compute is None:
        return None, "missing"
    else:
        record, files = compute()
        cache.put(key, record, files)
        source = "computed"
    write_json_atomic(path, record)
    return record, source


__all__ = ["StageContext", "stage_inputs", "stage_key_of", "resolve_stage"]
