"""Setup: a preset (checkpoints pre-trained, trained here, or uploaded), or a project file of the
user's own networks and data (by path, or a zip upload), and the MI settings.

Nothing changes until "Apply" / "Open project"; a failure (bad file, wrong shapes, bad MI
settings, a project error naming the file and the row, column or key) shows st.error and keeps
the previous working setup. A preset without networks offers "Train networks for this preset"
(a background job with progress, ~20 s for a digits preset on an idle CPU) and the equivalent
command; "Pre-trained" is offered only where networks exist. Uploaded networks may be of any
registered architecture: options such as a ResNet's width and stem are read off the file (the
project files' loader, :mod:`pam_explorer.zoo.user_nets`).
"""
from __future__ import annotations

import streamlit as st

from pam_explorer.core.config import BOUNDS, LABEL_MODES, POOLINGS, MIConfig
from pam_explorer.core.errors import DataMissing, PamError
from pam_explorer.data import get_preset, list_presets
from pam_explorer.data.project import ProjectPreset, read_project
from pam_explorer.data.project_zip import unpack_project_zip
from pam_explorer.graph.networks import project_networks
from pam_explorer.runs import jobs
from pam_explorer.zoo import list_models
from pam_explorer.zoo.user_nets import SUFFIXES
from ui import labels as L
from ui.run_args import train_job
from ui.state import (
    Setup,
    apply_setup,
    current_setup,
    measured_relatedness,
    nets_from_uploads,
    open_explorer,
    preset_arch,
    runs_root,
    uploads_hash,
)

PRETRAINED, UPLOAD = "Pre-trained networks (assets/<preset>)", "Upload a network file per task"
PRESET, PROJECT_PATH, PROJECT_ZIP = "A preset", "A project file (path)", "A project zip (upload)"


def _mi_inputs(mi: MIConfig) -> dict:
    with st.expander("Mutual-information settings", expanded=False):
        c = st.columns(5)
        st.caption("The estimator's other settings (scaled kernel, chance level from label permutations, "
                   "RMS normalisation) are the default profile's; changing any field here makes the "
                   "profile 'custom', which experiments cannot reproduce (they regroup with a profile).")
        return dict(
            n_samples=int(c[0].number_input("N samples", min_value=8, max_value=4096, value=mi.n_samples,
                                            step=32, help="pictures used for the MI estimate")),
            sigma2=float(c[1].number_input("sigma2 (relative)", min_value=1e-4, max_value=10.0,
                                           value=float(mi.sigma2), format="%.4g", step=0.01)),
            pooling=c[2].selectbox("Pooling", POOLINGS, index=POOLINGS.index(mi.pooling)),
            label_mode=c[3].selectbox("Label mode", LABEL_MODES, index=LABEL_MODES.index(mi.label_mode)),
            bound=c[4].selectbox("Bound", BOUNDS, index=BOUNDS.index(mi.bound)),
        )


def main() -> None:
    st.header("Setup")
    cur = current_setup()
    if st.session_state.pop("setup_applied", None):
        st.success("Setup applied.")
    is_project = cur.preset.endswith(".toml")
    source = st.radio("Networks and data", [PRESET, PROJECT_PATH, PROJECT_ZIP], horizontal=True,
                      key="setup_source", index=1 if is_project else 0,
                      help="a built-in preset, or a project file of your own networks and data "
                           "(README, 'Your own networks and data'; `python -m pam_explorer project "
                           "--preset P --out DIR` writes a preset as one, to start from)")
    if source == PRESET:
        preset_section(cur)
    else:
        project_section(cur, source)
    st.divider()
    cur = current_setup()
    what = f"project `{get_preset(cur.preset).title}` ({cur.preset})" if cur.preset.endswith(".toml") \
        else f"preset `{cur.preset}`"
    st.markdown(f"**Current setup**: {what}, checkpoints `{cur.checkpoints}`"
                + (f" ({cur.arch})" if cur.arch else "") + f"; {L.mi_text(cur.mi)}")


def preset_section(cur: Setup) -> None:
    presets = list_presets()
    preset_name = st.selectbox("Preset", presets, key="setup_preset",
                               index=presets.index(cur.preset) if cur.preset in presets else 0)
    preset = get_preset(preset_name)
    arch = preset_arch(preset_name)
    bits = measured_relatedness(preset_name)
    description = L.preset_description(preset.description, bits, preset.num_tasks) if bits is not None \
        else preset.description + " (its data are not available here: relatedness not measured)"
    st.markdown(f"{description}  \n**Tasks**: " + ", ".join(
        f"{t} ({len(cols)} labels)" for t, cols in zip(preset.task_names, preset.task_labels))
        + f"  \n**Networks**: {arch + ' (assets/' + preset_name + ')' if arch else 'none trained yet'}")
    if arch is None:
        train_section(preset_name)
    files, up_arch = _checkpoint_inputs(preset, cur, arch)
    mi_kwargs = _mi_inputs(cur.mi)
    if st.button("Apply setup", type="primary", key="apply_setup"):
        _apply(preset_name, arch, mi_kwargs, files, up_arch)


def project_section(cur: Setup, source: str) -> None:
    """A project file by path, or a zip of one, opened with "Open project"."""
    current = cur.preset if cur.preset.endswith(".toml") else ""
    if source == PROJECT_PATH:
        path = st.text_input("Project file", value=current, key="project_path",
                             placeholder="/path/to/pam.toml",
                             help="the TOML file; its CSV or NPZ, pictures and networks are relative to it")
        upload = None
    else:
        path = None
        upload = st.file_uploader("Project zip", type=["zip"], key="project_zip",
                                  help="a zip of the project file, its CSV or NPZ, the pictures and the "
                                       "networks")
    mi_kwargs = _mi_inputs(cur.mi)
    if st.button("Open project", type="primary", key="open_project"):
        _open_project(path, upload, mi_kwargs)
    if current:
        _project_summary(current)


def _open_project(path: str | None, upload, mi_kwargs: dict) -> None:
    """Read and check the project, load its networks and open its explorer; keep the old setup on
    a PamError (one line naming the file and the key, row or column)."""
    try:
        mi = MIConfig(**mi_kwargs)
        if upload is not None:
            path = str(unpack_project_zip(upload.getvalue(), runs_root() / "projects", upload.name))
        if not path:
            raise DataMissing("give the path of a project file (pam.toml), or upload a zip of one")
        project = read_project(path)
        nets = project_networks(project)
        new = Setup(project.name, mi, "pretrained", getattr(nets[0], "arch", None), project.content_key())
        open_explorer(new, nets)
    except PamError as exc:
        st.error(f"Project not opened (the previous setup is kept): {exc}")
        if "train --project" in str(exc):
            st.code(f"python -m pam_explorer train --project {path}", language="bash")
    else:
        apply_setup(new)
        st.session_state["setup_applied"] = True
        st.rerun()


def _project_summary(path: str) -> None:
    try:
        p: ProjectPreset = read_project(path)
        sizes = p.split_sizes()
    except PamError as exc:
        st.warning(f"The current project cannot be read now: {exc}")
        return
    names = p.task_label_names()
    st.markdown(f"**Project** `{p.title}`: {p.image_size}x{p.image_size} px, {p.in_channels} channel(s); "
                + ", ".join(f"{n:,} {s}" for s, n in sizes.items()) + " pictures  \n"
                + "  \n".join(f"**Task {t}**: {', '.join(names[t])} — network `{net.path}` "
                               f"({net.arch or 'architecture from its sidecar'})"
                               for t, net in zip(p.task_names, p.nets)))


def train_section(preset: str) -> None:
    """No networks for this preset: the command that makes them, and the same as a background job."""
    st.warning(f"Preset {preset!r} has no trained networks yet. Train them here (a background job: "
               "about 20 s per task on an idle CPU), upload your own below, or run:")
    st.code(f"python -m pam_explorer train --preset {preset}", language="bash")
    if st.button("Train networks for this preset", key=f"train_{preset}", type="primary",
                 disabled=_train_run(preset) is not None and _train_run(preset)["state"] in jobs.ACTIVE):
        try:
            rid = jobs.submit(train_job(preset), runs_root(), name=f"train-{preset}")
        except PamError as exc:  # the queue is full
            st.error(f"Not started: {exc}")
        else:
            jobs.start_next(runs_root())
            st.session_state[f"train_run_{preset}"] = rid
    if st.session_state.get(f"train_run_{preset}"):
        train_status(preset)


def _train_run(preset: str) -> dict | None:
    rid = st.session_state.get(f"train_run_{preset}")
    return next((r for r in jobs.list_runs(runs_root()) if r["run_id"] == rid), None) if rid else None


@st.fragment(run_every=2)
def train_status(preset: str) -> None:
    """Live progress of this session's training job for ``preset``."""
    jobs.poll(runs_root())
    run = _train_run(preset)
    if run is None:
        return
    p = jobs.progress(run["run_id"], run["root"]) or {}
    if run["state"] in jobs.ACTIVE:
        st.progress(min(max(float(p.get("fraction") or 0.0), 0.0), 1.0),
                    text=f"Training ({run['state']}): " + (L.progress_text(p) or "starting ..."))
        st.code(jobs.log_tail(run["run_id"], 6, run["root"]) or "(no output yet)", language=None)
    elif run["state"] == "done":
        st.success(f"Networks trained and installed for {preset} (run {run['run_id']}).")
        if st.button("Use them", key=f"use_trained_{preset}", type="primary"):
            st.rerun()  # the whole page: "Pre-trained" is offered now
    else:
        st.error(f"Training {run['state']} (run {run['run_id']}); its log:")
        st.code(jobs.log_tail(run["run_id"], 15, run["root"]) or "(empty log)", language=None)


def _checkpoint_inputs(preset, cur: Setup, arch: str | None) -> tuple[dict | None, str | None]:
    """(uploaded bytes per task, architecture) when uploads are chosen, else (None, None)."""
    sources = [PRETRAINED, UPLOAD] if arch is not None else [UPLOAD]
    src = st.radio("Checkpoints", sources, horizontal=True, key=f"checkpoints_{preset.name}",
                   index=0 if cur.checkpoints == "pretrained" or len(sources) == 1 else 1,
                   help=None if arch is not None else "no pre-trained networks for this preset (yet)")
    files, up_arch = {}, None
    if src == UPLOAD:
        models = list_models()
        default = cur.arch or arch or models[0]
        up_arch = st.selectbox("Architecture (registered)", models, key="upload_arch",
                               index=models.index(default) if default in models else 0)
        cols = st.columns(len(preset.task_names))
        for col, t in zip(cols, preset.task_names):
            f = col.file_uploader(f"Task {t}", type=[s.lstrip(".") for s in SUFFIXES],
                                  key=f"upload_{preset.name}_{t}")
            if f is not None:
                files[t] = (f.name, f.getvalue())
        st.caption("Weights only: safetensors, or a PyTorch state_dict (.pth / .pt, read with "
                   "torch.load(weights_only=True)); no code runs on load. The architecture's options (a "
                   "ResNet's width and stem, a LeNet's width, ...) are read off the file's tensor shapes; "
                   f"the head needs one output per label of the task, for {preset.in_channels}-channel "
                   f"{preset.image_size}-px pictures.")
        return files, up_arch
    return None, None


def _apply(preset_name: str, arch: str | None, mi_kwargs: dict, files: dict | None,
           up_arch: str | None) -> None:
    """Build the new setup and open its explorer now (fail here, not later); keep the old one on
    a PamError."""
    try:
        mi = MIConfig(**mi_kwargs)
        nets = None
        if files is not None:
            nets = nets_from_uploads(preset_name, up_arch, files)
            new = Setup(preset_name, mi, uploads_hash(up_arch, files), up_arch)
            st.session_state.setdefault("uploaded_nets", {})[new.checkpoints] = nets
        else:
            new = Setup(preset_name, mi, "pretrained", arch)
        open_explorer(new, nets)  # compute/load the trajectories now: fail here, not later
    except PamError as exc:
        st.error(f"Setup not applied (the previous one is kept): {exc}")
    else:
        apply_setup(new)
        st.session_state["setup_applied"] = True
        st.rerun()


main()
