"""Export: the merged model at the explorer's current alpha, or the model of a finished run."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import streamlit as st
import torch

from pam_explorer import export
from pam_explorer.core.errors import PamError
from pam_explorer.core.subsets import subset_masks
from pam_explorer.runs import jobs
from pam_explorer.runs.bench_latency import grouped_vs_fused
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
    subset_panel(data, "explorer")


def latency_panel(data: bytes) -> None:
    """Measured latency per task subset of the exported model, grouped and fused (on request)."""
    digest = hashlib.sha256(data).hexdigest()  # a figure belongs to one model, not to the page
    if st.button("Measure latency per task subset (grouped and fused)", key="measure_latency"):
        net = export.load(data)
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        st.session_state["latency_ms"] = (digest, {
            d: grouped_vs_fused(net, device=d, batch=1, min_run_time=0.05) for d in devices})
    held, lat = st.session_state.get("latency_ms", (None, None))
    if lat and held == digest:
        df = pd.DataFrame({f"{kind} ms ({d}, batch 1)": {s: 1e3 * v[kind] for s, v in per.items()}
                           for d, per in lat.items() for kind in ("grouped", "fused")})
        df.index.name = "subset"
        st.dataframe(df.style.format("{:.3f}"))
        st.caption("Median of torch.utils.benchmark runs on one image. Grouped: forward(x, tasks), one "
                   "module per group; fused: the dense subset model that the per-subset export writes. "
                   "At LeNet sizes per-op overhead, not FLOPs, dominates.")


def subset_panel(data: bytes, key: str) -> None:
    """Export the fused model of one task subset: format choice, build on request, download."""
    st.markdown("**Fused model of one task subset** (one dense layer per layer; runs without this project)")
    c1, c2 = st.columns(2)
    subsets = list(subset_masks(export.read_manifest(data)["tasks"]))
    subset = c1.selectbox("Task subset", subsets, index=len(subsets) - 1, key=f"subset_{key}")
    fmt = c2.radio("Format", export.MODEL_FORMATS, horizontal=True, key=f"format_{key}")
    want = (hashlib.sha256(data).hexdigest(), subset, fmt)
    if st.button("Build the subset model", key=f"build_{key}"):
        try:
            with st.spinner(f"Fusing and exporting {subset} as {fmt} ..."):
                st.session_state[f"subset_file_{key}"] = (want, *export.subset_bytes_from_archive(
                    data, subset, fmt))
        except PamError as exc:
            st.error(str(exc))
            return
    held = st.session_state.get(f"subset_file_{key}")
    if not held or held[0] != want:
        return
    _, blob, manifest = held
    b1, b2 = st.columns(2)
    b1.download_button(f"Download {manifest['file']}", data=blob, file_name=manifest["file"],
                       mime="application/octet-stream", key=f"dl_subset_{key}")
    b2.download_button("Download its manifest (.json)", data=json.dumps(manifest, indent=2, sort_keys=True),
                       file_name=manifest["file"] + ".json", mime="application/json",
                       key=f"dl_subset_manifest_{key}")
    st.caption(f"{manifest['bytes']:,} bytes, sha256 {manifest['sha256'][:16]}...; fused "
               f"{manifest['flops']:,} FLOPs (grouped {manifest['grouped_flops']:,}: the dense layers also "
               "multiply the zero blocks between groups that do not read each other).")


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
    data = path.read_bytes()
    st.download_button("Download the run's model (.zip)", data=data,
                       file_name=f"pam-{rid}.zip", mime="application/zip", key="dl_run")
    manifest_summary(manifest)
    subset_panel(data, "run")


def main() -> None:
    st.header("Export")
    from_explorer()
    st.divider()
    from_run()


main()
