"""Results of finished runs: Table 1 (mean ± 95 % CI over seeds), gains with their verdict, sharing
after pruning, pruning logs, sparsity; the configuration that produced them; quick runs marked.

A failed run shows its state and log tail, plus whatever it produced. Two runs can be compared
side by side.
"""
from __future__ import annotations

import streamlit as st

from pam_explorer.core.errors import PamError
from pam_explorer.runs import jobs
from pam_explorer.runs.report_schema import read_report
from ui import advice
from ui import labels as L
from ui import results_latency as T
from ui import results_logs as G
from ui import results_view as R
from ui.state import runs_roots


def show_run(r: dict, slot: str) -> None:
    rid, state, root = r["run_id"], r["state"], r["root"]
    st.markdown(f"**{rid}** · state {L.code(state)}"  # run ids are [A-Za-z0-9_.-] (run_folders)
                + (" · **quick run**" if L.is_quick(r) else ""))
    if state in ("failed", "cancelled"):  # the message comes from a file: shown as text
        (st.error if state == "failed" else st.warning)(
            f"Run {state}" + (f" (exit code {L.plain(r.get('exit_code'))})" if r.get("exit_code") is not None
                              else "") + (f": {L.plain(r['message'])}" if r.get("message") else ""))
        st.code(jobs.log_tail(rid, 30, root) or "(empty log)", language=None)
    try:
        report = read_report(rid, root)
    except PamError as exc:  # malformed: one line, no traceback
        st.warning(f"Cannot show this run's results: {L.plain(exc)}")
        return
    if report is None:
        if state == "done":
            st.info("This run wrote no report.json (a merge or training run: its model is on the Export "
                    "page)." if (r.get("job") or {}).get("command") in ("merge", "train")
                    else "The run ended without writing report.json.")
        return
    if L.is_quick(report):
        st.warning(f"**Quick run** ({L.QUICK}): tiny data and few steps, so accuracies and FLOPs are "
                   "far from a real run's.")
    st.caption("  \n".join(R.config_lines(report)))
    for line in R.floor_misses(report):
        st.warning(L.plain(line))
    guide = advice.next_steps(report)
    if guide:
        st.info(L.plain(guide), icon=":material/lightbulb:")
    t1 = R.table1_display(report)
    if t1 is not None:  # st.table wraps its cells: no column is ever hidden off the right edge
        st.table(t1)
        seeds = report.get("seeds") or []
        st.caption(("Mean ± half-width of the 95 % bootstrap CI over seeds " + str(list(seeds))
                    + "; (worst seed) accuracy. " if len(seeds) > 1 else "One seed. ")
                   + f"Accuracy: test, %. {R.flops_label(report)}: after pruning, batch 1"
                   + (" (effective: multiply-adds with a non-zero weight)" if R.unstructured(report) else "")
                   + f". {L.FLOPS_DEF}. {L.DASH}: no value (the original networks have accuracies only).")
        latency_section(report)
    g = R.gains_display(report)
    if g is not None:
        st.table(g)
        st.plotly_chart(R.fig_gains(report), key=f"gains_{slot}")
    fig = R.fig_flops_bars(report)
    if fig is not None:
        st.plotly_chart(fig, key=f"flops_{slot}")
    fig = R.fig_sharing_after(report)
    if fig is not None:
        st.plotly_chart(fig, key=f"share_{slot}")
    log_section(report, slot)
    sparse_section(report, slot)


def latency_section(report: dict) -> None:
    """Measured CPU latency: its own table (⚠: unreliable), what it is, which figures are not
    trusted and why, and every figure's median, IQR and verdict."""
    latency = R.latency_display(report)
    if latency is None:
        return
    st.table(latency)
    st.caption(L.plain(T.caption(report)))
    lines = T.unreliable_lines(report)
    if lines:  # one notice, a line per figure
        st.warning("Unreliable latency, not used for gains:  \n" + "  \n".join(L.plain(x) for x in lines))
    table = T.details(report)
    if table is not None:
        with st.expander("Latency details: median, IQR and verdict of every figure"):
            st.table(table)


def log_section(report: dict, slot: str) -> None:
    schemes = report.get("schemes") or {}
    logs = {s: G.log_frame(v.get("log")) for s, v in schemes.items() if isinstance(v, dict)}
    logs = {s: f for s, f in logs.items() if f is not None}
    if not logs:
        return
    c1, c2 = st.columns(2)
    order = sorted(logs, key=lambda k: k != "PAM")  # PAM first
    scheme = c1.selectbox("Pruning log of", order, key=f"log_scheme_{slot}")
    frame = logs[scheme]
    layer = c2.selectbox("Layer", ["all layers", *frame["layer"].unique()], key=f"log_layer_{slot}")
    st.plotly_chart(G.fig_prune_log(frame, None if layer == "all layers" else layer), key=f"log_{slot}")
    accepted, total = G.accepted_steps(frame)
    seeds = report.get("seeds") or []
    st.caption(f"{L.plain(scheme)}: {accepted} of {total} prune steps accepted; only accepted steps are "
               "plotted (a rejected step's widths were tried, then rolled back). B1 prunes each task's "
               "network on its own." + (f" Seed {seeds[0]} (the report keeps the first seed's log)."
                                if len(seeds) > 1 else ""))


def sparse_section(report: dict, slot: str) -> None:
    """AdapMTL (unstructured): Delta_T, sparse FLOPs, final breakdown, sparsity over training."""
    table = G.sparse_table(report)
    if table is None:
        return
    st.subheader("Unstructured pruning (AdapMTL)")
    st.caption(f"Target overall sparsity {report.get('target_sparsity', '?')}. The FLOPs of Table 1 are "
               "the effective ones after pruning (multiply-adds with a non-zero weight); dense FLOPs are "
               "those of the unchanged structure (no neuron is removed), not a cost after pruning.")
    st.dataframe(table.style.format({c: ("{:,.0f}" if "FLOPs" in c else "{:.3f}") for c in table.columns},
                                    na_rep=L.DASH))
    fig = G.fig_sparsity_breakdown(report)
    if fig is not None:
        st.plotly_chart(fig, key=f"breakdown_{slot}")
    frames = G.sparsity_frames(report)
    if frames:
        label = st.selectbox("Sparsity over training of", list(frames), key=f"sparsity_of_{slot}")
        frame, frozen = frames[label]
        st.plotly_chart(G.fig_sparsity(frame, label, frozen), key=f"sparsity_{slot}")


def main() -> None:
    st.header("Results")
    runs = [r for r in jobs.poll(runs_roots()) if r["state"] in jobs.FINAL][::-1]
    if not runs:
        st.info("No finished runs yet: launch one on the Runs page.")
        return
    labels = {r["run_id"]: L.run_label(r) for r in runs}
    ids = list(labels)
    if st.session_state.get("res_run") not in ids:  # e.g. a run picked on the Runs page, now gone
        st.session_state.pop("res_run", None)
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
