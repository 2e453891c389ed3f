"""Runs: launch experiments as background processes (pam_explorer.runs.jobs), watch, cancel, resume.

Every run is a separate process with its state on disk under the runs root (``$PAM_RUNS_ROOT``,
else runs/<run_id>/; runs of older versions under cache/runs/ are listed too), so runs survive an
app restart. A run is a checked job spec (ui/run_args.py), not a command line. One runs at a time;
up to two more wait in a FIFO queue. The queue advances when a run's wrapper ends (it starts the
next queued run itself, as ``python -m pam_explorer.runs.jobs start-next ROOT`` does) and whenever
this page polls (every 2 s). The launch form defaults to the explorer's alpha and per-layer
overrides and says what the run will use; everything that changes with a run's state (messages
about the last launch included) is drawn by the polling fragment, so nothing on the page is stale.
"""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import streamlit as st

from pam_explorer.core.device import available_devices
from pam_explorer.core.errors import PamError, QueueFull
from pam_explorer.data import get_preset, list_presets
from pam_explorer.data.project import ProjectPreset
from pam_explorer.prune import list_pruners
from pam_explorer.runs import jobs, results_index, slurm_queue
from pam_explorer.zoo.pretrained import has_pretrained
from ui import labels as L
from ui.run_args import (
    FLOORS,
    MODES,
    RANKS,
    REGROUP_PROFILES,
    ExperimentPlan,
    experiment_plan,
    overrides_to_text,
    regroup_profile,
    run_differences,
    slurm_sweep_job,
)
from ui.state import current_setup, regroup_config, runs_root, runs_roots, slurm_unavailable
from ui.sweep_section import runs_sweep_section  # sweep (issue 16)
from ui.sweep_view import sweep_job

PANELS_KEPT = 3  # finished runs whose panel (progress, log, links) stays on the page


def launch_form() -> None:
    """The run's settings (defaults: the explorer's alpha and overrides), what it will use, and
    the launch button. Widgets, not a form, so the summary follows every change."""
    setup, explorer_cfg = current_setup(), regroup_config()
    presets, methods = with_current(list_presets(), setup.preset), list_pruners()
    c = st.columns([2, 1, 2])
    preset = c[0].selectbox("Preset", presets, index=presets.index(setup.preset), key="run_preset",
                            format_func=preset_label)
    prune = c[1].selectbox("Pruning method", methods, index=methods.index("taylor"), key="run_prune",
                           help="taylor (P2, Molchanov et al. 2019) and vib (P1) remove neurons; "
                                "adapmtl zeroes single weights up to a target sparsity")
    mode = c[2].radio("Run", MODES, key="run_mode")
    same = preset == setup.preset
    c = st.columns(4)
    alpha = c[0].number_input("alpha (bits)", min_value=0.0, format="%.4g", key=f"run_alpha_{preset}",
                              value=float(explorer_cfg.alpha if same else get_preset(preset).default_alpha),
                              help="PAM's regrouping threshold; defaults to the explorer's alpha")
    ovr_text = c[1].text_input("Per-layer alpha overrides", key=f"run_overrides_{preset}",
                               value=overrides_to_text(explorer_cfg.overrides) if same else "",
                               placeholder="e.g. conv1=0.1, fc1=0.2",
                               help="LAYER=ALPHA items; default: the explorer's overrides")
    seeds_text = c[2].text_input("Seeds", value="0", key="run_seeds",
                                 help="comma-separated, e.g. 0,1,2: every scheme runs under every seed; the "
                                      "report gives means with 95 % CIs and gains paired by seed")
    profile = regroup_profile(setup.mi) or "default"
    regroup = c[3].selectbox("Regroup profile", REGROUP_PROFILES, index=REGROUP_PROFILES.index(profile),
                             key="run_regroup", help="PAM's MI estimator and rule for neurons picked twice: "
                             "default (this project's), paper (the authors'), legacy (the first versions')")
    floor, rank, device, sparsity, quick = pruning_inputs(prune)
    try:  # one call: the job, and the config and command derived from it (one source)
        plan = experiment_plan(preset, prune, mode, float(alpha), ovr_text, seeds_text, quick, device,
                               float(sparsity), floor, rank, regroup, runs_roots())
    except (ValueError, PamError) as exc:  # PamError is a ValueError; the backend names the field
        st.error(str(exc))
        return
    networks = has_networks(preset)
    job = plan.job
    what_will_be_used(plan, same, setup, explorer_cfg)
    if not networks:
        st.warning(f"Preset {preset!r} has no trained networks yet: train them on the Setup page "
                   "('Train networks for this preset'), then launch.")
    if st.button("Launch", type="primary", disabled=not networks, key="launch"):
        name = f"{get_preset(preset).title}-{prune}" + ("-PAM" if mode == MODES[1] else "") \
            + ("-quick" if quick else "")
        try:
            rid = jobs.submit(job, runs_root(), name=name)
        except PamError as exc:  # the queue is full, or a bad argument
            st.session_state["launch_feedback"] = {"error": str(exc), "at": time.time(),
                                                   "queue_full": isinstance(exc, QueueFull)}
        else:
            jobs.start_next(runs_root())
            st.session_state["launch_feedback"] = {"run": rid, "at": time.time()}


def with_current(presets: list[str], current: str) -> list[str]:
    """The preset names, and the current setup's project file when it is one."""
    return presets if current in presets else [*presets, current]


def preset_label(preset: str) -> str:
    return f"project {get_preset(preset).title} ({preset})" if preset.endswith(".toml") else preset


def has_networks(preset: str) -> bool:
    """Whether the preset has committed networks, or the project every task's network file."""
    p = get_preset(preset)
    if isinstance(p, ProjectPreset):
        return all(Path(n.path).is_file() for n in p.nets)
    return has_pretrained(preset, p.task_names)


def pruning_inputs(prune: str) -> tuple[str, str, str, float, bool]:
    """The accuracy floor, neuron ranking, device, AdapMTL's target sparsity and quick mode."""
    c = st.columns(4)
    floor = c[0].selectbox("Accuracy floor", FLOORS, key="run_floor",
                           help="original: the original networks' validation accuracy minus delta, for "
                                "every scheme; own: each scheme's own unpruned accuracy")
    rank = c[1].selectbox("Neuron ranking", RANKS, key="run_rank",
                          help="published: the method's own score; flops-aware: score / FLOPs saved")
    device = c[2].selectbox("Device", available_devices(), key="run_device",
                            help="cuda is offered only where a GPU is present")
    sparsity = c[3].number_input("target sparsity (AdapMTL)", min_value=0.05, max_value=0.99, value=0.9,
                                 step=0.05, key="run_sparsity", disabled=prune != "adapmtl",
                                 help="overall fraction of zero weights; used by adapmtl only")
    quick = st.checkbox("quick: a smoke test (tiny finetuning and pruning data, few steps; PAM's regrouping "
                        "stays the explorer's). Its results are marked as quick everywhere.", key="run_quick")
    return floor, rank, device, float(sparsity), quick


def what_will_be_used(plan: ExperimentPlan, same: bool, setup, explorer_cfg) -> None:
    exp = plan.config
    regroup = exp.regroup_config()
    st.info(f"**This run**: `python -m pam_explorer {plan.command}`  \n"
            f"PAM regroups at {L.regroup_text(regroup)}; {L.mi_text(exp.mi(exp.seeds[0]))}; seeds "
            f"{list(exp.seeds)}; floor `{exp.floor}`, rank `{exp.rank}`, pace `{exp.pace}`"
            + ("; **quick run**" if exp.quick else "") + f"  \n**Duration**: {L.plain(plan.duration.text)}")
    diffs = run_differences(setup.mi, explorer_cfg, setup.checkpoints, exp.regroup, regroup.both_picked) \
        if same else [f"the explorer shows preset {setup.preset!r}"]
    if same and (regroup.alpha, regroup.overrides) != (explorer_cfg.alpha, tuple(explorer_cfg.overrides)):
        diffs.append(f"alpha/overrides differ from the explorer's ({L.regroup_text(explorer_cfg)})")
    if diffs:
        st.warning("PAM's merged network will differ from the explorer's: " + "; ".join(diffs) + ".")
    else:
        st.caption("PAM's merged network (seed 0) will be the one the explorer shows at this alpha.")


def _duration(r: dict) -> str:
    start = r.get("started")
    if not start:
        return ""
    return f"{(r.get('ended') or time.time()) - start:.0f} s"


def launch_feedback(runs: list[dict]) -> None:
    """The outcome of the last launch, as it is NOW (never a stale 'queued' or 'queue full')."""
    fb = st.session_state.get("launch_feedback")
    if not fb:
        return
    if "error" in fb:
        queued = sum(r["state"] == "queued" for r in runs)
        if (fb.get("queue_full") and queued < jobs.MAX_QUEUED) or time.time() - fb["at"] > 60:
            st.session_state.pop("launch_feedback", None)  # the queue has room again: launch again
            return
        st.error(f"Not launched: {fb['error']}")
        return
    run = next((r for r in runs if r["run_id"] == fb["run"]), None)
    if run is None:
        return
    state = run["state"]
    text = {"queued": "is queued (it starts when the run before it ends)", "running": "is running",
            "done": "finished", "failed": "failed", "cancelled": "was cancelled"}.get(state, state)
    (st.success if state in ("queued", "running", "done") else st.warning)(
        f"Run {fb['run']} {text}: its panel is below.")


def run_panel(r: dict, position: int | None = None) -> None:
    rid, state, root = r["run_id"], r["state"], r["root"]
    with st.container(border=True):
        c1, c2 = st.columns([5, 1])
        c1.markdown(f"**{rid}** · `{state}` · {_duration(r)}" + (" · **quick**" if L.is_quick(r) else "")
                    + (f" · resumes {r['resumed_from']}" if r.get("resumed_from") else "")
                    + f"  \n{L.code(jobs.describe(r))}")
        if state in jobs.ACTIVE:  # the callback runs before the (fragment) rerun shows the new state
            c2.button("Cancel", key=f"cancel_{rid}", on_click=jobs.cancel, args=(rid, root))
        if state in jobs.RESUMABLE and "job" in r:
            c2.button("Resume", key=f"resume_{rid}", on_click=_resume, args=(rid, root),
                      help="Runs the same job again in a new folder that starts with this run's results, "
                           "so finished stages are kept (as rerunning into the same --out does)")
        p = jobs.progress(rid, root) or {}
        frac = p.get("fraction")
        if state == "queued":
            st.caption(f"Waiting in the queue (position {position})." if position
                       else "Waiting in the queue.")
        elif isinstance(frac, (int, float)) and state in ("running", "done"):
            st.progress(min(max(float(frac), 0.0), 1.0), text=L.plain(L.progress_text(p) or state))
        if state == "failed":  # the message and the progress come from files: shown as text
            st.error(f"Run failed (exit code {L.plain(r.get('exit_code'))}). {L.plain(r.get('message', ''))}")
        if state == "running":
            st.code(jobs.log_tail(rid, 15, root) or "(no output yet)", language=None)
        elif state in jobs.FINAL:
            with st.expander("Log (last 30 lines)", expanded=state == "failed"):
                st.code(jobs.log_tail(rid, 30, root) or "(empty log)", language=None)
        if state == "done":
            links(r)


def links(r: dict) -> None:
    """Where a finished run's outputs are shown: its results, its model, its networks."""
    rid, folder = r["run_id"], Path(r["dir"])
    command = (r.get("job") or {}).get("command")
    c = st.columns(3)
    if results_index.has_results(r) and c[0].button("Open its results", key=f"results_{rid}"):
        st.session_state["res_run"] = rid
        st.session_state["res_view"] = "Runs"  # the Results page's runs, not its regime map
        st.switch_page("ui/page_results.py")
    if (folder / "model.zip").is_file() and c[1].button("Export its model", key=f"export_{rid}"):
        st.session_state["export_run"] = rid
        st.switch_page("ui/page_export.py")
    if command == "train":
        c[2].caption("The networks are installed for their preset: pick it on the Setup page.")


def _resume(rid: str, root: str) -> None:
    try:
        new = jobs.resume(rid, root)
    except PamError as exc:
        st.session_state["launch_feedback"] = {"error": str(exc), "at": time.time()}
        return
    jobs.start_next(root)
    st.session_state["launch_feedback"] = {"run": new, "at": time.time()}


@st.fragment(run_every=2)
def runs_view() -> None:
    runs = jobs.poll(runs_roots())
    launch_feedback(runs)
    if not runs:
        st.info("No runs yet.")
        return
    df = pd.DataFrame([{"run": r["run_id"], "state": r["state"], "quick": "yes" if L.is_quick(r) else "",
                        "duration": _duration(r), "command": (r.get("job") or {}).get("command", "?"),
                        "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.get("created", 0)))}
                       for r in runs[::-1]])
    st.dataframe(df, hide_index=True)
    queued = [r for r in runs if r["state"] == "queued"]
    running = [r for r in runs if r["state"] == "running"]
    finished = [r for r in runs[::-1] if r["state"] in jobs.FINAL][:PANELS_KEPT]
    for r in running:
        run_panel(r)
    for i, r in enumerate(queued, start=1):
        run_panel(r, i)
    for r in finished:
        run_panel(r)


def slurm_section(default_preset: str) -> None:
    """Sweeps on a Slurm cluster (issue 29): launched from here when this machine submits Slurm
    jobs; each job's Slurm state and log. The run itself is the driver: a background run here."""
    st.subheader("Sweeps on Slurm")
    why = slurm_unavailable()  # cached 30 s: sinfo takes up to 3 s without a controller
    if why:
        st.caption(f"Slurm: {why}. Sweeps run on this machine (executor local).")
    else:
        slurm_launch_form(default_preset)
    slurm_jobs_view()


def slurm_launch_form(default_preset: str) -> None:
    presets, parts = list_presets(), slurm_queue.partitions()
    with st.form("launch_slurm_sweep"):
        c = st.columns([2, 1, 2, 1, 1])
        preset = c[0].selectbox("Preset", presets, index=presets.index(default_preset), key="slurm_preset")
        prune = c[1].selectbox("Pruning method", list_pruners(), key="slurm_prune")
        alphas = c[2].text_input("alphas (bits)", "auto", key="slurm_alphas")
        seeds = c[3].text_input("seeds", "0,1,2", key="slurm_seeds")
        partition = c[4].selectbox("Partition", parts, key="slurm_partition", help="the first is the default")
        c = st.columns(4)
        cpus = c[0].number_input("CPUs per job", min_value=1, value=1, key="slurm_cpus",
                                 help="also the torch threads of each job")
        mem = c[1].number_input("memory per job (GB)", min_value=0.5, value=8.0, step=0.5, key="slurm_mem")
        minutes = c[2].number_input("time limit per job (min)", min_value=1, value=120, key="slurm_time")
        quick = c[3].checkbox("quick", value=False, key="slurm_quick")
        if st.form_submit_button("Launch sweep on Slurm"):
            try:
                base = sweep_job(preset, prune, alphas, seeds, "slurm", None, quick)
                job = slurm_sweep_job(base, partition, int(cpus), float(mem), int(minutes))
                name = f"sweep-{preset}-slurm" + ("-quick" if quick else "")
                rid = jobs.submit(job, runs_root(), name=name)
            except PamError as exc:  # bad alphas or seeds, or the queue is full
                st.error(str(exc))
            else:
                jobs.start_next(runs_root())
                st.success(f"Sweep {rid} submitted: its driver runs here, its jobs on Slurm (below).")


@st.fragment(run_every=5)
def slurm_jobs_view() -> None:
    """Per sweep on Slurm (the newest three), each job's Slurm state and the log of one."""
    for folder in slurm_queue.find_sweeps(runs_roots())[:3]:
        rows = slurm_queue.job_rows(folder / "submitit")
        active = any(r["slurm"] in ("pending", "running") for r in rows)
        with st.expander(f"{folder.name}: {len(rows)} Slurm job(s)", expanded=active):
            columns = ["label", "job_id", "slurm", "state", "reason", "submissions"]
            st.dataframe(pd.DataFrame(rows, columns=columns), hide_index=True)
            if active:
                st.button("Cancel its queued and running Slurm jobs", key=f"slurm_cancel_{folder}",
                          on_click=slurm_queue.cancel_jobs, args=(folder / "submitit",),
                          help="scancel; a stopped driver leaves its jobs on the cluster")
            label = st.selectbox("Log of", [r["label"] for r in rows], key=f"slurm_log_{folder}")
            row = next(r for r in rows if r["label"] == label)
            st.code(slurm_queue.tail(row["stdout"]) + slurm_queue.tail(row["stderr"]) or "(no output yet)",
                    language=None)


def main() -> None:
    st.header("Runs")
    st.caption(f"Run directories: `{runs_root()}`. One run at a time, at most "
               f"{jobs.MAX_QUEUED} queued; runs keep going if the app stops.")
    launch_form()
    runs_view()
    runs_sweep_section(current_setup().preset)  # sweep (issue 16)
    slurm_section(current_setup().preset)  # sweeps on Slurm (issue 29)


main()
