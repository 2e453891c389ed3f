"""Export: the model of a finished run first (finetuned, and pruned by an experiment: what to
deploy), then "finetune, then export" (a background merge job at the explorer's alpha), and last
the explorer's merged model as built (before finetuning: said, with its accuracy beside the
original networks').
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import streamlit as st

from pam_explorer import export
from pam_explorer.core.errors import PamError
from pam_explorer.core.subsets import subset_masks
from pam_explorer.runs import jobs
from pam_explorer.runs.bench_latency import archive_latency
from pam_explorer.runs.estimate import estimate
from pam_explorer.runs.merge_run import merged_model_bytes
from ui import labels as L
from ui.run_args import finetune_export_job
from ui.state import (
    current_setup,
    effective_config,
    explorer_or_stop,
    regroup_config,
    runs_root,
    runs_roots,
)


@st.cache_resource(show_spinner=False, max_entries=4)
def _export_bytes(key: tuple, cfg, _exp) -> bytes:
    """Merged net at cfg -> export zip bytes (cached per setup + regroup config)."""
    return merged_model_bytes(_exp, cfg)


def manifest_summary(manifest: dict, quick: bool = False) -> None:
    """Which model (stage), its accuracy, the configuration that produced it, group widths per
    layer and FLOPs/params per task subset of a manifest."""
    # every string here comes from the file: shown as text, never as markdown
    st.markdown(f"**Model**: {L.plain(L.model_stage(manifest))}" + (" · **quick run**" if quick else "")
                + (f"  \n**{L.plain(L.accuracy_text(manifest))}**" if L.accuracy_text(manifest) else ""))
    info = {k: manifest[k] for k in ("preset", "alpha", "algorithm", "both_picked", "format")
            if k in manifest}
    overrides = manifest.get("alpha_overrides", manifest.get("overrides"))
    if overrides:
        info["per-layer overrides"] = L.overrides_text(overrides)
    mi = manifest.get("mi")
    if isinstance(mi, dict) and "profile" in mi:
        info["MI profile"] = f"{mi['profile']} (N={mi.get('n_samples')}, sigma2={mi.get('sigma2')})"
    st.markdown(f"**Tasks**: {L.plain(', '.join(manifest.get('tasks', [])))}  \n"
                + "  \n".join(f"**{k}**: {L.plain(v)}" for k, v in info.items()))
    c1, c2 = st.columns(2)
    gw = manifest.get("group_widths")
    if gw:
        c1.caption("Neurons per group")
        c1.dataframe(pd.DataFrame.from_dict(gw, orient="index").fillna(0).astype(int))
    costs = L.cost_table(manifest)
    if costs:
        df = pd.DataFrame(costs)
        df.index.name = "subset"
        c2.caption(f"Cost per task subset. {L.FLOPS_DEF}.")
        c2.dataframe(df)


def from_explorer() -> None:
    setup = current_setup()
    exp = explorer_or_stop()
    cfg = effective_config(setup, regroup_config())
    st.write(f"Preset `{setup.preset}`, {L.regroup_text(cfg)}; {L.mi_text(exp.mi)}. Change alpha on the "
             "Merge explorer page.")
    try:
        with st.spinner("Merging the networks and measuring their test accuracy ..."):
            data = _export_bytes(setup.key, cfg, exp)
    except PamError as exc:
        st.warning(f"This grouping cannot be built as a network: {exc}")
        return
    st.session_state["export_bytes"] = data  # what the download button serves (tests read it)
    manifest = export.read_manifest(data)
    st.warning("This is the merged network **before finetuning** (and before pruning): merging adds "
               "connections that start at zero and moves neurons between groups, so it is less accurate "
               f"than the original networks until it is finetuned: {L.accuracy_text(manifest)}. Use "
               "'Finetune, then export' above, or a finished run's model.")
    st.download_button("Download this merged model, not finetuned (.zip)", data=data, mime="application/zip",
                       file_name=f"pam-{setup.preset}-alpha{cfg.alpha:g}-not-finetuned.zip",
                       key="dl_explorer")
    st.caption(f"{len(data):,} bytes: manifest.json + weights.safetensors; reload with "
               "`pam_explorer.export.load(path)`.")
    manifest_summary(manifest)
    latency_panel(data)
    subset_panel(data, "explorer")


def finetune_then_export() -> None:
    """A merge run (background job) at the explorer's alpha, overrides and MI settings."""
    setup = current_setup()
    cfg = effective_config(setup, regroup_config())
    st.subheader("Finetune, then export (background job)")
    st.caption("Merges the networks at the explorer's alpha and per-layer overrides, finetunes them jointly "
               "and saves the model (the `merge` command; no pruning: run an experiment on the Runs page for "
               "a pruned model). When it is done, its model is listed above.")
    if setup.checkpoints != "pretrained":
        st.info("Runs use the preset's pre-trained networks; the explorer shows uploaded ones, so this job "
                "cannot reproduce it. Apply pre-trained networks on the Setup page to use it.")
        return
    c1, c2 = st.columns([1, 3])
    epochs = int(c1.number_input("finetuning epochs", min_value=1, max_value=50, value=3, key="ft_epochs"))
    job = finetune_export_job(setup.preset, cfg, current_setup().mi, epochs)
    c2.markdown(f"`python -m pam_explorer {jobs.describe({'job': job})}`  \nDuration: "
                + L.plain(estimate(job, runs_roots(), jobs.list_runs(runs_roots())).text))
    if st.button("Finetune, then export", key="finetune_export"):
        try:
            rid = jobs.submit(job, runs_root(), name=f"{setup.preset}-finetune-export")
        except PamError as exc:
            st.error(f"Not started: {exc}")
        else:
            jobs.start_next(runs_root())
            st.session_state["finetune_run"] = rid
    if st.session_state.get("finetune_run"):
        finetune_status()


@st.fragment(run_every=2)
def finetune_status() -> None:
    rid = st.session_state.get("finetune_run")
    run = next((r for r in jobs.poll(runs_roots()) if r["run_id"] == rid), None)
    if run is None:
        return
    p = jobs.progress(rid, run["root"]) or {}
    if run["state"] in jobs.ACTIVE:
        st.progress(min(max(float(p.get("fraction") or 0.0), 0.0), 1.0),
                    text=f"{rid} ({run['state']}): " + (L.plain(L.progress_text(p)) or "starting ..."))
    elif run["state"] == "done":
        st.success(f"{rid} is done: its finetuned model is in 'Model of a finished run' above.")
        if st.button("Show it", key="show_finetuned"):
            st.session_state["export_run"] = rid
            st.rerun()
    else:
        st.error(f"{rid} {run['state']}: " + (L.plain(run["message"]) if run.get("message")
                                              else "see its log on the Runs page"))


def latency_panel(data: bytes) -> None:
    """Measured latency per task subset of the exported model, grouped and fused (on request)."""
    digest = hashlib.sha256(data).hexdigest()  # a figure belongs to one model, not to the page
    if st.button("Measure latency per task subset (grouped and fused; a few seconds)", key="measure_latency"):
        st.session_state["latency_ms"] = (digest, archive_latency(data))
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
    st.subheader("Model of a finished run (finetuned; pruned by an experiment): the one to deploy")
    runs = [r for r in jobs.list_runs(runs_roots()) if (Path(r["dir"]) / "model.zip").is_file()]
    if not runs:
        st.info("No finished run holds a model yet: run an experiment on the Runs page (finetuned and "
                "pruned), or 'Finetune, then export' below (finetuned).")
        return
    labels = {r["run_id"]: L.run_label(r) for r in runs}
    ids = list(labels)[::-1]
    if st.session_state.get("export_run") not in ids:
        st.session_state.pop("export_run", None)
    rid = st.selectbox("Run", ids, format_func=labels.get, key="export_run")
    run = next(r for r in runs if r["run_id"] == rid)
    path = Path(run["dir"]) / "model.zip"
    try:
        manifest = export.read_manifest(path)
    except PamError as exc:
        st.error(f"{L.plain(path)} is not a readable export: {L.plain(exc)}")
        return
    data = path.read_bytes()
    if L.is_quick(run):
        st.warning(f"Quick run ({L.QUICK}): not a model to deploy.")
    st.download_button("Download the run's model (.zip)", data=data, type="primary",
                       file_name=f"pam-{rid}.zip", mime="application/zip", key="dl_run")
    manifest_summary(manifest, L.is_quick(run))
    subset_panel(data, "run")


def main() -> None:
    st.header("Export")
    from_run()
    st.divider()
    finetune_then_export()
    st.divider()
    with st.expander("The explorer's merged model as built: before finetuning (less accurate)",
                     expanded=not any((Path(r["dir"]) / "model.zip").is_file()
                                      for r in jobs.list_runs(runs_roots()))):
        from_explorer()


main()
