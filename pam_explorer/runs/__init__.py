"""Stage 8, runs: what a command or the dashboard starts and what it leaves on disk. The B1/B2/PAM
experiment (resumable stages, report.json, table.md), the merge and train commands, the MI
benchmark, and background runs as processes with their state in run folders (:mod:`.jobs`).

Import the modules directly (``from pam_explorer.runs import jobs``): ``jobs`` also runs as a
standalone wrapper script and must stay importable without the rest of this stage.
"""
