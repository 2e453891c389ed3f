"""The explorer's headroom figure beside the alpha slider: how far the loaded networks can be
pruned alone (B1's compression, :mod:`pam_explorer.runs.headroom`), and what that means for
merging.

Measured from B1 records when there are some; else the cost of a quick estimate and a button that
runs it (never on page load: it takes tens of seconds). Both live in the session state, keyed by
the setup, so a slider move recomputes nothing.
"""
from __future__ import annotations

from collections.abc import Mapping

import streamlit as st

from pam_explorer.core.errors import PamError
from pam_explorer.cost.estimate import duration_text
from pam_explorer.prune import PruneConfig
from pam_explorer.runs import headroom as hr
from pam_explorer.runs import jobs
from ui import labels as L
from ui.state import Setup, preset_arch, runs_root

DELTA = PruneConfig().delta  # the experiments' default tolerance, points


def compression_text(fig: Mapping) -> str:
    """'B1 compresses task A 7.12×, B 6.95× at 0.5 points' of a figure or an estimate."""
    parts = [f"{t} {x:.2f}×" for t, x in fig["compression"].items()]
    return f"B1 compresses task {', '.join(parts)} at {fig['delta']:g} points"


def measured_text(fig: Mapping) -> str:
    n = fig["records"]
    return f"{compression_text(fig)} (measured from {n} record{'s' if n != 1 else ''})"


def estimate_text(est: Mapping) -> str:
    return (f"Quick estimate: {compression_text(est)} (a short P2 schedule on "
            f"{est['data']['n_train']:,} pictures, {est['seconds']:g} s; {hr.ESTIMATE_BIAS}; "
            "measuring it gives the figure itself)")


def _sources_help(fig: Mapping) -> str:
    ranks = ", ".join(fig.get("ranks") or [])
    paces = ", ".join(fig.get("paces") or [])
    more = len(fig["sources"]) - 5
    return ("Read off B1 stage records of these networks (P2, published schedule"
            + (f", neuron ranking {ranks}" if ranks else "") + (f", pace {paces}" if paces else "") + "): "
            + "; ".join(L.plain(s) for s in fig["sources"][:5]) + (f"; and {more} more" if more > 0 else ""))


def _key(setup: Setup) -> tuple:
    return (setup.key, DELTA)


def _measured_since(key: tuple) -> bool:
    """True once this session's measuring run of the setup has ended (its record is then read)."""
    runs = st.session_state.setdefault("headroom_runs", {})
    if key not in runs:
        return False
    try:
        state = jobs.read_status(runs[key], runs_root()).get("state")
    except PamError:
        state = "failed"
    if state in ("done", "failed", "cancelled"):
        del runs[key]
        return True
    return False


def _figure(exp, setup: Setup) -> dict | None:
    """The headroom figure of this setup, computed once per session and again once a measuring
    run of it has ended (None: it cannot be had)."""
    store = st.session_state.setdefault("headroom_figures", {})
    key = _key(setup)
    if _measured_since(key):
        store.pop(key, None)
    if key not in store:
        arch = setup.arch or preset_arch(setup.preset) or "lenet5"
        try:
            store[key] = hr.headroom_figure(setup.preset, exp.nets, arch, DELTA)
        except PamError as exc:  # e.g. a project preset the backend cannot read off
            store[key] = {"error": str(exc)}
    return store[key]


def headroom_section(exp, setup: Setup) -> None:
    """B1's compression of these networks (measured, estimated on request, or its cost) and the
    sentence on what it means for merging."""
    fig = _figure(exp, setup)
    with st.container(border=True):
        if "error" in fig:
            st.caption(f"Headroom (B1's compression) unavailable: {L.plain(fig['error'])}")
            return
        if fig["measured"]:
            st.markdown(f"**Headroom:** {measured_text(fig)}", help=_sources_help(fig))
        else:
            _estimate(exp, setup, fig)
        st.caption(fig["meaning"])


def _estimate(exp, setup: Setup, fig: Mapping) -> None:
    """The estimate of this session if one was run, else its cost and the button that runs it;
    then the button that measures it instead."""
    done = st.session_state.setdefault("headroom_estimates", {})
    key = _key(setup)
    if key in done:
        st.markdown(f"**Headroom:** {estimate_text(done[key])}")
    else:
        _estimate_button(exp, setup, fig, done)
    _measure_button(setup, fig)


def _estimate_button(exp, setup: Setup, fig: Mapping, done: dict) -> None:
    slot = st.empty()  # the cost and the button, replaced by the estimate once it ran
    with slot.container():
        st.markdown(f"**Headroom:** {fig['estimate_text']}.")
        clicked = st.button(f"Estimate headroom ({duration_text(fig['estimate_seconds'])})",
                            key="headroom_estimate", help="Prunes each network alone on a short P2 schedule "
                            f"(a fifth of the published budget, {hr.QUICK_DATA.n_train:,} pictures).")
    if not clicked:
        return
    with st.spinner("Pruning each network alone on a short P2 schedule ..."):
        try:
            done[_key(setup)] = hr.estimate_headroom(setup.preset, exp.nets, DELTA)
        except PamError as exc:
            st.error(f"The headroom estimate failed: {exc}")
            return
    slot.markdown(f"**Headroom:** {estimate_text(done[_key(setup)])}")


def _measure_button(setup: Setup, fig: Mapping) -> None:
    """Measure instead of estimating: B1 alone on the published schedule as a background run."""
    key = _key(setup)
    if key in st.session_state.setdefault("headroom_runs", {}):
        st.caption(f"Measuring run {st.session_state['headroom_runs'][key]} is on the Runs page; the "
                   "measured figure replaces this once it ends.")
        return
    arch = setup.arch or preset_arch(setup.preset) or "lenet5"
    if not st.button(f"Measure it (B1 alone, seed 0, up to {duration_text(fig['measure_seconds'])}; "
                     "a background run)", key="headroom_measure",
                     help="Prunes each network alone on the published schedule, as an experiment's B1 "
                          "does: the measured figure, and a stage later experiments reuse."):
        return
    try:
        rid = jobs.submit(hr.measure_job(setup.preset, arch), runs_root(), name=f"headroom-{setup.preset}")
    except PamError as exc:  # the queue is full
        st.error(str(exc))
        return
    jobs.start_next(runs_root())
    st.session_state["headroom_runs"][key] = rid
    st.success(f"Run {rid} measures the headroom; progress on the Runs page.")


__all__ = ["headroom_section", "compression_text", "measured_text", "estimate_text"]
