"""Results of finished runs: Table 1, gains, sharing after pruning, pruning logs, sparsity.

A failed run shows its state and log tail, plus whatever it produced. Two runs can be compared
side by side.
"""
from __future__ import annotations

import streamlit as st

from pam_explorer.runs import jobs
from ui import results_view as R
from ui.state import runs_roots


def _fmt(df):
    fmt = {c: "{:.2f}" for c in df.columns if c.startswith("acc")}
    fmt.update({c: "{:,.0f}" for c in df.columns if c.startswith("FLOPs")})
    fmt.update({c: "{:.3f}" for c in df.columns if c.startswith("ms ")})
    return df.style.format(fmt, na_rep="")


def show_run(r: dict, slot: str) -> None:
    rid, state, root = r["run_id"], r["state"], r["root"]
    st.markdown(f"**{rid}** · state `{state}`")
    if state in ("failed", "cancelled"):
        (st.error if state == "failed" else st.warning)(
            f"Run {state}" + (f" (exit code {r.get('exit_code')})" if r.get("exit_code") is not None else "")
            + (f": {r['message']}" if r.get("message") else ""))
        st.code(jobs.log_tail(rid, 30, root) or "(empty log)", language=None)
    report = jobs.report(rid, root)
    if report is None:
        if state == "done":
            st.warning("The run ended without writing report.json.")
        return
    st.caption(f"preset {report.get('preset')} · prune {report.get('prune')}"
               + (f" · alpha {report['alpha']:g}" if isinstance(report.get("alpha"), (int, float)) else "")
               + (" · quick" if report.get("quick") else ""))
    t1 = R.table1(report)
    if t1 is not None:
        st.dataframe(_fmt(t1))
    g = R.gains_table(report)
    if g is not None:
        c1, c2 = st.columns([1, 2])
        c1.dataframe(g.style.format("{:.3f}x"))
        c2.plotly_chart(R.fig_gains(report), key=f"gains_{slot}")
    fig = R.fig_flops_bars(report)
    if fig is not None:
        st.plotly_chart(fig, key=f"flops_{slot}")
    fig = R.fig_sharing_after(report)
    if fig is not None:
        st.plotly_chart(fig, key=f"share_{slot}")
    schemes = report.get("schemes") or {}
    logs = {s: R.log_frame(v.get("log")) for s, v in schemes.items() if isinstance(v, dict)}
    logs = {s: f for s, f in logs.items() if f is not None}
    if logs:
        c1, c2 = st.columns(2)
        order = sorted(logs, key=lambda k: k != "PAM")  # PAM first
        scheme = c1.selectbox("Pruning log of", order, key=f"log_scheme_{slot}")
        frame = logs[scheme]
        layer = c2.selectbox("Layer", ["all layers", *frame["layer"].unique()], key=f"log_layer_{slot}")
        st.plotly_chart(R.fig_prune_log(frame, None if layer == "all layers" else layer),
                        key=f"log_{slot}")
        st.caption("Accepted prune steps only (a rejected step is rolled back). B1 prunes each "
                   "task's network on its own.")
    sparse_section(report, slot)


def sparse_section(report: dict, slot: str) -> None:
    """AdapMTL (unstructured): Delta_T, sparse FLOPs, final breakdown, sparsity over training."""
    table = R.sparse_table(report)
    if table is None:
        return
    st.subheader("Unstructured pruning (AdapMTL)")
    st.caption(f"Target overall sparsity {report.get('target_sparsity', '?')}. FLOPs in Table 1 are "
               "dense; effective sparse FLOPs count multiply-adds with a non-zero weight.")
    st.dataframe(table.style.format({c: ("{:,.0f}" if c.startswith("sparse") else "{:.3f}")
                                     for c in table.columns}, na_rep=""))
    fig = R.fig_sparsity_breakdown(report)
    if fig is not None:
        st.plotly_chart(fig, key=f"breakdown_{slot}")
    frames = R.sparsity_frames(report)
    if frames:
        label = st.selectbox("Sparsity over training of", list(frames), key=f"sparsity_of_{slot}")
        frame, frozen = frames[label]
        st.plotly_chart(R.fig_sparsity(frame, label, frozen), key=f"sparsity_{slot}")


def main() -> None:
    st.header("Results")
    runs = [r for r in jobs.poll(runs_roots()) if r["state"] in jobs.FINAL][::-1]
    if not runs:
        st.info("No finished runs yet: launch one on the Runs page.")
        return
    labels = {r["run_id"]: f"{r['run_id']} ({r['state']})" for r in runs}
    ids = list(labels)
    compare = st.toggle("Compare two runs side by side", value=False)
    if not compare:
        rid = st.selectbox("Run", ids, format_func=labels.get, key="res_run")
        show_run(next(r for r in runs if r["run_id"] == rid), "single")
        return
    cols = st.columns(2)
    for i, col in enumerate(cols):
        with col:
            rid = st.selectbox(f"Run {i + 1}", ids, index=min(i, len(ids) - 1), format_func=labels.get,
                               key=f"res_run_{i}")
            show_run(next(r for r in runs if r["run_id"] == rid), f"col{i}")


main()
