"""The command line of a dashboard run (pure: no streamlit, importable by tests)."""
from __future__ import annotations

import sys

MODES = ("Full experiment (B1, B2, PAM)", "Single PAM finetune + prune at alpha")


def experiment_argv(preset: str, prune: str, mode: str, alpha: float | None, quick: bool,
                    device: str = "auto", target_sparsity: float | None = None) -> list[str]:
    """The CLI command of a run; ``{run_dir}`` is filled in by jobs.submit."""
    argv = [sys.executable, "-m", "pam_explorer", "experiment", "--preset", preset, "--prune", prune,
            "--out", "{run_dir}", "--device", device]
    if prune == "adapmtl" and target_sparsity is not None:
        argv += ["--target-sparsity", f"{target_sparsity:g}"]
    if mode == MODES[1]:
        argv += ["--schemes", "PAM", "--alpha", f"{alpha:g}"]
    if quick:
        argv.append("--quick")
    return argv
