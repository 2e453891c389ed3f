"""A sweep's results (Results page) and the tolerance slider of sweeps (also the explorer's sweep
section): figures read off the sweep's curves at the slider's tolerance, with the frontier and the
recommendation recomputed from those read-offs (:func:`pam_explorer.runs.tolerance.sweep_at`).
Figures and tables come from ui/sweep_view.py; this module only draws.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from pam_explorer.core.errors import PamError
from pam_explorer.runs import sweep_files
from pam_explorer.runs import tolerance as TOL
from ui import advice
from ui import labels as L
from ui import sweep_view as V


@st.cache_resource(show_spinner=False, max_entries=16)
def load(path: str, mtime_ns: int) -> dict:
    return sweep_files.load_sweep(path)


@st.cache_resource(show_spinner=False, max_entries=64)
def _at(path: str, mtime_ns: int, delta: float) -> dict:
    return TOL.sweep_at(load(path, mtime_ns), delta)


def sweep_tolerance(sweep: dict, key: str) -> float | None:
    """The tolerance slider of a sweep with curves (its value, points); None, with a caption, for
    a sweep of the floor-greedy loop (its figures are at its own delta)."""
    own = TOL.own_delta(sweep)
    if not TOL.sweep_has_curves(sweep):
        at = f" (delta = {own:g} points)" if own is not None else ""
        st.caption(f"Schedule `floor-greedy` (the accept/reject loop): the figures are at the sweep's own "
                   f"tolerance{at}; it keeps no curves to read off at another.")
        return None
    options = TOL.tolerance_options(sweep)
    return st.select_slider(
        "Accuracy tolerance delta (points below the original networks' validation accuracy)", options,
        value=own if own in options else 0.5, key=key, format_func=lambda d: _tolerance_label(d, own),
        help="Every baseline and alpha is read off its accuracy-FLOPs curves at this tolerance; the "
             "frontier and the recommended alpha follow. Nothing is recomputed.")


def _tolerance_label(d: float, own: float | None) -> str:
    return f"{d:g}" + (" (the run's)" if TOL.same(d, own) else "")


def sweep_at(path: str, mtime_ns: int, delta: float | None) -> dict:
    """The sweep at ``delta`` (cached), or as written when ``delta`` is None."""
    return load(path, mtime_ns) if delta is None else _at(path, mtime_ns, delta)


def show_sweep(folder: str | Path, slot: str) -> None:
    """A sweep run on the Results page: what ran, the tolerance, the frontier across alphas, a
    row per baseline and alpha, the recommendation, and one alpha's figures."""
    path = Path(folder) / "sweep.json"
    try:
        mtime = path.stat().st_mtime_ns
        sweep = load(str(path), mtime)
    except (OSError, PamError) as exc:
        st.warning(f"Cannot show this sweep: {L.plain(exc)}")
        return
    state = "complete" if sweep.get("complete") else "in progress or partial"
    alphas = ", ".join(f"{a:.3g}" for a in sweep.get("alphas", []))
    st.markdown(f"**Alpha sweep** ({state}){advice.quick_label(sweep.get('config'))}: preset "
                f"{L.code(sweep.get('preset'))}, pruning {L.code(sweep.get('prune'))}, seeds "
                f"{L.plain(sweep.get('seeds'))}, alphas {alphas}")
    delta = sweep_tolerance(sweep, f"sweep_tol_{slot}_{path.parent.name}")
    at = sweep_at(str(path), mtime, delta)
    mix = (at.get("recommended") or {}).get("mix")
    rec = at.get("recommended") or {}
    if mix:
        st.plotly_chart(V.fig_frontier(at, 0.0, mix, rec.get("alpha")), key=f"sweep_frontier_{slot}")
    st.table(V.alphas_table(at))
    st.caption(f"Mean ± half-width of the 95 % CI over seeds; accuracy: test, % (worst seed); FLOPs read "
               f"off at tolerance {at.get('delta', 0):g} points. {L.FLOPS_DEF}.")
    _recommendation(at, rec)
    _one_alpha(at, slot)


def _recommendation(sweep: dict, rec: dict) -> None:
    mix = ", ".join(f"{k}={v:.3g}" for k, v in (rec.get("mix") or {}).items())
    if rec.get("alpha") is None:
        st.info(f"No recommended alpha for the mix {L.plain(mix)}: {L.plain(rec.get('reason', '?'))}.")
        guide = advice.sweep_next_steps(sweep)
        if guide:
            st.info(L.plain(guide), icon=":material/lightbulb:")
        return
    gains = ", ".join(f"{k.replace('_', ' ')} {v:.3f}x" for k, v in rec["gains"].items())
    st.success(f"Recommended alpha for the mix {L.plain(mix)}: **{rec['alpha']:.4g}** bits, expected "
               f"{rec['expected_flops'] / 1e6:.3f} M FLOPs per request (gain {L.plain(gains)}).")


def _one_alpha(sweep: dict, slot: str) -> None:
    points = [p for p in sweep["points"] if "flops" in p]
    if not points:
        st.info(f"No swept alpha has a checkpoint above the floor at this tolerance ({V.NONE_ABOVE} for "
                "PAM in every seed): try a looser tolerance.")
        return
    alphas = [p["alpha"] for p in points]
    alpha = st.selectbox("Figures of alpha", alphas, format_func=lambda a: f"{a:.4g} bits",
                         key=f"sweep_alpha_{slot}")
    point = points[alphas.index(alpha)]
    st.plotly_chart(V.fig_measured_flops(sweep, point), key=f"sweep_flops_{slot}")
    st.caption("PAM's FLOPs gains at this alpha, paired by seed")
    st.table(V.gains_table(point))


__all__ = ["load", "sweep_tolerance", "sweep_at", "show_sweep"]
