"""The project installs as a package (issue 26, point 7): pyproject's dependencies mirror
requirements.txt, the README's first two lines are the two install commands and CI installs with
the README's test command; installed, `import pam_explorer` and the `pam-explorer` command work
from any folder."""
from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_dependencies_mirror_requirements_txt():
    want = {line.strip() for line in (REPO / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")}
    p = project()
    assert set(p["dependencies"]) | set(p["optional-dependencies"]["test"]) == want
    assert not set(p["dependencies"]) & {"pytest", "selenium"}  # test tools only in the extra
    module, _, func = p["scripts"]["pam-explorer"].partition(":")
    assert module == "pam_explorer.cli" and callable(getattr(importlib.import_module(module), func))


def test_readme_commands_install_the_package_and_ci_runs_the_test_one():
    lines = (REPO / "README.md").read_text().splitlines()
    dashboard, tests = (line.split("#")[0].strip() for line in lines[2:4])
    assert dashboard.startswith("pip install -e . &&") and dashboard.endswith("streamlit run app.py")
    assert tests.startswith('pip install -e ".[test]" &&') and tests.endswith("python -m pytest -q")
    install = tests.rsplit("&& python -m pytest", 1)[0].strip()
    ci = (REPO / ".ci" / "run").read_text()
    quiet = re.sub(r"pip install ", "pip install -q ", install)
    assert quiet in " ".join(ci.replace("\\\n", " ").split()), "CI must install as the README says"


def _installed() -> bool:
    """Whether pip installed it (asked from another folder: the repository's own
    pam_explorer.egg-info, left by an install, does not count)."""
    probe = "import importlib.metadata as m; m.version('pam-explorer')"
    return subprocess.run([sys.executable, "-c", probe], cwd=Path(tempfile.gettempdir()),
                          capture_output=True).returncode == 0


@pytest.mark.skipif(not _installed(), reason="pam-explorer is not pip-installed here (CI installs it)")
def test_installed_package_works_from_any_folder(tmp_path):
    where = subprocess.run([sys.executable, "-c", "import pam_explorer; print(pam_explorer.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).resolve().is_relative_to(REPO)
    script = Path(sys.executable).with_name("pam-explorer")
    out = subprocess.run([str(script), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "experiment" in out.stdout
