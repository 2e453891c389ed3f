"""Issue 26 item 14: ``--help`` lists the presets and pruning methods and starts without torch
(the measured time is in BENCHMARKS.md, "Command line start-up"); ``bench greedy`` says up front
that it takes a while and reports each timed run."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pam_explorer.cli import main
from pam_explorer.core.config import PRUNE_METHODS
from pam_explorer.data import list_presets
from pam_explorer.data.catalogue import builtin_preset_names
from pam_explorer.prune import list_pruners

REPO = Path(__file__).resolve().parents[2]


def imported_modules(*args: str) -> set[str]:
    """Modules ``python -X importtime -m pam_explorer ARGS`` imports (its import-time report)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "pam_explorer", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [l.split("|")[-1].strip() for l in proc.stderr.splitlines() if l.startswith("import time:")]
    return set(lines[1:])  # the first line is the header


@pytest.mark.parametrize("args", [["--help"], ["experiment", "--help"], ["sweep", "--help"]])
def test_help_imports_no_torch(args):
    mods = imported_modules(*args)
    assert "pam_explorer.cli.parser" in mods  # the report is real
    assert not {m for m in mods if m.split(".")[0] in ("torch", "torchvision", "numpy", "sklearn")}


def test_help_lists_presets_and_methods(capsys):
    with pytest.raises(SystemExit):
        main(["experiment", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "{taylor,vib,adapmtl}" in text and "--project FILE" in text
    assert all(name in text.replace("- ", "-") for name in list_presets())
    with pytest.raises(SystemExit):
        main(["experiment", "--preset", "digits-9task", "--out", "x"])
    assert "invalid choice: 'digits-9task'" in capsys.readouterr().err


def test_the_cli_lists_are_the_registries():
    assert builtin_preset_names() == list_presets()[:len(builtin_preset_names())]
    assert set(PRUNE_METHODS) == set(list_pruners())


def test_bench_greedy_says_it_takes_a_while_and_shows_progress(capsys):
    assert main(["bench", "greedy", "--neurons", "24", "--samples", "16", "--labels", "2",
                 "--naive-neurons", "12", "--json"]) == 0
    err = capsys.readouterr().err
    first, *rest = err.strip().splitlines()
    assert "takes a while" in first and "a few minutes" in first
    assert [l.strip()[:3] for l in rest] == ["1/3", "1/3", "2/3", "3/3"]


@pytest.mark.parametrize("argv0, usage", [
    ("/venv/bin/pam-explorer", "usage: pam-explorer "),  # the console script of pyproject.toml
    ("C:/venv/Scripts/pam-explorer.exe", "usage: pam-explorer "),
    (str(REPO / "pam_explorer" / "__main__.py"), "usage: python -m pam_explorer ")])
def test_usage_names_the_command_the_user_typed(argv0, usage):
    """``pam-explorer --help`` printed ``usage: python -m pam_explorer`` (issue 26 item 7's script)."""
    code = f"import sys; sys.argv[0] = {argv0!r}; from pam_explorer.cli import main; main(['--help'])"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith(usage), proc.stdout[:200]
