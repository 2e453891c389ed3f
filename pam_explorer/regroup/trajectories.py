"""MI trajectories of a preset's networks, computed once and cached on disk as JSON.

This is the I/O side of regrouping: it loads data and networks, captures activations on N
samples, runs the greedy trajectories (alpha = infinity) of :mod:`pam_explorer.regroup.algorithms`
and stores them under ``<cache root>/trajectories/<key>.json`` (:func:`pam_explorer.core.paths.cache_root`)
keyed by content (network weights, preset, data and MI settings, code version), so a second run
— even after a restart — is a cache hit. The entry is plain JSON (nothing in it can execute);
one that is unreadable or does not match the expected layers, widths and tasks is recomputed
with a warning and overwritten, never raised to the caller; a cache that cannot be written is a
warning too, but a folder where the entry's file belongs is a DataError before any computing.
Entries of the older joblib format (``<key>.joblib``, a pickle) are never opened.

On a cache miss, :func:`shipped_path` is consulted before computing: trajectories shipped with
the committed networks, ``<assets root>/<preset>/trajectories/<key>.json`` (same format, same
key; read-only, checked like a cache entry). ``scripts/ship_trajectories.py`` writes them.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from pam_explorer.core.config import DataConfig, MIConfig
from pam_explorer.core.errors import ConfigError, DataError, StructureError
from pam_explorer.core.io import dumps_strict, write_text_atomic
from pam_explorer.core.paths import cache_root
from pam_explorer.core.subsets import parse_key, subset_key
from pam_explorer.data import Preset, load_preset_data, task_targets
from pam_explorer.graph.activations import capture_activations
from pam_explorer.graph.layer_map import layer_map
from pam_explorer.regroup.algorithms import Trajectory, layer_trajectories
from pam_explorer.regroup.mutual_info import rms_normalise
from pam_explorer.zoo.pretrained import asset_dir

DEFAULT_CACHE = "default"  # compute_trajectories(cache_dir=...): the cache root of core.paths
CODE_VERSION = "traj-v2"  # bump when the estimator or the greedy order changes
FORMAT = "pam-explorer-trajectories/1"
log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]  # (layer, step, total)


@dataclass(frozen=True)
class PresetTrajectories:
    """Everything the explorer needs to answer any alpha instantly.

    widths[layer] = total neurons of the merged layer (sum over the networks); trajectories[layer]
    maps each exclusive task subset to its greedy run. ``cache_hit`` tells whether anything was
    computed.
    """

    tasks: tuple[str, ...]
    layers: tuple[str, ...]
    widths: dict[str, int]
    net_widths: dict[str, tuple[int, ...]]
    trajectories: dict[str, dict[tuple[str, ...], Trajectory]]
    cache_hit: bool


def weights_hash(nets: Sequence[nn.Module]) -> str:
    """SHA-256 over every tensor's name, shape and bytes, in order."""
    h = hashlib.sha256()
    for net in nets:
        for name, t in net.state_dict().items():
            h.update(name.encode())
            h.update(str(tuple(t.shape)).encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def sample_inputs(preset: Preset, data: DataConfig, mi: MIConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """N training pictures (seeded by mi.seed): images (N, C, H, W), labels (N, L)."""
    train = load_preset_data(preset, data)["train"]
    if mi.n_samples > len(train):
        raise ConfigError(f"MIConfig.n_samples={mi.n_samples} exceeds the {len(train)} training pictures")
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(mi.seed))[:mi.n_samples]
    return train.images[idx], train.labels[idx]


def merged_activations(nets: Sequence[nn.Module], images: torch.Tensor, pooling: str,
                       normalise: str = "rms") -> dict[str, torch.Tensor]:
    """Per layer, the networks' activations side by side: (N, sum of widths).

    normalise "rms": each network's layer is divided by its own RMS before concatenation, so
    sigma^2 is relative to every original layer's scale; "none": raw activations (the authors').
    """
    per_net = [capture_activations(net, images, pooling=pooling) for net in nets]
    norm = rms_normalise if normalise == "rms" else (lambda a: a)
    return {name: torch.cat([norm(a[name]) for a in per_net], dim=1) for name in per_net[0]}


def cached_trajectories(preset: Preset, nets: Sequence[nn.Module], data: DataConfig = DataConfig(),
                        mi: MIConfig = MIConfig(),
                        cache_dir: Path | str | None = DEFAULT_CACHE) -> PresetTrajectories | None:
    """The trajectories :func:`compute_trajectories` would return if they are in the cache, else
    None (nothing is computed)."""
    return _lookup(preset, nets, data, mi, cache_dir)[0]


def _lookup(preset: Preset, nets: Sequence[nn.Module], data: DataConfig, mi: MIConfig,
            cache_dir: Path | str | None) -> tuple[PresetTrajectories | None, Path | None, tuple, dict, dict]:
    """(cached or shipped trajectories or None, cache file, layer names, summed widths, per-net
    widths). The cache is read first, then the trajectories shipped beside the committed networks
    (read-only, same content key)."""
    if cache_dir == DEFAULT_CACHE:
        cache_dir = cache_root()
    maps = [layer_map(n) for n in nets]
    names = [info.name for info in maps[0]]
    if any([info.name for info in m] != names for m in maps):
        raise StructureError("the networks must have the same layers to be merged layer by layer")
    net_widths = {n: tuple(m[i].width for m in maps) for i, n in enumerate(names)}
    widths = {n: sum(w) for n, w in net_widths.items()}
    key = _cache_key(preset, nets, data, mi)
    path = None if cache_dir is None else Path(cache_dir) / "trajectories" / f"{key}.json"
    cached = _read(path, preset.task_names, widths)
    if cached is None:
        cached = _read(shipped_path(preset.name, key), preset.task_names, widths)
    found = None if cached is None else \
        PresetTrajectories(preset.task_names, tuple(names), widths, net_widths, cached, True)
    return found, path, tuple(names), widths, net_widths


def compute_trajectories(preset: Preset, nets: Sequence[nn.Module], data: DataConfig = DataConfig(),
                         mi: MIConfig = MIConfig(), cache_dir: Path | str | None = DEFAULT_CACHE,
                         progress: Progress | None = None) -> PresetTrajectories:
    """Trajectories of every layer for the simplified Algorithm 3 (Algorithm 2 when K = 2).

    cache_dir: where ``trajectories/<key>.json`` lives; default the cache root
    (``$PAM_CACHE_ROOT`` or ``<repo>/cache``), None for no cache. Trajectories shipped in
    ``assets/<preset>/trajectories/`` are read on a cache miss (never written).
    """
    found, path, names, widths, net_widths = _lookup(preset, nets, data, mi, cache_dir)
    if found is not None:
        return found
    if path is not None and (path.is_dir() or path.parent.exists() and not path.parent.is_dir()):
        raise DataError(f"the trajectory cache entry {path} cannot be written (a folder is in its place, "
                        "or a file in place of its folder); remove that or point PAM_CACHE_ROOT at another "
                        "folder")
    images, labels = sample_inputs(preset, data, mi)
    targets = {t: task_targets(labels, preset, t) for t in preset.task_names}
    acts = merged_activations(nets, images, mi.pooling, mi.normalise)
    trajs = {}
    for name in names:
        cb = (lambda s, tot, _n=name: progress(_n, s, tot)) if progress else None
        trajs[name] = layer_trajectories(acts[name], targets, preset.task_names, mi.sigma2,
                                         mi.bound, mi.label_mode, progress=cb, layer=name,
                                         kernel=mi.kernel, null_perms=mi.null_perms, null_seed=mi.seed)
    _write(path, trajs)
    return PresetTrajectories(preset.task_names, names, widths, net_widths, trajs, False)


def shipped_path(preset: str, key: str) -> Path:
    """Where trajectories shipped with a preset's committed networks live (read-only)."""
    return asset_dir(preset) / "trajectories" / f"{key}.json"


def cache_key(preset: Preset, nets: Sequence[nn.Module], data: DataConfig = DataConfig(),
              mi: MIConfig = MIConfig()) -> str:
    """The content key of the trajectories of ``nets`` on ``preset`` (what the cache and the
    shipped files are named by)."""
    return _cache_key(preset, nets, data, mi)


def _cache_key(preset: Preset, nets: Sequence[nn.Module], data: DataConfig, mi: MIConfig) -> str:
    # only the preset fields the trajectories depend on (its data set and label columns): its
    # name, description and default alpha may change without invalidating cached or shipped files
    tasks = {"dataset": preset.dataset, "task_names": list(preset.task_names),
             "task_labels": [list(c) for c in preset.task_labels]}
    if preset.key_name != preset.name:  # a project: its data by content (presets' keys unchanged)
        tasks["content"] = preset.key_name
    blob = json.dumps({"preset": tasks, "data": asdict(preset.data_config(data)), "mi": asdict(mi),
                       "weights": weights_hash(nets), "code": CODE_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


LayerTrajectories = dict[str, dict[tuple[str, ...], Trajectory]]


def to_json(trajs: LayerTrajectories) -> dict:
    """JSON-able form of {layer: {subset: Trajectory}} (subsets named "A", "A+B", ...)."""
    return {"format": FORMAT, "layers": {layer: {subset_key(sub): {
        "order": list(t.order), "mi": list(t.mi), "null": list(t.null), "candidates": list(t.candidates)}
        for sub, t in per.items()} for layer, per in trajs.items()}}


def from_json(raw: object, tasks: tuple[str, ...], widths: dict[str, int]) -> LayerTrajectories:
    """Inverse of :func:`to_json`, checked against the expected tasks and layer widths;
    DataError on anything else (wrong format, layers, subsets, ids, non-finite values)."""
    if not isinstance(raw, dict) or raw.get("format") != FORMAT or not isinstance(raw.get("layers"), dict):
        raise DataError(f"not a {FORMAT} document")
    if set(raw["layers"]) != set(widths):
        raise DataError(f"layers {sorted(raw['layers'])} differ from {sorted(widths)}")
    out: LayerTrajectories = {}
    for layer, per in raw["layers"].items():
        expected = {(t,) for t in tasks} if len(tasks) > 1 else set()
        if not isinstance(per, dict) or {parse_key(k, tasks) for k in per} != expected:
            raise DataError(f"layer {layer!r}: subsets {list(per)} differ from {sorted(expected)}")
        out[layer] = {parse_key(k, tasks): _trajectory(layer, parse_key(k, tasks), v, widths[layer])
                      for k, v in per.items()}
    return out


def _trajectory(layer: str, subset: tuple[str, ...], raw: object, width: int) -> Trajectory:
    if not isinstance(raw, dict):
        raise DataError(f"layer {layer!r}: a trajectory must be an object")
    ints = [raw.get("order"), raw.get("candidates")]
    floats = [raw.get("mi"), raw.get("null")]
    if not all(isinstance(x, list) and all(type(i) is int and 0 <= i < width for i in x) for x in ints):
        raise DataError(f"layer {layer!r}: order/candidates must be neuron ids in [0, {width})")
    if not all(isinstance(x, list) and all(isinstance(f, (int, float)) and not isinstance(f, bool)
                                           and math.isfinite(f) for f in x) for x in floats):
        raise DataError(f"layer {layer!r}: mi/null must be finite numbers")
    return Trajectory(layer, subset, tuple(ints[0]), tuple(float(f) for f in floats[0]), tuple(ints[1]),
                      tuple(float(f) for f in floats[1]))


def _read(path: Path | None, tasks: tuple[str, ...], widths: dict[str, int]) -> LayerTrajectories | None:
    if path is None or not path.is_file():
        return None
    try:
        return from_json(json.loads(path.read_text()), tasks, widths)
    except (OSError, ValueError) as exc:  # PamError is a ValueError; so is a JSON decode error
        log.warning("recomputing unreadable trajectory cache %s (%s)", path, exc)
        return None


def _write(path: Path | None, trajs: LayerTrajectories) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, dumps_strict(to_json(trajs), indent=None))
    except OSError as exc:  # a full or read-only cache must not lose what was just computed
        log.warning("could not store the trajectories in the cache %s (%s)", path, exc.strerror or exc)
