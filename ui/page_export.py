"""Export: the merged model at the explorer's current alpha, or the model of a finished run."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import streamlit as st
import torch

from pam_explorer import export
from pam_explorer.core.errors import PamError
from pam_explorer.cost.latency import measure_latency
from pam_explorer.runs import jobs
from ui.state import current_setup, effective_config, explorer_or_stop, regroup_config, runs_roots


@st.cache_resource(show_spinner=False, max_entries=4)
def _export_bytes(key: tuple, cfg, _exp) -> bytes:
    """Merged net at cfg -> export zip bytes (cached per setup + regroup config)."""
    return export.merged_model_bytes(_exp, cfg)


def manifest_summary(manifest: dict) -> None:
    """Tasks, alpha, group widths per layer and FLOPs/params per task subset of a manifest."""
    info = {k: manifest[k] for k in ("preset", "alpha", "algorithm", "format") if k in manifest}
    st.markdown(f"**Tasks**: {', '.join(manifest.get('tasks', []))}  \n"
                + "  \n".join(f"**{k}**: {v}" for k, v in info.items()))
    c1, c2 = st.columns(2)
    gw = manifest.get("group_widths")
    if gw:
        c1.caption("Neurons per group")
        c1.dataframe(pd.DataFrame.from_dict(gw, orient="index").fillna(0).astype(int))
    if manifest.get("flops"):
        df = pd.DataFrame({"FLOPs": manifest["flops"], "params": manifest.get("params", {})})
        df.index.name = "subset"
        c2.caption("Cost per task subset")
        c2.dataframe(df)


def from_explorer() -> None:
    setup = current_setup()
    exp = explorer_or_stop()
    cfg = effective_config(setup, regroup_config())
    st.subheader("Merged model at the explorer's alpha (before finetuning and pruning)")
    st.write(f"Preset `{setup.preset}`, alpha = {cfg.alpha:g} bits"
             + (f", overrides {dict(cfg.overrides)}" if cfg.overrides else "")
             + f", algorithm {cfg.algorithm}. Change alpha on the Merge explorer page.")
    try:
        with st.spinner("Merging the networks ..."):
            data = _export_bytes(setup.key, cfg, exp)
    except PamError as exc:
        st.warning(f"This grouping cannot be built as a network: {exc}")
        return
    st.session_state["export_bytes"] = data  # what the download button serves (tests read it)
    st.download_button("Download merged model (.zip)", data=data, mime="application/zip",
                       file_name=f"pam-{setup.preset}-alpha{cfg.alpha:g}.zip", type="primary",
                       key="dl_explorer")
    st.caption(f"{len(data):,} bytes: manifest.json + weights.safetensors; reload with "
               "`pam_explorer.export.load(path)`.")
    manifest_summary(export.read_manifest(data))
    latency_panel(data)


def latency_panel(data: bytes) -> None:
    """Measured latency per task subset of the exported model (on request: about 1 s)."""
    digest = hashlib.sha256(data).hexdigest()  # a figure belongs to one model, not to the page
    if st.button("Measure latency per task subset", key="measure_latency"):
        net = export.load(data)
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        st.session_state["latency_ms"] = (digest, {
            d: {k: 1e3 * v for k, v in measure_latency(net, device=d, min_run_time=0.1).items()}
            for d in devices})
    held, lat = st.session_state.get("latency_ms", (None, None))
    if lat and held == digest:
        df = pd.DataFrame({f"ms ({d}, batch 1)": v for d, v in lat.items()})
        df.index.name = "subset"
        st.dataframe(df.style.format("{:.3f}"))
        st.caption("Median of torch.utils.benchmark runs of forward(x, tasks) on one image; at LeNet "
                   "sizes per-module overhead, not FLOPs, dominates.")


def from_run() -> None:
    st.subheader("Model of a finished run")
    runs = [r for r in jobs.list_runs(runs_roots()) if (Path(r["dir"]) / "model.zip").is_file()]
    if not runs:
        st.info("No run directory holds a model.zip yet (launch one on the Runs page).")
        return
    labels = {r["run_id"]: f"{r['run_id']} ({r['state']})" for r in runs}
    rid = st.selectbox("Run", list(labels)[::-1], format_func=labels.get, key="export_run")
    path = Path(next(r["dir"] for r in runs if r["run_id"] == rid)) / "model.zip"
    try:
        manifest = export.read_manifest(path)
    except PamError as exc:
        st.error(f"{path} is not a readable export: {exc}")
        return
    st.download_button("Download the run's model (.zip)", data=path.read_bytes(),
                       file_name=f"pam-{rid}.zip", mime="application/zip", key="dl_run")
    manifest_summary(manifest)


def main() -> None:
    st.header("Export")
    from_explorer()
    st.divider()
    from_run()


main()
