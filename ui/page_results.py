"""Results of finished runs: Table 1 (mean ± 95 % CI over seeds), gains with their verdict, the
accuracy-FLOPs curves, sharing after pruning, pruning logs, sparsity; the configuration that
produced them; quick runs marked. A run of the published schedule has a tolerance slider: every
figure is read off the stored curves at that tolerance (cached, never recomputed). A sweep shows
its frontier and per-alpha figures.

A failed run shows its state and log tail, plus whatever it produced. Two runs can be compared
side by side. The page opens on the newest run with results that was not cancelled.
"""
from __future__ import annotations

import streamlit as st

from pam_explorer.core.errors import PamError
from pam_explorer.runs import curve_view, jobs, results_index, run_folders
from pam_explorer.runs import tolerance as TOL
from pam_explorer.runs.report_schema import read_report
from ui import advice
from ui import labels as L
from ui import results_curves as C
from ui import results_latency as T
from ui import results_logs as G
from ui import results_regime as M
from ui import results_sweep as S
from ui import results_view as R
from ui.state import runs_roots


def _mtime(rid: str, root: str) -> int:
    try:
        return (run_folders.run_dir(rid, root) / "report.json").stat().st_mtime_ns
    except OSError:
        return 0


@st.cache_resource(show_spinner=False, max_entries=8)
def _report(rid: str, root: str, mtime_ns: int) -> dict | None:
    return read_report(rid, root)  # checked once per file version (PamError is not cached)


@st.cache_resource(show_spinner=False, max_entries=64)
def _report_at(rid: str, root: str, mtime_ns: int, delta: float) -> dict:
    return TOL.report_at(_report(rid, root, mtime_ns), delta)


@st.cache_resource(show_spinner=False, max_entries=64)
def _curves(rid: str, root: str, mtime_ns: int, subset: str, delta: float) -> dict:
    return curve_view.curves_view(_report(rid, root, mtime_ns), subset, delta)


def show_run(r: dict, slot: str) -> None:
    rid, state, root = r["run_id"], r["state"], str(r["root"])
    st.markdown(f"**{rid}** · state {L.code(state)}"  # run ids are [A-Za-z0-9_.-] (run_folders)
                + (" · **quick run**" if L.is_quick(r) else ""))
    if state in ("failed", "cancelled"):  # the message comes from a file: shown as text
        (st.error if state == "failed" else st.warning)(
            f"Run {state}" + (f" (exit code {L.plain(r.get('exit_code'))})" if r.get("exit_code") is not None
                              else "") + (f": {L.plain(r['message'])}" if r.get("message") else ""))
        st.code(jobs.log_tail(rid, 30, root) or "(empty log)", language=None)
    mtime = _mtime(rid, root)
    try:
        report = _report(rid, root, mtime)
    except PamError as exc:  # malformed: one line, no traceback
        st.warning(f"Cannot show this run's results: {L.plain(exc)}")
        return
    if report is None:
        if results_index.result_file(r) == "sweep.json":
            S.show_sweep(r["dir"], slot)
        elif state == "done":
            st.info("This run wrote no report.json (a merge or training run: its model is on the Export "
                    "page)." if (r.get("job") or {}).get("command") in ("merge", "train")
                    else "The run ended without writing report.json.")
        return
    delta = _header(report, f"{slot}_{rid}")
    shown = report if delta is None else _report_at(rid, root, mtime, delta)
    _tables(report, shown, slot)
    if report.get("per_seed") and report.get("tasks"):
        curves_section(report, shown, (rid, root, mtime), slot)
    _details(shown, slot)


def _header(report: dict, key: str) -> float | None:
    """Quick-run notice, configuration, schedule and the tolerance slider (its value; None for a
    report without curves)."""
    if L.is_quick(report):
        st.warning(f"**Quick run** ({L.QUICK}): tiny data and few steps, so accuracies and FLOPs are "
                   "far from a real run's.")
    st.caption("  \n".join(R.config_lines(report)))
    own = TOL.own_delta(report)
    published, text = C.schedule_text(report, own)
    if not published:
        st.info(text, icon=":material/history:")
        return None
    st.caption(text)
    options = TOL.tolerance_options(report)
    return st.select_slider(
        "Accuracy tolerance delta (points below the original networks' validation accuracy)", options,
        value=own if own in options else 0.5, key=f"tol_{key}",
        format_func=lambda d: f"{d:g}" + (" (the run's)" if TOL.same(d, own) else ""),
        help="Moves the read-off points, the per-subset costs and the gains below.")


def _tables(report: dict, shown: dict, slot: str) -> None:
    """Missing read-offs, floor misses, the guide, Table 1, latency (at the run's tolerance
    only) and gains, all at the shown tolerance."""
    for line in R.missing_lines(shown) + R.floor_misses(shown):
        st.warning(L.plain(line))
    guide = advice.next_steps(shown)
    if guide:
        st.info(L.plain(guide), icon=":material/lightbulb:")
    t1 = R.table1_display(shown)
    curves = TOL.has_curves(report)
    if t1 is not None:  # st.table wraps its cells: no column is ever hidden off the right edge
        st.table(t1)
        st.caption(R.table1_caption(shown, shown.get("delta") if curves else None))
        own = TOL.own_delta(report)
        if curves and not TOL.same(shown.get("delta"), own):
            st.caption(f"Latency was measured on the networks read off at the run's own tolerance ({own:g} "
                       "points): move the slider there to see it.")
        else:
            latency_section(shown)
    g = R.gains_display(shown)
    if g is not None:
        st.table(g)
        st.caption(R.gains_caption(shown))
        st.plotly_chart(R.fig_gains(shown), key=f"gains_{slot}")


def curves_section(report: dict, shown: dict, source: tuple, slot: str) -> None:
    """Accuracy vs FLOPs per task subset: bands over seeds, read-offs at the slider's tolerance,
    and every seed's read-off with standard errors."""
    st.subheader("Accuracy vs FLOPs")
    subsets = C.subsets(report["tasks"])
    subset = st.radio("Task subset (x: its FLOPs)", subsets, index=len(subsets) - 1, horizontal=True,
                      key=f"curve_subset_{slot}")
    delta = float(shown.get("delta") if TOL.has_curves(report) else TOL.own_delta(report) or 0.5)
    views = _curves(*source, subset, delta)
    fig = C.fig_curves(report, views, subset, delta)
    if fig is None:
        st.info("This report keeps no per-seed figures to draw.")
        return
    st.plotly_chart(fig, key=f"curves_{slot}")
    cut = C.y_range(views, delta)[2]
    st.caption(C.caption(report, subset, delta, cut))
    table = C.readoff_table(report, delta)
    if table is not None:
        st.table(table)
        st.caption("Per seed: the read-off checkpoint (#index, its share of the starting FLOPs; B1: one "
                   "per task network), its FLOPs and its accuracies, % ± standard error.")


def _details(shown: dict, slot: str) -> None:
    fig = R.fig_flops_bars(shown)
    if fig is not None:
        st.plotly_chart(fig, key=f"flops_{slot}")
    fig = R.fig_sharing_after(shown)
    if fig is not None:
        st.plotly_chart(fig, key=f"share_{slot}")
    log_section(shown, slot)
    sparse_section(shown, slot)


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


VIEWS = ("Runs", "Regime map (study)")


def main() -> None:
    st.header("Results")
    shown = st.radio("Results of", VIEWS, horizontal=True, key="res_view", label_visibility="collapsed")
    if shown == VIEWS[1]:
        M.regime_section(show_run)
        return
    runs_section()


def runs_section() -> None:
    """One finished run, or two side by side."""
    runs = [r for r in jobs.poll(runs_roots()) if r["state"] in jobs.FINAL][::-1]
    if not runs:
        st.info("No finished runs yet: launch one on the Runs page.")
        return
    labels = {r["run_id"]: L.run_label(r) + ("" if results_index.has_results(r) else " · no results")
              for r in runs}
    ids = list(labels)
    if st.session_state.get("res_run") not in ids:  # e.g. a run picked on the Runs page, now gone
        st.session_state.pop("res_run", None)
    picks = results_index.default_picks(runs, 2)  # the newest runs with results, not cancelled
    compare = st.toggle("Compare two runs side by side", value=False)
    if not compare:
        # a run picked on the Runs page is in the session state (an index too: Streamlit logs a warning)
        default = {} if "res_run" in st.session_state else {"index": picks[0]}
        rid = st.selectbox("Run", ids, format_func=labels.get, key="res_run", **default)
        show_run(next(r for r in runs if r["run_id"] == rid), "single")
        return
    cols = st.columns(2)
    for i, col in enumerate(cols):
        with col:
            rid = st.selectbox(f"Run {i + 1}", ids, index=picks[min(i, len(picks) - 1)],
                               format_func=labels.get, key=f"res_run_{i}")
            show_run(next(r for r in runs if r["run_id"] == rid), f"col{i}")


main()
