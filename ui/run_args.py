"""The job of a dashboard run (pure: no streamlit, importable by tests).

A run is described as data, ``{"command": "experiment", "args": {...}}``, never as a command line:
``pam_explorer.runs.jobs`` checks it against an allow-list and builds the command itself, with the
run's own folder as ``--out``.
"""
from __future__ import annotations

MODES = ("Full experiment (B1, B2, PAM)", "Single PAM finetune + prune at alpha")


def experiment_job(preset: str, prune: str, mode: str, alpha: float | None, quick: bool,
                   device: str = "auto", target_sparsity: float | None = None) -> dict:
    """The job spec of an experiment run (see pam_explorer.runs.job_spec)."""
    args: dict = {"preset": preset, "prune": prune, "device": device}
    if prune == "adapmtl" and target_sparsity is not None:
        args["target_sparsity"] = float(target_sparsity)
    if mode == MODES[1]:
        args.update(schemes=["PAM"], alpha=float(alpha))
    if quick:
        args["quick"] = True
    return {"command": "experiment", "args": args}
