"""Merge explorer: alpha -> groups, sharing, predicted FLOPs, MI phase curves (all instant).

Everything alpha changes lives in one fragment (:func:`explorer_section`): a slider move reruns
only it, not the app, the sidebar or the explorer's loading.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from pam_explorer.core.config import RegroupConfig
from pam_explorer.core.errors import PamError
from pam_explorer.core.subsets import all_subsets, subset_key
from pam_explorer.data import get_preset
from pam_explorer.regroup.view import AlphaView, alpha_view, expected_costs
from ui import figures as F
from ui import labels as L
from ui.headroom_view import headroom_section
from ui.state import current_setup, explorer_or_stop, full_done, regroup_config
from ui.sweep_section import sweep_alpha_options, sweep_section  # sweep (issue 16)


@st.cache_resource(show_spinner=False, max_entries=8)
def _sharing_curves(key: tuple, _exp, alphas: tuple, both_picked: str) -> dict:
    """Shared / kept / multiply-picked neurons vs alpha of every layer (once per setup)."""
    return _exp.sharing_curves(alphas, both_picked)


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
        "alpha: MI threshold in bits beyond chance (global)", options=options, key="alpha_w",
        format_func=lambda v: f"{v:.3g}",
        help="A neuron becomes exclusive to a task while the MI of that task's exclusive set with the "
             "other tasks' labels, beyond its chance level, stays below alpha. Range 0 .. "
             f"{top:.3g} bits = the largest score on any trajectory (above it nothing changes). "
             + L.NOT_MONOTONE.format(rule=L.BOTH_PICKED_TEXT.get(cfg0.both_picked, cfg0.both_picked))
             + " The triangles on the 'Shared neurons vs alpha' chart mark where.")
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
                         algorithm=algorithm if k > 2 else "simplified", both_picked=cfg0.both_picked)


def full_gate(exp, setup, cfg: RegroupConfig) -> RegroupConfig:
    """The full Algorithm 3 reruns greedy searches per alpha (minutes on a CPU for K = 5), so it
    runs on request only; until then the page shows the simplified algorithm."""
    done = full_done()
    if (setup.key, cfg) in done:
        return cfg
    simplified = RegroupConfig(cfg.alpha, cfg.overrides, "simplified", cfg.both_picked)
    st.info("The full Algorithm 3 is computed per alpha (several greedy searches per layer; can "
            "take minutes on a CPU). Showing the simplified algorithm until you compute it.")
    if st.button(f"Compute full Algorithm 3 at alpha = {cfg.alpha:g}", type="primary"):
        bar = st.progress(0.0, text="Full Algorithm 3 at this alpha (cached per alpha) ...")
        exp.groups(cfg, progress=lambda frac, msg: bar.progress(min(1.0, frac), text=msg))
        bar.empty()
        done.add((setup.key, cfg))
        return cfg
    return simplified


def range_notice(view: AlphaView) -> None:
    if view.beyond:
        st.info("alpha is at or beyond the trajectory range (max score, bits) of "
                f"{', '.join(f'{layer} (max {top:.3g})' for layer, top in view.beyond.items())}: clamped to "
                "the full trajectory, a larger alpha changes nothing there.")


VIEWS = ("Groups and sharing", "Predicted FLOPs", "Expected FLOPs", "MI phase curves",
         "Shared neurons vs alpha")


def chart(where, option: dict, key: str, height: int = 380) -> None:
    """An ECharts option drawn as SVG under a stable key: a slider move updates it in place."""
    where.echarts_chart(option, key=key, height=height, renderer="svg")


def metrics_row(exp, view: AlphaView) -> None:
    m = st.columns([1, 1, 1, 1.6])  # the FLOPs label is long: it says "before pruning"
    m[0].metric("Task relatedness", f"{exp.relatedness_bits:.3f} bits",  # a label short enough to show
                help="Measured: plug-in MI between the tasks' label vectors on the train split "
                     "(mean over task pairs for K > 2)")
    m[0].caption("I(Y^A;Y^B), measured" if len(exp.tasks) == 2 else "mean I(Y^s;Y^t), measured")
    m[1].metric("alpha", f"{view.cfg.alpha:g} bits")
    m[2].metric("Mean sharing ratio", f"{view.mean_sharing:.1%}",
                help="Mean over layers of shared / kept neurons")
    m[2].caption("not monotone in alpha (see below)")
    everything = subset_key(exp.tasks)
    m[3].metric(f"PAM FLOPs {everything}", f"{view.predicted_flops['PAM'][everything]:,}",
                help="Predicted FLOPs of running every task on the merged network, before pruning. "
                     + L.FLOPS_DEF + ". " + L.BEFORE_PRUNING_WHY)
    m[3].caption("predicted, before pruning")  # below the value: in the label it was cut off


def groups_view(exp, table, groups: dict, both_picked: str) -> None:
    c1, c2 = st.columns([3, 2])
    chart(c1, F.fig_groups(table, F.group_keys(exp.tasks, groups)), "fig_groups")
    c2.caption("Neurons per group and sharing ratio (shared / kept neurons) per layer")
    c2.table(table)
    st.caption(L.NOT_MONOTONE.format(rule=L.BOTH_PICKED_TEXT.get(both_picked, both_picked))
               + " At alpha 0 no neuron can be exclusive, so every neuron is shared. The 'Shared neurons "
                 "vs alpha' view marks where each layer's sharing turns.")


def flops_view(pred: dict) -> None:
    flops = F.flops_table(pred)
    c1, c2 = st.columns([3, 2])
    chart(c1, F.fig_flops(flops), "fig_flops")
    c2.caption("Predicted FLOPs per task subset before pruning. " + L.FLOPS_DEF + ". " + L.BEFORE_PRUNING_WHY)
    shown = pd.DataFrame({c: [f"{v:,}" for v in flops[c]] for c in flops}, index=flops.index)
    c2.table(shown)  # thousands separators, as in the metrics


def expected_flops_view(exp, pred) -> None:
    st.caption("Expected FLOPs under your task-combination probabilities (before pruning)")
    subsets = [subset_key(s) for s in all_subsets(list(exp.tasks))]
    probs = {}
    cols = st.columns(min(len(subsets), 4))
    for i, s in enumerate(subsets):
        probs[s] = cols[i % len(cols)].number_input(
            f"P({s})", min_value=0.0, max_value=1.0, value=1.0 / len(subsets), step=0.05,
            format="%.4f", key=f"prob_{exp.preset.name}_{s}")
    try:
        costs = expected_costs(pred, probs)
    except PamError as exc:  # e.g. probabilities that do not sum to 1
        st.error(f"Expected FLOPs: {exc}")
        return
    cols = st.columns(len(costs["expected"]) + len(costs["gains"]))
    for i, (s, v) in enumerate(costs["expected"].items()):
        cols[i].metric(f"E[FLOPs] {s}", f"{v:,.0f}", help=L.FLOPS_DEF)
    for j, (vs, gain) in enumerate(costs["gains"].items()):
        col = cols[len(costs["expected"]) + j]
        col.metric(f"PAM gain {vs.replace('_', ' ')}", f"{gain:.3f}x", help=L.BEFORE_PRUNING_WHY)
        col.caption("expected, before pruning")  # below the value: in the label it was cut off
    st.caption("Gains before pruning: " + L.BEFORE_PRUNING_WHY + " Runs (Runs page) measure them after "
               "pruning.")


def phase_view(exp, cfg: RegroupConfig, first: str) -> None:
    """MI phase curves of one layer: score (MI beyond chance), raw MI, chance level, alpha, cuts.
    Opens on ``first``: the first layer where alpha cuts inside the trajectory."""
    c = st.columns(3)
    layers = list(exp.trajs.layers)
    layer = c[0].selectbox("Layer", layers, index=layers.index(first), key="phase_layer")
    curves = exp.phase_curve(layer)
    subs = list(curves)
    shade = c[1].selectbox("Shade phases of", subs, format_func=subset_key,
                           key="phase_shade") if len(subs) > 1 else None
    log_y = c[2].checkbox("log MI axis", value=False, key="phase_log")
    chart(st, F.fig_phase(curves, exp.trajs.trajectories[layer], cfg.alpha_for(layer), layer, shade,
                          log_y), "fig_phase", height=460)
    st.caption("Solid: MI of the exclusive set beyond its chance level (what alpha is compared "
               "with); dotted: raw MI; dashed: chance level (label permutations). The axis is clamped "
               "to the data: an alpha above it is named in the corner instead.")


def shared_view(exp, setup, cfg: RegroupConfig) -> None:
    """Shared neurons vs alpha of every layer, with the turning points marked."""
    grid = tuple(F.alpha_grid(exp.max_mi(), n=40))
    curves = _sharing_curves(setup.key, exp, grid, cfg.both_picked)
    chart(st, F.fig_shared_vs_alpha(grid, curves, cfg.alpha, cfg.both_picked), "fig_shared_vs_alpha",
          height=440)
    st.caption(L.NOT_MONOTONE.format(rule=L.BOTH_PICKED_TEXT.get(cfg.both_picked, cfg.both_picked))
               + " Triangles: each layer's least sharing; beyond it the exclusive sets pick more and "
                 "more of the same neurons." + (" Curves show the simplified algorithm (prefix cuts)."
                                                if cfg.algorithm == "full" else ""))


@st.fragment
def explorer_section(exp, setup) -> None:
    """Everything the alpha controls change (a fragment: a slider move reruns only this), with one
    view at a time below the key figures, so a move redraws one chart, not five."""
    cfg = alpha_controls(exp, setup)
    st.caption(f"{L.mi_text(exp.mi)} · {L.regroup_text(cfg)}")
    if cfg.algorithm == "full":
        cfg = full_gate(exp, setup, cfg)
    headroom_section(exp, setup)  # how far pruning can shrink these networks: where PAM pays
    view = alpha_view(exp, cfg)  # the one backend call: everything below draws it
    range_notice(view)
    if view.problem is not None:
        st.warning(f"This grouping cannot be built as a network (merging would fail): {view.problem}")
    table = F.sharing_table(exp.tasks, view.groups, {layer: cfg.alpha_for(layer) for layer in view.groups})
    metrics_row(exp, view)
    shown = st.radio("View", VIEWS, horizontal=True, key="explorer_view", label_visibility="collapsed")
    if shown == VIEWS[0]:
        groups_view(exp, table, view.groups, cfg.both_picked)
    elif shown == VIEWS[1]:
        flops_view(view.predicted_flops)
    elif shown == VIEWS[2]:
        expected_flops_view(exp, view.predicted_flops)
    elif shown == VIEWS[3]:
        phase_view(exp, cfg, view.phase_layer)
    else:
        shared_view(exp, setup, cfg)
    sweep_section(exp, setup, cfg)  # measured after pruning, at the swept alpha nearest the slider


def main() -> None:
    setup = current_setup()
    st.header("Merge explorer")
    exp = explorer_or_stop()
    explorer_section(exp, setup)


main()
