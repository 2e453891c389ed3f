"""Root folders, from the environment or else beside the repository (the defaults of old).

* ``cache_root()``: content-keyed caches (MI trajectories): ``$PAM_CACHE_ROOT``, else ``<repo>/cache``;
* ``runs_root()``: run folders (results: the dashboard's background runs): ``$PAM_RUNS_ROOT``, else
  ``<repo>/runs``, never under the cache (clearing the cache loses no result);
* ``runs_roots()``: where runs are read from, new first: ``$PAM_RUNS_ROOT`` alone when it is set,
  else ``<repo>/runs`` and then ``<repo>/cache/runs`` (``legacy_runs_root()``, where run folders
  lived before; read, never written);
* ``assets_root()``: committed pre-trained networks: ``$PAM_ASSETS_ROOT``, else ``<repo>/assets``;
* ``results_root()``: committed study results (stage records, JSON): ``$PAM_RESULTS_ROOT``, else
  ``<repo>/results``.

Read at call time, so a test or a deployment can point them elsewhere by setting the variable.
Standard library only: ``runs/jobs.py`` loads this file by path when it runs as the detached
wrapper script (``python -I``), without the package.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # the folder holding pam_explorer/ (code, not data)


def _env_or(var: str, default: Path) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else default


def cache_root() -> Path:
    return _env_or("PAM_CACHE_ROOT", REPO / "cache")


def runs_root() -> Path:
    return _env_or("PAM_RUNS_ROOT", REPO / "runs")


def legacy_runs_root() -> Path:
    return REPO / "cache" / "runs"


def runs_roots() -> list[Path]:
    if os.environ.get("PAM_RUNS_ROOT"):
        return [runs_root()]
    return [runs_root(), legacy_runs_root()]


def assets_root() -> Path:
    return _env_or("PAM_ASSETS_ROOT", REPO / "assets")


def results_root() -> Path:
    return _env_or("PAM_RESULTS_ROOT", REPO / "results")


__all__ = ["REPO", "cache_root", "runs_root", "legacy_runs_root", "runs_roots", "assets_root", "results_root"]
