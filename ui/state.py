"""Session state shared by the pages: the applied setup, the cached Explorer, the regroup config.

The Explorer (networks + MI trajectories) is cached process-wide by ``st.cache_resource``, keyed
by (preset, MI settings, checkpoint hash), at most MAX_EXPLORERS of them; a slider move only cuts
trajectories.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from pam_explorer.core import paths
from pam_explorer.core.config import MIConfig, RegroupConfig
from pam_explorer.core.errors import DataMissing, PamError
from pam_explorer.data import get_preset, load_preset_data, preset_relatedness
from pam_explorer.regroup.explorer import Explorer
from pam_explorer.zoo import user_nets
from pam_explorer.zoo.pretrained import has_pretrained, pretrained_meta

DEFAULT_PRESET = "digits-2task"
MAX_EXPLORERS = 4


@dataclass(frozen=True)
class Setup:
    """What the Setup page applied. ``checkpoints`` is "pretrained" or the hash of uploads."""

    preset: str = DEFAULT_PRESET
    mi: MIConfig = MIConfig()
    checkpoints: str = "pretrained"
    arch: str | None = None
    content: str = ""  # a project file's content key (data, labels, networks): its edits are a new setup

    @property
    def key(self) -> tuple:
        return (self.preset, self.mi, self.checkpoints, self.content)


def current_setup() -> Setup:
    if "setup" not in st.session_state:
        st.session_state["setup"] = Setup()
    return st.session_state["setup"]


def preset_arch(preset: str) -> str | None:
    """Architecture of the committed networks of ``preset`` (None if there are none)."""
    p = get_preset(preset)
    if not has_pretrained(p.name, p.task_names):
        return None
    return pretrained_meta(p.name, p.task_names[0]).get("arch")


# --------------------------------------------------------------------------- checkpoints
def nets_from_uploads(preset: str, arch: str, files: Mapping[str, bytes | tuple[str, bytes]],
                      image_size: int | None = None) -> list:
    """One network per task of ``preset`` from uploaded files (task -> (file name, bytes), or bytes
    of a .safetensors): :func:`pam_explorer.zoo.user_nets.networks_from_uploads` (the project
    files' loader: options such as a ResNet's width and stem read off the shapes) with the
    preset's tasks, channels and (None) picture size."""
    p = get_preset(preset)
    outputs = {t: len(labels) for t, labels in zip(p.task_names, p.task_labels)}
    named = {t: f if isinstance(f, tuple) else (f"{t}.safetensors", f) for t, f in files.items()}
    return user_nets.networks_from_uploads(arch, named, outputs, p.in_channels, image_size or p.image_size)


def uploads_hash(arch: str, files: Mapping[str, bytes | tuple[str, bytes]]) -> str:
    h = hashlib.sha256(arch.encode())
    for t in sorted(files):
        h.update(t.encode())
        h.update(hashlib.sha256(files[t][1] if isinstance(files[t], tuple) else files[t]).digest())
    return "upload-" + h.hexdigest()[:16]


# --------------------------------------------------------------------------- explorer cache
@st.cache_resource(show_spinner=False, max_entries=MAX_EXPLORERS)
def _explorer(key: tuple, _nets: Sequence | None) -> Explorer:
    """The Explorer of a setup key (preset, MI settings, checkpoints, content), shared by every session,
    the least recently used dropped beyond MAX_EXPLORERS; computed once per key (Streamlit holds a
    lock per key). The progress bar lives inside: on a cache hit Streamlit replays it as the
    empty element it ends as."""
    preset, mi = key[0], key[1]
    bar = st.progress(0.8, text=f"Loading the networks, data and MI trajectories of {preset} "
                                "(shipped or cached trajectories load in about a second) ...")

    def progress(layer: str, step: int, total: int) -> None:
        if total and (step == total or step % max(1, total // 20) == 0):
            bar.progress(min(step / total, 1.0), text=f"Computing the MI trajectories of {layer} "
                                                      f"(once per setup): step {step}/{total}")

    try:
        return Explorer.open(preset, mi, nets=_nets, progress=progress)
    finally:
        bar.empty()


def open_explorer(setup: Setup, nets: Sequence | None = None) -> Explorer:
    """The cached Explorer of ``setup``; the first call computes (or loads) the trajectories
    with a progress bar. Raises what Explorer.open raises (nothing is cached then)."""
    if setup.checkpoints != "pretrained":
        nets = nets if nets is not None else st.session_state.get("uploaded_nets", {}).get(setup.checkpoints)
        if nets is None:
            raise DataMissing("the uploaded checkpoints of this setup are no longer in this session; "
                              "upload them again on the Setup page")
    return _explorer(setup.key, nets)


def explorer_or_stop() -> Explorer:
    """The current setup's Explorer; on failure an st.error and st.stop()."""
    setup = current_setup()
    try:
        return open_explorer(setup)
    except PamError as exc:
        st.error(f"Cannot open the explorer for preset {setup.preset!r}: {exc}")
        st.stop()
        raise  # unreachable; st.stop raises


# --------------------------------------------------------------------------- regroup state
def regroup_config() -> RegroupConfig:
    """Alpha, per-layer overrides and algorithm chosen on the explorer page (survive page changes)."""
    setup = current_setup()
    alpha = st.session_state.get("alpha")
    if alpha is None:
        alpha = get_preset(setup.preset).default_alpha
    overrides = tuple(sorted((k, float(v)) for k, v in st.session_state.get("overrides", {}).items()
                             if v is not None))
    return RegroupConfig(alpha=float(alpha), overrides=overrides,
                         algorithm=st.session_state.get("algorithm", "simplified"))


@st.cache_resource(show_spinner=False)
def full_done() -> set:
    """(setup key, RegroupConfig) pairs whose full-Algorithm-3 groups the cached Explorer holds."""
    return set()


def effective_config(setup: Setup, cfg: RegroupConfig) -> RegroupConfig:
    """cfg, or its simplified twin while the full algorithm was not computed for it."""
    if cfg.algorithm == "full" and (setup.key, cfg) not in full_done():
        return RegroupConfig(cfg.alpha, cfg.overrides, "simplified")
    return cfg


def apply_setup(new: Setup) -> None:
    """Make ``new`` current; alpha/overrides reset when the preset changes."""
    old = current_setup()
    st.session_state["setup"] = new
    if new.preset != old.preset:
        for k in ("alpha", "overrides", "alpha_w"):
            st.session_state.pop(k, None)


@st.cache_data(show_spinner=False, max_entries=16)
def measured_relatedness(preset: str) -> float | None:
    """I(Y^A;Y^B) in bits measured on the preset's train split (mean over task pairs for K > 2);
    None when its data are not available here (a page view never starts a download)."""
    if get_preset(preset).dataset != "digits" and os.environ.get("PAM_ALLOW_DOWNLOAD") == "1":
        return None
    try:
        return preset_relatedness(preset, load_preset_data(preset))
    except PamError:
        return None


def runs_root() -> Path:
    """Where the Runs page starts runs: ``$PAM_RUNS_ROOT``, else ``<repo>/runs``."""
    return paths.runs_root()


def runs_roots() -> list[Path]:
    """Where the Runs, Results and Export pages read runs, new first: runs_root(), and
    ``<repo>/cache/runs`` (runs of older versions) unless ``$PAM_RUNS_ROOT`` is set."""
    return paths.runs_roots()


@st.cache_data(ttl=30, show_spinner=False)
def slurm_unavailable() -> str | None:
    """Why this machine cannot submit Slurm jobs, or None (runs.slurm_queue.unavailable; sinfo
    takes up to 3 s when the controller does not answer, so the answer is kept 30 s)."""
    from pam_explorer.runs import slurm_queue

    return slurm_queue.unavailable()


__all__ = ["Setup", "current_setup", "preset_arch", "nets_from_uploads", "uploads_hash",
           "open_explorer", "explorer_or_stop", "regroup_config", "apply_setup",
           "full_done", "effective_config", "runs_root", "runs_roots", "DEFAULT_PRESET",
           "measured_relatedness", "slurm_unavailable"]
