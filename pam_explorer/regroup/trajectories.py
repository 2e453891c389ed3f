"""MI trajectories of a preset's networks, computed once and cached on disk with joblib.

This is the I/O side of regrouping: it loads data and networks, captures activations on N
samples, runs the greedy trajectories (alpha = infinity) of :mod:`pam_explorer.regroup.algorithms`
and stores them under ``<cache root>/trajectories/`` (:func:`pam_explorer.core.paths.cache_root`)
keyed by content (network weights, preset, data and MI
settings, code version), so a second run — even after a restart — is a cache hit. A corrupt
cache entry is recomputed, never raised to the caller.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import joblib
import torch
from torch import nn

from pam_explorer.core.config import DataConfig, MIConfig
from pam_explorer.core.errors import ConfigError, StructureError
from pam_explorer.core.io import atomic_path
from pam_explorer.core.paths import cache_root
from pam_explorer.data import Preset, load_preset_data, task_targets
from pam_explorer.graph.activations import capture_activations
from pam_explorer.graph.layer_map import layer_map
from pam_explorer.regroup.algorithms import Trajectory, layer_trajectories
from pam_explorer.regroup.mutual_info import rms_normalise

DEFAULT_CACHE = "default"  # compute_trajectories(cache_dir=...): the cache root of core.paths
CODE_VERSION = "traj-v1"  # bump when the estimator or the greedy order changes
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


def merged_activations(nets: Sequence[nn.Module], images: torch.Tensor,
                       pooling: str) -> dict[str, torch.Tensor]:
    """Per layer, the networks' activations side by side: (N, sum of widths).

    Each network's layer is RMS-normalised on its own before concatenation, so sigma^2 is
    relative to every original layer's scale.
    """
    per_net = [capture_activations(net, images, pooling=pooling) for net in nets]
    return {name: torch.cat([rms_normalise(a[name]) for a in per_net], dim=1) for name in per_net[0]}


def compute_trajectories(preset: Preset, nets: Sequence[nn.Module], data: DataConfig = DataConfig(),
                         mi: MIConfig = MIConfig(), cache_dir: Path | str | None = DEFAULT_CACHE,
                         progress: Progress | None = None) -> PresetTrajectories:
    """Trajectories of every layer for the simplified Algorithm 3 (Algorithm 2 when K = 2).

    cache_dir: where ``trajectories/<key>.joblib`` lives; default the cache root
    (``$PAM_CACHE_ROOT`` or ``<repo>/cache``), None for no cache.
    """
    if cache_dir == DEFAULT_CACHE:
        cache_dir = cache_root()
    maps = [layer_map(n) for n in nets]
    names = [info.name for info in maps[0]]
    if any([info.name for info in m] != names for m in maps):
        raise StructureError("the networks must have the same layers to be merged layer by layer")
    net_widths = {n: tuple(m[i].width for m in maps) for i, n in enumerate(names)}
    key = _cache_key(preset, nets, data, mi)
    path = None if cache_dir is None else Path(cache_dir) / "trajectories" / f"{key}.joblib"
    cached = _read(path)
    if cached is not None:
        return PresetTrajectories(preset.task_names, tuple(names), {n: sum(w) for n, w in net_widths.items()},
                                  net_widths, cached, True)
    images, labels = sample_inputs(preset, data, mi)
    targets = {t: task_targets(labels, preset, t) for t in preset.task_names}
    acts = merged_activations(nets, images, mi.pooling)
    trajs = {}
    for name in names:
        cb = (lambda s, tot, _n=name: progress(_n, s, tot)) if progress else None
        trajs[name] = layer_trajectories(acts[name], targets, preset.task_names, mi.sigma2,
                                         mi.bound, mi.label_mode, progress=cb)
    _write(path, trajs)
    return PresetTrajectories(preset.task_names, tuple(names), {n: sum(w) for n, w in net_widths.items()},
                              net_widths, trajs, False)


def _cache_key(preset: Preset, nets: Sequence[nn.Module], data: DataConfig, mi: MIConfig) -> str:
    blob = json.dumps({"preset": asdict(preset), "data": asdict(data), "mi": asdict(mi),
                       "weights": weights_hash(nets), "code": CODE_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _read(path: Path | None):
    if path is None or not path.is_file():
        return None
    try:
        trajs = joblib.load(path)
        if not isinstance(trajs, dict) or not all(isinstance(v, dict) for v in trajs.values()):
            raise ValueError("unexpected cache content")
        return trajs
    except Exception as exc:  # noqa: BLE001 - any unreadable entry is recomputed
        log.warning("recomputing corrupt trajectory cache %s (%s)", path, exc)
        path.unlink(missing_ok=True)
        return None


def _write(path: Path | None, trajs: dict) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # a crash mid-write never leaves a half entry under the real name
        joblib.dump(trajs, tmp)
