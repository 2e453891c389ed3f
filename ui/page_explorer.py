"""Merge explorer: alpha -> groups, sharing, predicted FLOPs, MI phase curves (all instant)."""
from __future__ import annotations

import streamlit as st

from pam_explorer.core.config import RegroupConfig
from pam_explorer.core.errors import PamError
from pam_explorer.core.subsets import all_subsets, subset_key
from pam_explorer.data import get_preset
from ui import figures as F
from ui.state import current_setup, explorer_or_stop, full_done, regroup_config
from ui.sweep_section import sweep_alpha_options, sweep_section  # sweep (issue 16)


@st.cache_resource(show_spinner=False, max_entries=8)
def _shared_curves(key: tuple, _exp, alphas: tuple) -> dict:
    """Shared-neuron count vs alpha of every layer (a few cuts per alpha; once per setup)."""
    return {layer: _exp.shared_vs_alpha(layer, alphas) for layer in _exp.trajs.layers}


def _keep(widget_key: str, value) -> None:
    """Seed a widget's state from the page-independent copy (widget state dies on page change)."""
    if widget_key not in st.session_state:
        st.session_state[widget_key] = value


def alpha_controls(exp, setup) -> RegroupConfig:
    preset = get_preset(setup.preset)
    top = exp.max_mi()
    options = F.alpha_grid(top, extra=[preset.default_alpha])
    options = sweep_alpha_options(options, setup)  # sweep (issue 16): measured alphas on the slider
    cfg0 = regroup_config()
    if st.session_state.get("alpha_w") not in options:
        st.session_state["alpha_w"] = F.nearest(options, cfg0.alpha)
    c1, c2 = st.columns([4, 1])
    alpha = c1.select_slider(
        "alpha: MI threshold in bits (global)", options=options, key="alpha_w",
        format_func=lambda v: f"{v:.3g}",
        help="Neurons whose MI with the other tasks' labels stays below alpha become exclusive to "
             f"a task. Range 0 .. {top:.3g} bits = the largest MI on any trajectory "
             "(above it nothing changes).")
    st.session_state["alpha"] = float(alpha)
    k = len(exp.tasks)
    _keep("algorithm_w", st.session_state.get("algorithm", "simplified"))
    algorithm = c2.radio("Algorithm", ["simplified", "full"], key="algorithm_w", disabled=k <= 2,
                         help="The full Algorithm 3 differs from the simplified one only for K > 2 "
                              "tasks (it is computed per alpha, not by a cut).")
    st.session_state["algorithm"] = algorithm
    overrides = dict(st.session_state.get("overrides", {}))
    with st.expander("Per-layer alpha overrides"):
        cols = st.columns(min(4, len(exp.trajs.layers)))
        for i, layer in enumerate(exp.trajs.layers):
            _keep(f"ovr_{layer}", overrides.get(layer))
            v = cols[i % len(cols)].number_input(
                f"{layer} (empty = global)", min_value=0.0, value=None, key=f"ovr_{layer}",
                format="%.4g", step=0.01, placeholder="global")
            overrides[layer] = v
    overrides = {layer: v for layer, v in overrides.items() if v is not None}
    st.session_state["overrides"] = overrides
    return RegroupConfig(alpha=float(alpha), overrides=tuple(sorted(overrides.items())),
                         algorithm=algorithm if k > 2 else "simplified")


def full_gate(exp, setup, cfg: RegroupConfig) -> RegroupConfig:
    """The full Algorithm 3 reruns greedy searches per alpha (minutes on a CPU for K = 5), so it
    runs on request only; until then the page shows the simplified algorithm."""
    done = full_done()
    if (setup.key, cfg) in done:
        return cfg
    simplified = RegroupConfig(cfg.alpha, cfg.overrides, "simplified")
    st.info("The full Algorithm 3 is computed per alpha (several greedy searches per layer; can "
            "take minutes on a CPU). Showing the simplified algorithm until you compute it.")
    if st.button(f"Compute full Algorithm 3 at alpha = {cfg.alpha:g}", type="primary"):
        bar = st.progress(0.0, text="Full Algorithm 3 at this alpha (cached per alpha) ...")
        exp.groups(cfg, progress=lambda frac, msg: bar.progress(min(1.0, frac), text=msg))
        bar.empty()
        done.add((setup.key, cfg))
        return cfg
    return simplified


def range_notice(exp, cfg: RegroupConfig) -> None:
    beyond = []
    for layer in exp.trajs.layers:
        top = exp.max_mi(layer)
        if cfg.alpha_for(layer) >= top:
            beyond.append(f"{layer} (max {top:.3g})")
    if beyond:
        st.info("alpha is at or beyond the trajectory range (max MI, bits) of "
                f"{', '.join(beyond)}: clamped to the full trajectory, a larger alpha changes "
                "nothing there.")


def expected_flops_section(exp, pred) -> None:
    st.subheader("Expected FLOPs under your task-combination probabilities")
    subsets = [subset_key(s) for s in all_subsets(list(exp.tasks))]
    probs = {}
    cols = st.columns(min(len(subsets), 4))
    for i, s in enumerate(subsets):
        probs[s] = cols[i % len(cols)].number_input(
            f"P({s})", min_value=0.0, max_value=1.0, value=1.0 / len(subsets), step=0.05,
            format="%.4f", key=f"prob_{exp.preset.name}_{s}")
    try:
        exp_f = F.expected_table(pred, probs)
    except PamError as exc:  # e.g. probabilities that do not sum to 1
        st.error(f"Expected FLOPs: {exc}")
        return
    cols = st.columns(len(exp_f) + 2)
    for i, (s, v) in enumerate(exp_f.items()):
        cols[i].metric(f"E[FLOPs] {s}", f"{v:,.0f}")
    for j, base in enumerate(("B1", "B2")):
        if base in exp_f and exp_f.get("PAM"):
            cols[len(exp_f) + j].metric(f"PAM gain vs {base}", f"{exp_f[base] / exp_f['PAM']:.3f}x")


def main() -> None:
    setup = current_setup()
    st.header("Merge explorer")
    exp = explorer_or_stop()
    cfg = alpha_controls(exp, setup)
    range_notice(exp, cfg)
    if cfg.algorithm == "full":
        cfg = full_gate(exp, setup, cfg)
    groups = exp.groups(cfg)
    alphas = {layer: cfg.alpha_for(layer) for layer in groups}
    table = F.sharing_table(exp.tasks, groups, alphas)
    problem = exp.check(cfg)
    if problem is not None:
        st.warning(f"This grouping cannot be built as a network (merging would fail): {problem}")

    m = st.columns(4)
    m[0].metric("Task relatedness I(Y^A;Y^B)", f"{exp.relatedness_bits:.3f} bits",
                help="Plug-in MI between the tasks' label vectors (mean over pairs for K > 2)")
    m[1].metric("alpha", f"{cfg.alpha:.3g} bits")
    m[2].metric("Mean sharing ratio", f"{table['sharing ratio'].mean():.1%}")
    m[3].metric("Tasks", " / ".join(exp.tasks))

    keys = F.group_keys(exp.tasks, groups)
    c1, c2 = st.columns(2)
    c1.plotly_chart(F.fig_sharing(table))
    c2.plotly_chart(F.fig_groups(table, keys))
    st.caption("Neurons per group and sharing ratio per layer")
    st.dataframe(table)

    pred = exp.predicted_flops(cfg)
    flops = F.flops_table(pred)
    c1, c2 = st.columns([3, 2])
    c1.plotly_chart(F.fig_flops(flops))
    c2.caption("Predicted FLOPs per task subset before pruning")
    c2.dataframe(flops)
    expected_flops_section(exp, pred)
    sweep_section(exp, setup, cfg)  # sweep (issue 16)
    curves_section(exp, setup, cfg)


def curves_section(exp, setup, cfg: RegroupConfig) -> None:
    """MI phase curves of one layer, and shared neurons vs alpha of every layer."""
    st.subheader("MI phase curves and shared neurons vs alpha")
    c1, c2 = st.columns(2)
    with c1:
        layer = st.selectbox("Layer", list(exp.trajs.layers), key="phase_layer")
        curves = exp.phase_curve(layer)
        subs = list(curves)
        sc1, sc2 = st.columns(2)
        shade = sc1.selectbox("Shade phases of", subs, format_func=subset_key) if len(subs) > 1 else None
        log_y = sc2.checkbox("log MI axis", value=False)
        st.plotly_chart(F.fig_phase(curves, exp.trajs.trajectories[layer], cfg.alpha_for(layer),
                                    layer, shade, log_y))
    with c2:
        grid = tuple(F.alpha_grid(exp.max_mi(), n=40))
        counts = _shared_curves(setup.key, exp, grid)
        st.plotly_chart(F.fig_shared_vs_alpha(grid, counts, exp.trajs.widths, cfg.alpha))
        if cfg.algorithm == "full":
            st.caption("Curves show the simplified algorithm (prefix cuts).")


main()
