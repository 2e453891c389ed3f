"""One stage (one scheme under one seed) as the experiment and the sweep run it: the inputs every
stage of a preset shares, the stage's content key, and resume-or-reuse-or-compute.

The experiment (:mod:`.experiment`) and the sweep (:mod:`.sweep`) both go through here, so a
stage computed by one is found by the other: the key of B1 and B2 does not depend on alpha, and a
PAM stage's key holds its regrouping (alpha included). A stage's record lands in
``<folder>/<name>.json`` with its pruned networks beside it (``<file><tag>.zip``), and with the
stage's key and ``STAGE_VERSION`` (``_stage``), as the stage cache keys it: a folder resumed under
another key or version is refused (RunConflict), a corrupt record is a one-line DataError.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pam_explorer.core.config import DataConfig
from pam_explorer.core.errors import DataError, RunConflict
from pam_explorer.core.io import copy_file_atomic, write_json_atomic
from pam_explorer.data import Preset, get_preset, load_preset_data
from pam_explorer.graph.layer_map import layer_map
from pam_explorer.graph.networks import task_networks
from pam_explorer.merge.build import from_single
from pam_explorer.prune import TaskData
from pam_explorer.regroup.trajectories import weights_hash
from pam_explorer.runs.schemes import SchemeSettings
from pam_explorer.runs.stage_cache import STAGE_VERSION, StageCache, stage_key
from pam_explorer.train.finetune import evaluate
from pam_explorer.zoo.pretrained import DEFAULT_ARCH

Compute = Callable[[], tuple[dict, dict]]  # -> (record, {file name in the entry: path})
RECORD_META = "_stage"  # a run folder's record: {"key", "version"} of the stage it holds
log = logging.getLogger(__name__)


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
    if name != "B1" and s.merged_budget != "per-network":  # the default leaves older keys as they were
        inputs["merged_budget"] = s.merged_budget
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
    (its files copied beside ``path``, ``B2.zip`` as ``B2<tag>.zip``, each checked against its
    content hash); ``"computed"`` by ``compute`` (then stored in the cache); (None, "missing")
    when ``compute`` is None and it is neither on disk nor in the cache. ``path`` is written
    atomically, last, with the stage's key and version (:func:`read_record` checks them).
    """
    if path.exists() or path.is_symlink():
        return read_record(path, key), "resumed"
    record = _from_cache(cache, key, path.parent, tag)
    if record is not None:
        source = "cached"
    elif compute is None:
        return None, "missing"
    else:
        record, files = compute()
        cache.put(key, record, files)
        source = "computed"
    write_json_atomic(path, {**record, RECORD_META: {"key": key, "version": STAGE_VERSION}})
    return record, source


def _from_cache(cache: StageCache, key: str, folder: Path, tag: str) -> dict | None:
    """The cached record of ``key`` with its files copied into ``folder`` (hash-checked while
    copied), or None (with a warning when the entry is unusable: the stage is recomputed)."""
    hit = cache.get(key)
    if hit is None:
        return None
    record, entry = hit
    files, hashes = record.pop("_files", []), record.pop("_sha256", {})
    try:
        problem = record_problem(record)
        if problem:
            raise ValueError(problem)
        for f in files:
            copy_file_atomic(entry / f, folder / f.replace(".zip", f"{tag}.zip"), sha256=hashes[f])
    except (OSError, ValueError) as exc:
        log.warning("ignoring stage cache entry %s: %s; the stage is recomputed", entry, exc)
        return None
    return record


def record_problem(record: object) -> str | None:
    """What makes ``record`` no stage record (what the reports read: ``flops`` per subset and
    ``accuracy`` per task, numbers; a published schedule's record instead has its curve, a list
    or {task: list}, and then ``flops``/``accuracy`` are null when no checkpoint passes), or None."""
    if not isinstance(record, dict):
        return f"holds a JSON {type(record).__name__}, not a stage record (an object)"
    curve = record.get("curve")
    if curve is not None:
        lists = list(curve.values()) if isinstance(curve, dict) else [curve]
        if not lists or not all(isinstance(c, list) and c and all(isinstance(p, dict) for p in c)
                                for c in lists):
            return "has a malformed 'curve' (a list of checkpoints, or one per task)"
        if record.get("flops") is None and record.get("accuracy") is None:
            return None  # no checkpoint above the floor at the record's delta
    for field in ("flops", "accuracy"):
        value = record.get(field)
        if not (isinstance(value, dict) and value and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in value.values())):
            return f"has no {field!r} (numbers per {'subset' if field == 'flops' else 'task'})"
    return None


def read_record(path: Path, key: str | None = None) -> dict:
    """The stage record at ``path`` (a run folder's ``stages/<name>.json``), without its key and
    version. DataError when it is unreadable or no record (truncated, ``[1, 2]``, ``{}``);
    RunConflict when it was written for another stage key or ``STAGE_VERSION`` than ``key`` (a
    record written before keys were kept is accepted, as then)."""
    fix = "delete it to recompute that stage, or use another --out"
    try:
        record = json.loads(path.read_text())
    except OSError as exc:
        raise DataError(f"stage record {path} cannot be read ({exc.strerror or exc}); {fix}") from None
    except ValueError as exc:
        raise DataError(f"stage record {path} is not JSON (truncated?: {exc}); {fix}") from None
    problem = record_problem(record)
    meta = record.pop(RECORD_META, None) if isinstance(record, dict) else None
    if problem or not (meta is None or isinstance(meta, dict)):
        raise DataError(f"stage record {path} {problem or 'has a malformed ' + RECORD_META}; {fix}")
    if key is not None and meta is not None \
            and (meta.get("key"), meta.get("version")) != (key, STAGE_VERSION):
        raise RunConflict(f"{path} holds a stage of another version or configuration (stage "
                          f"{meta.get('version')!r} key {str(meta.get('key'))[:12]} there, {STAGE_VERSION!r} "
                          f"key {key[:12]} now); use another --out (nothing there was changed)")
    return record


__all__ = ["StageContext", "stage_inputs", "stage_key_of", "resolve_stage", "read_record", "record_problem",
           "RECORD_META"]
