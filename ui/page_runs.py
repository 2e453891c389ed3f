"""Runs: launch experiments as background processes (pam_explorer.runs.jobs), watch, cancel.

Every run is a separate process with its state on disk under the runs root (``$PAM_RUNS_ROOT``,
else runs/<run_id>/; runs of older versions under cache/runs/ are listed too), so runs survive an
app restart. A run is a checked job spec (ui/run_args.py), not a command line. One runs at a time;
up to two more wait in a FIFO queue. The queue advances when a run's wrapper ends (it starts the
next queued run itself, as ``python -m pam_explorer.runs.jobs start-next ROOT`` does) and whenever
this page polls (every 2 s).
"""
from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from pam_explorer.core.errors import PamError
from pam_explorer.data import list_presets
from pam_explorer.prune import list_pruners
from pam_explorer.runs import jobs
from ui.run_args import MODES, experiment_job
from ui.state import current_setup, regroup_config, runs_root, runs_roots
from ui.sweep_section import runs_sweep_section  # sweep (issue 16)


def launch_form() -> None:
    setup = current_setup()
    presets = list_presets()
    with st.form("launch"):
        c = st.columns([2, 1, 2, 1, 1])
        preset = c[0].selectbox("Preset", presets, index=presets.index(setup.preset))
        prune = c[1].selectbox("Pruning method", list_pruners())
        mode = c[2].radio("Run", MODES)
        alpha = c[3].number_input("alpha (single run)", min_value=0.0, value=float(regroup_config().alpha),
                                  format="%.4g")
        sparsity = c[3].number_input("target sparsity (AdapMTL)", min_value=0.05, max_value=0.99, value=0.9,
                                     step=0.05, help="overall fraction of zero weights; used by adapmtl only")
        quick = c[4].checkbox("quick", value=False, help="tiny data, few steps: a smoke test")
        device = c[4].selectbox("Device", ("auto", "cpu", "cuda"))
        if st.form_submit_button("Launch", type="primary"):
            job = experiment_job(preset, prune, mode, alpha, quick, device, sparsity)
            name = f"{preset}-{prune}" + ("-PAM" if mode == MODES[1] else "") + ("-quick" if quick else "")
            try:
                rid = jobs.submit(job, runs_root(), name=name)
            except PamError as exc:  # the queue is full, or a bad argument
                st.error(str(exc))
            else:
                started = jobs.start_next(runs_root())
                st.success(f"Run {rid} " + ("started." if started == rid else "queued."))


def _duration(r: dict) -> str:
    start = r.get("started")
    if not start:
        return ""
    return f"{(r.get('ended') or time.time()) - start:.0f} s"


def run_panel(r: dict) -> None:
    rid, state, root = r["run_id"], r["state"], r["root"]
    with st.container(border=True):
        c1, c2 = st.columns([5, 1])
        c1.markdown(f"**{rid}** · `{state}` · {_duration(r)}  \n`{jobs.describe(r)}`")
        if state in jobs.ACTIVE:  # the callback runs before the (fragment) rerun shows the new state
            c2.button("Cancel", key=f"cancel_{rid}", on_click=jobs.cancel, args=(rid, root))
        if state == "running":
            p = jobs.progress(rid, root) or {}
            frac = p.get("fraction")
            if isinstance(frac, (int, float)):
                st.progress(min(max(float(frac), 0.0), 1.0),
                            text=f"{p.get('stage', '')}: {p.get('message', '')}")
        if state in ("running", "failed"):
            if state == "failed":
                st.error(f"Run failed (exit code {r.get('exit_code')}). {r.get('message', '')}")
            st.code(jobs.log_tail(rid, 15, root) or "(no output yet)", language=None)


@st.fragment(run_every=2)
def runs_view() -> None:
    runs = jobs.poll(runs_roots())
    if not runs:
        st.info("No runs yet.")
        return
    df = pd.DataFrame([{"run": r["run_id"], "state": r["state"], "duration": _duration(r),
                        "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.get("created", 0)))}
                       for r in runs[::-1]])
    st.dataframe(df, hide_index=True)
    active = [r for r in runs if r["state"] in jobs.ACTIVE]
    recent_failed = [r for r in runs[::-1] if r["state"] == "failed"][:2]
    for r in active + recent_failed:
        run_panel(r)


def main() -> None:
    st.header("Runs")
    st.caption(f"Run directories: `{runs_root()}`. One run at a time, at most "
               f"{jobs.MAX_QUEUED} queued; runs keep going if the app stops.")
    launch_form()
    runs_view()
    runs_sweep_section(current_setup().preset)  # sweep (issue 16)


main()
