"""The alpha sweep on the dashboard (issue 16): the drawing functions the explorer and runs pages
call (one marked line each); figures and tables come from ui/sweep_view.py.

A sweep is any run folder under the runs roots holding a sweep.json for the current preset (the
dashboard's sweeps land there; ``sweep --out runs/NAME`` too). Loading is cached by (path, mtime),
so showing a sweep costs a directory listing per rerun; a running sweep rewrites its sweep.json
after every stage and the page picks that up.
"""
from __future__ import annotations

import streamlit as st

from pam_explorer.core.errors import PamError
from pam_explorer.data import get_preset, list_presets
from pam_explorer.prune import list_pruners
from pam_explorer.runs import jobs, sweep_files
from pam_explorer.runs.estimate import estimate
from ui import advice
from ui import labels as L
from ui import results_sweep as RS
from ui import sweep_view as V
from ui.state import runs_root, runs_roots, slurm_unavailable

SEEDS = "0,1,2"


def _load(path: str, mtime_ns: int) -> dict:
    return RS.load(path, mtime_ns)  # cached by (path, mtime)


def _sweeps(setup) -> list[tuple[sweep_files.SweepFile, dict]]:
    """(file, sweep) of every readable sweep of the setup's preset on its committed networks,
    newest first (none for uploaded networks: a sweep measures the committed ones)."""
    if setup.checkpoints != "pretrained":
        return []
    preset, out = setup.preset, []
    for f in sweep_files.find_sweeps(runs_roots()):
        try:
            sweep = _load(f.path, f.mtime_ns)
        except PamError:
            continue
        if sweep_files.matches(sweep, preset):
            out.append((f, sweep))
    return out


def _current(setup, sweeps: list | None = None) -> tuple[sweep_files.SweepFile, dict] | None:
    sweeps = _sweeps(setup) if sweeps is None else sweeps
    chosen = st.session_state.get("sweep_folder")
    return next((s for s in sweeps if s[0].folder == chosen), sweeps[0] if sweeps else None)


def sweep_alpha_options(options: list[float], setup) -> list[float]:
    """The alpha slider's options plus the swept alphas of the current sweep, so that the slider
    can stand exactly on a swept alpha (every one: one without figures at the sweep's own
    tolerance may have them at the sweep section's)."""
    current = _current(setup)
    if current is None:
        return options
    return sorted(set(options) | {float(p["alpha"]) for p in current[1]["points"]})


def _use_alpha(alpha: float) -> None:
    st.session_state["alpha_w"] = alpha
    st.session_state["alpha"] = alpha


def sweep_section(exp, setup, cfg) -> None:
    """Measured figures at the swept alpha nearest the slider, the frontier across alphas and the
    recommended alpha for the page's task-usage probabilities; or how to get a sweep."""
    st.subheader("Measured after pruning: the alpha sweep")
    sweeps = _sweeps(setup)
    if setup.checkpoints != "pretrained":
        st.info("Alpha sweeps measure the committed networks of a preset; these are uploaded ones. "
                "Choose the preset's pre-trained networks on the Setup page to see a sweep.")
        return
    if not sweeps:
        _no_sweep(setup.preset)
        return
    if len(sweeps) > 1:
        folders = [f.folder for f, _ in sweeps]
        st.selectbox("Sweep", folders, key="sweep_folder", format_func=lambda d: d.rsplit("/", 1)[-1])
    f, sweep = _current(setup, sweeps)
    delta = RS.sweep_tolerance(sweep, "sweep_tolerance")  # None: a floor-greedy sweep, at its own delta
    sweep = RS.sweep_at(f.path, f.mtime_ns, delta)  # read off at the slider's tolerance (cached)
    point = V.nearest_point(sweep, cfg.alpha)
    at = f" at tolerance {sweep['delta']:g} points" if isinstance(sweep.get("delta"), (int, float)) else ""
    if point is None:
        st.info(f"Sweep {L.code(f.folder)}: no swept alpha has a checkpoint above the floor{at} for PAM "
                "in any seed; move the tolerance up.")
        return
    state = "complete" if sweep.get("complete") else "in progress or partial"
    alphas = ", ".join(f"{a:.3g}" for a in sweep["alphas"])
    st.caption(f"Sweep {L.code(f.folder)} ({state}){advice.quick_label(sweep.get('config'))}: pruning "
               f"{L.code(sweep['prune'])}, seeds {L.plain(sweep['seeds'])}, alphas {alphas}; figures read "
               f"off{at}. Shown: alpha {point['alpha']:.4g}, the swept alpha nearest the slider "
               f"({cfg.alpha:.4g}); error bars: 95 % CI over seeds.")
    st.plotly_chart(V.fig_measured_flops(sweep, point), key="sweep_fig_flops")
    st.dataframe(V.measured_table(sweep, point))  # full width: in a column the last ones were cut off
    st.caption("PAM's FLOPs gains at this alpha, paired by seed")
    st.dataframe(V.gains_table(point))
    _recommendation(sweep, V.probabilities(exp.tasks, st.session_state, exp.preset.name), cfg.alpha)


def _recommendation(sweep: dict, probs: dict, alpha: float) -> None:
    """The frontier across alphas and the recommended alpha for the page's probabilities."""
    try:
        rec = V.live_recommendation(sweep, probs)
    except PamError as exc:  # probabilities that are not a distribution
        st.warning(f"Recommended alpha: {exc}")
        rec = {"alpha": None, "reason": str(exc)}
    st.plotly_chart(V.fig_frontier(sweep, alpha, probs, rec["alpha"]), key="sweep_fig_frontier")
    if rec["alpha"] is None:
        st.info(f"No recommended alpha for these task-usage probabilities: {L.plain(rec['reason'])}.")
        guide = advice.sweep_next_steps(sweep)
        if guide:
            st.info(L.plain(guide), icon=":material/lightbulb:")
        return
    gains = ", ".join(f"{k.replace('_', ' ')} {v:.3f}x" for k, v in rec["gains"].items())
    st.button(f"Use recommended alpha ({rec['alpha']:.4g} bits)", key="sweep_use_recommended",
              on_click=_use_alpha, args=(float(rec["alpha"]),))
    st.caption(f"Recommended for your task-usage probabilities: the lowest expected FLOPs "
               f"({rec['expected_flops'] / 1e6:.3f} M per request; gain {gains}) among the alphas whose "
               "every task meets the accuracy floor in every seed.")


def _no_sweep(preset: str) -> None:
    st.info(f"No alpha sweep of `{preset}` yet: the figures above are predictions before pruning. A "
            "sweep finetunes and prunes PAM at every alpha where the grouping changes, under several "
            "seeds, with B1 and B2 beside it, and shows the measured trade-off here.")
    job = V.sweep_job(preset, "taylor", "auto", SEEDS, "local", None, False)
    if st.button(f"Launch a sweep of {preset} (auto alphas, seeds {SEEDS}, local)", key="sweep_launch_here"):
        _submit(job, f"sweep-{get_preset(preset).title}")
    st.caption(f"Duration: {L.plain(_duration(job))}")


def _duration(job: dict) -> str:
    """The expected duration of a job from this machine's measured stage times (re-read on every
    rerun, so it follows the stages that finish)."""
    return estimate(job, runs_roots(), jobs.list_runs(runs_roots())).text


def _submit(job: dict, name: str) -> None:
    try:
        rid = jobs.submit(job, runs_root(), name=name)
    except PamError as exc:  # the queue is full
        st.error(str(exc))
        return
    started = jobs.start_next(runs_root())
    st.success(f"Sweep {rid} " + ("started" if started == rid else "queued") + "; progress on the Runs page.")


def _label(preset: str) -> str:
    return f"project {get_preset(preset).title}" if preset.endswith(".toml") else preset


def runs_sweep_section(default_preset: str) -> None:
    """The runs page: launch a sweep, and the progress of sweeps per point."""
    st.subheader("Alpha sweeps")
    presets = list_presets()
    presets = presets if default_preset in presets else [*presets, default_preset]  # a project file
    with st.form("launch_sweep"):
        c = st.columns([2, 1, 2, 1, 1, 1])
        preset = c[0].selectbox("Preset", presets, index=presets.index(default_preset), key="sweep_preset",
                                format_func=_label)
        methods = list_pruners()
        prune = c[1].selectbox("Pruning method", methods, index=methods.index("taylor"), key="sweep_prune",
                               help="taylor, as the experiment form and the README")
        alphas = c[2].text_input("alphas (bits)", "auto", help="auto: where the grouping changes, at most 8 "
                                 "log-spaced values; or comma-separated values such as 0.01,0.1,0.5")
        seeds = c[3].text_input("seeds", SEEDS)
        why = slurm_unavailable()  # slurm is offered only where this machine can submit Slurm jobs
        executor = c[4].selectbox("Executor", V.offered_executors(why), key="sweep_executor",
                                  help="local: this machine's worker pool; submitit-local: through "
                                  "submitit on this machine; slurm: sbatch jobs"
                                  + (f" (not offered: {why})" if why else ""))
        workers = c[5].number_input("workers", min_value=0, value=0, help="0: cores // threads")
        quick = c[5].checkbox("quick", value=False, key="sweep_quick")
        if st.form_submit_button("Launch sweep"):
            try:
                job = V.sweep_job(preset, prune, alphas, seeds, executor, int(workers) or None, quick)
            except PamError as exc:
                st.error(str(exc))
            else:
                _submit(job, f"sweep-{get_preset(preset).title}" + ("-quick" if quick else ""))
                st.caption(f"Duration of this sweep: {L.plain(_duration(job))}")
    default = V.sweep_job(default_preset, "taylor", "auto", SEEDS, "local", None, False)
    st.caption(f"A sweep of {get_preset(default_preset).title} with the defaults above (auto alphas, seeds "
               f"{SEEDS}, taylor): {L.plain(_duration(default))}. While a sweep runs, its progress line "
               "gives an ETA from its finished jobs.")
    _sweep_progress()


@st.fragment(run_every=2)
def _sweep_progress() -> None:
    runs = [r for r in jobs.list_runs(runs_roots()) if (r.get("job") or {}).get("command") == "sweep"]
    for r in runs[::-1][:3]:
        points = sweep_files.read_points(r["dir"])
        quick = " · quick" if L.is_quick(r) else ""
        with st.expander(f"{r['run_id']} · {r['state']}{quick}", expanded=r["state"] in jobs.ACTIVE):
            p = jobs.progress(r["run_id"], r["root"]) or {}
            if isinstance(p.get("fraction"), (int, float)):
                st.progress(min(max(float(p["fraction"]), 0.0), 1.0), text=L.plain(p.get("message", "")))
            st.dataframe(V.points_table(points), hide_index=True)
