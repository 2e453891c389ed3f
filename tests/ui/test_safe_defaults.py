"""Issue 13 on the dashboard side: it listens on localhost only by default, and the Results and
Export pages read runs from runs/ and from the folder they lived in before (cache/runs)."""
from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

from pam_explorer import export
from pam_explorer.core import paths
from pam_explorer.merge.build import merge_networks
from pam_explorer.zoo.pretrained import load_pretrained
from tests.helpers import random_grouping

REPO = Path(__file__).resolve().parents[2]
LEGACY_RUN = next((REPO / "tests" / "fixtures" / "legacy" / "runs").iterdir())


def test_streamlit_config_is_localhost_without_usage_stats():
    cfg = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["address"] == "127.0.0.1"
    assert cfg["browser"]["gatherUsageStats"] is False
    known = st_config.get_config_options()  # the option names exist in this streamlit version
    assert {f"{section}.{key}" for section, opts in cfg.items() for key in opts} <= set(known)


@pytest.fixture()
def two_roots(tmp_path, monkeypatch) -> tuple[str, str]:
    """<tmp>/runs holds a new run with a report; <tmp>/cache/runs the legacy run with a model.zip."""
    monkeypatch.delenv("PAM_RUNS_ROOT", raising=False)
    monkeypatch.setenv("PAM_ASSETS_ROOT", str(paths.assets_root()))
    monkeypatch.setenv("PAM_CACHE_ROOT", str(paths.cache_root()))
    monkeypatch.setattr(paths, "REPO", tmp_path)
    old = tmp_path / "cache" / "runs" / LEGACY_RUN.name
    shutil.copytree(LEGACY_RUN, old)
    nets = load_pretrained("digits-2task", ("A", "B"))
    net = merge_networks(nets, ("A", "B"), random_grouping(nets, ("A", "B"), seed=1))
    export.save(net, old / "model.zip", {"preset": "digits-2task"})
    new = tmp_path / "runs" / "20270101-000000-new"
    new.mkdir(parents=True)
    report = json.loads((old / "report.json").read_text())
    (new / "report.json").write_text(json.dumps({**report, "prune": "vib"}))
    (new / "status.json").write_text(json.dumps({"state": "done", "created": 1.8e9, "exit_code": 0,
                                                 "job": {"command": "experiment", "args": {}}}))
    return new.name, old.name


def test_results_and_export_pages_read_both_roots(two_roots):
    new, old = two_roots
    at = AppTest.from_file(str(REPO / "ui" / "page_results.py"), default_timeout=60).run()  # the page alone
    assert not at.exception, at.exception
    box = at.selectbox(key="res_run")
    assert box.options[:2] == [f"{new} (done)", f"{old} (done)"]  # newest first
    assert "pruning `vib`" in " ".join(c.value for c in at.caption)
    box.set_value(old).run()
    assert not at.exception and "pruning `taylor`" in " ".join(c.value for c in at.caption)
    at = AppTest.from_file(str(REPO / "ui" / "page_export.py"), default_timeout=60).run()
    assert not at.exception, at.exception
    assert at.selectbox(key="export_run").options == [f"{old} (done)"]  # the one with a model.zip
    assert not at.error
