"""Fixtures of the dashboard tests: the app's default explorer and a temporary runs root."""
from __future__ import annotations

import pytest

from pam_explorer.core.config import MIConfig
from pam_explorer.regroup.explorer import Explorer


@pytest.fixture(scope="module")
def explorer() -> Explorer:
    return Explorer.open("digits-2task", MIConfig())  # the app's default setup (cache hit)


@pytest.fixture()
def runs_root(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("PAM_RUNS_ROOT", str(root))
    monkeypatch.setenv("PAM_JOBS_SELFTEST", "1")  # tiny `selftest` jobs stand in for experiments
    return root
