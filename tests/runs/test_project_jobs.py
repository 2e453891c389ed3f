"""Dashboard runs of a project (issue 28): a job spec's ``preset`` may be a project file (an
absolute .toml path), passed to the command as ``--project``; other paths are refused."""
from __future__ import annotations

import pytest

from pam_explorer.core.errors import ConfigError
from pam_explorer.runs import job_spec


def test_a_project_file_becomes_project_flag():
    job = {"command": "experiment", "args": {"preset": "/data/shop/pam.toml", "quick": True}}
    argv = job_spec.argv(job, "/runs/r1")
    assert argv[3:] == ["experiment", "--project", "/data/shop/pam.toml", "--quick", "--out", "/runs/r1"]
    sweep = {"command": "sweep", "args": {"preset": "/data/shop/pam.toml", "alphas": "auto", "seeds": [0]}}
    assert job_spec.argv(sweep, "/runs/r2")[4:6] == ["--project", "/data/shop/pam.toml"]
    assert job_spec.argv({"command": "experiment", "args": {"preset": "digits-2task"}}, "/r")[4:6] == \
        ["--preset", "digits-2task"]


@pytest.mark.parametrize("value", ["./pam.toml", "/data/../etc/pam.toml", "/data/pam.txt", "-x.toml",
                                   "/data/a\nb.toml"])
def test_other_paths_are_refused(value):
    with pytest.raises(ConfigError, match="job spec experiment preset"):
        job_spec.check({"command": "experiment", "args": {"preset": value}})
