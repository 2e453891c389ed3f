"""Root folders, from the environment or else beside the repository (the defaults of old).

* ``cache_root()``: content-keyed caches (MI trajectories): ``$PAM_CACHE_ROOT``, else ``<repo>/cache``;
* ``runs_root()``: background run folders (dashboard Runs page): ``$PAM_RUNS_ROOT``, else
  ``<repo>/cache/runs``;
* ``assets_root()``: committed pre-trained networks: ``$PAM_ASSETS_ROOT``, else ``<repo>/assets``.

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
    return _env_or("PAM_RUNS_ROOT", REPO / "cache" / "runs")


def assets_root() -> Path:
    return _env_or("PAM_ASSETS_ROOT", REPO / "assets")


__all__ = ["REPO", "cache_root", "runs_root", "assets_root"]
