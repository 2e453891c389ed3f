"""Setup: preset, checkpoints (committed or uploaded safetensors), MI settings.

Nothing changes until "Apply"; a failing apply (bad file, wrong shapes, bad MI settings) shows
st.error and keeps the previous working setup.
"""
from __future__ import annotations

import streamlit as st

from pam_explorer.core.config import BOUNDS, LABEL_MODES, POOLINGS, MIConfig
from pam_explorer.core.errors import PamError
from pam_explorer.data import get_preset, list_presets
from pam_explorer.zoo import list_models
from ui.state import (
    Setup,
    apply_setup,
    current_setup,
    nets_from_uploads,
    open_explorer,
    preset_arch,
    uploads_hash,
)


def _mi_inputs(mi: MIConfig) -> dict:
    with st.expander("Mutual-information settings", expanded=False):
        c = st.columns(5)
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
    presets = list_presets()
    preset_name = st.selectbox("Preset", presets,
                               index=presets.index(cur.preset) if cur.preset in presets else 0)
    preset = get_preset(preset_name)
    arch = preset_arch(preset_name)
    st.markdown(f"{preset.description}  \n**Tasks**: " + ", ".join(
        f"{t} ({len(cols)} labels)" for t, cols in zip(preset.task_names, preset.task_labels))
        + f"  \n**Architecture of the committed networks**: {arch or 'none committed'}")

    files, up_arch = _checkpoint_inputs(preset, cur, arch)
    mi_kwargs = _mi_inputs(cur.mi)
    if st.button("Apply setup", type="primary"):
        _apply(preset_name, arch, mi_kwargs, files, up_arch)

    st.divider()
    cur = current_setup()
    st.markdown(f"**Current setup**: preset `{cur.preset}`, checkpoints `{cur.checkpoints}`"
                + (f" ({cur.arch})" if cur.arch else "")
                + f", MI: N={cur.mi.n_samples}, sigma2={cur.mi.sigma2:g}, {cur.mi.pooling} pooling, "
                  f"{cur.mi.label_mode} labels, {cur.mi.bound} bound")


def _checkpoint_inputs(preset, cur: Setup, arch: str | None) -> tuple[dict | None, str | None]:
    """(uploaded bytes per task, architecture) when uploads are chosen, else (None, None)."""
    sources = ["Committed pre-trained", "Upload .safetensors per task"]
    src = st.radio("Checkpoints", sources, index=0 if cur.checkpoints == "pretrained" else 1, horizontal=True)
    files, up_arch = {}, None
    if src == sources[1]:
        models = list_models()
        default = cur.arch or arch or models[0]
        up_arch = st.selectbox("Architecture (registered)", models,
                               index=models.index(default) if default in models else 0)
        cols = st.columns(len(preset.task_names))
        for col, t in zip(cols, preset.task_names):
            f = col.file_uploader(f"Task {t}", type=["safetensors"], key=f"upload_{preset.name}_{t}")
            if f is not None:
                files[t] = f.getvalue()
        st.caption("Weights only (safetensors: no code runs on load). Each file must match "
                   f"`build_model(arch, labels of the task, {preset.in_channels}, {preset.image_size})` "
                   "exactly.")
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
