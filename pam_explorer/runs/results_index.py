"""Which finished runs have results to show, and the runs the Results page opens on (pure but for
a stat per run folder).

A run has results when its folder holds a report.json (an experiment) or a sweep.json (an alpha
sweep, also a partial one written while it ran). The page lists every finished run, so that a
failed one can still be read, but opens on the newest run with results that was not cancelled;
comparing opens on the two newest such runs.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

RESULT_FILES = ("report.json", "sweep.json")


def result_file(run: Mapping) -> str | None:
    """The name of the run's results file ("report.json" before "sweep.json"), or None."""
    folder = run.get("dir")
    if not folder:
        return None
    return next((name for name in RESULT_FILES if (Path(folder) / name).is_file()), None)


def has_results(run: Mapping) -> bool:
    return result_file(run) is not None


def default_picks(runs: Sequence[Mapping], n: int = 1) -> list[int]:
    """Indices into ``runs`` (newest first) of the ``n`` runs to open: the newest runs with
    results that were not cancelled, then cancelled ones with results, then the newest others;
    fewer when ``runs`` has fewer than ``n``."""
    def rank(i: int) -> tuple[int, int]:
        r = runs[i]
        return (0 if has_results(r) and r.get("state") != "cancelled" else 1 if has_results(r) else 2, i)

    return sorted(range(len(runs)), key=rank)[:n]


__all__ = ["RESULT_FILES", "result_file", "has_results", "default_picks"]
