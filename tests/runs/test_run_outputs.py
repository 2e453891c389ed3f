"""What a run writes into its folder (issue 25, items 3 and 14): strict JSON only (RFC 8259: no
Infinity/NaN tokens, inf written as "inf"), folders written before that still resume, and no
file written through a symlink planted in the folder. Both failed before the fix."""
from __future__ import annotations

import io
import json
import math
import shutil
import zipfile
from pathlib import Path

import pytest

from pam_explorer.core import io as core_io
from pam_explorer.core.errors import RunConflict
from pam_explorer.runs.experiment import ExperimentConfig, run_experiment
from pam_explorer.runs.outdir import MARKER, claim

CFG = ExperimentConfig(quick=True, schemes=("PAM",), device="cpu", alpha=math.inf)


def strict(text: str):
    def reject(token):
        raise ValueError(f"non-standard JSON token {token}")
    return json.loads(text, parse_constant=reject)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A quick PAM-only experiment at alpha = inf (3 s)."""
    out = tmp_path_factory.mktemp("runs") / "inf"
    run_experiment(CFG, out, cache=None)
    return out


@pytest.fixture()
def run(finished, tmp_path) -> Path:
    shutil.copytree(finished, tmp_path / "run", symlinks=True)
    return tmp_path / "run"


def test_every_json_of_an_alpha_inf_run_is_strict(run):
    written = sorted(run.rglob("*.json")) + [run / MARKER]
    assert {p.name for p in written} >= {"config.json", "report.json", "progress.json", "PAM_s0.json", MARKER}
    for path in written:
        strict(path.read_text())  # raises on Infinity / NaN tokens
    assert strict((run / "config.json").read_text())["alpha"] == "inf"
    assert strict((run / MARKER).read_text())["config"]["alpha"] == "inf"
    report = strict((run / "report.json").read_text())
    assert report["alpha"] == "inf" and report["config"]["regroup_config"]["alpha"] == "inf"
    manifest = zipfile.ZipFile(io.BytesIO((run / "model.zip").read_bytes())).read("manifest.json")
    strict(manifest.decode())


def test_the_strict_folder_and_one_written_with_infinity_tokens_both_resume(run, tmp_path):
    resumed = run_experiment(CFG, run, cache=None)  # "inf" in config.json reads back as inf
    assert resumed["alpha"] == math.inf
    assert ExperimentConfig.from_dict(json.loads((run / "config.json").read_text())) == CFG
    old = tmp_path / "old"  # as written before the fix: Infinity tokens in every JSON file
    shutil.copytree(run, old)
    for path in [*old.rglob("*.json"), old / MARKER]:
        path.write_text(json.dumps(json.loads(path.read_text()), indent=2).replace('"inf"', "Infinity"))
    assert "Infinity" in (old / "config.json").read_text() and "Infinity" in (old / MARKER).read_text()
    again = run_experiment(CFG, old, cache=None)
    pam = [r["per_seed"]["0"]["schemes"]["PAM"]["flops"] for r in (again, resumed)]
    assert pam[0] == pam[1]
    strict((old / "report.json").read_text())


def test_a_symlinked_model_zip_is_replaced_not_its_target(run, tmp_path):
    victim = tmp_path / "victim.zip"
    victim.write_bytes(b"someone else's file")
    (run / "model.zip").unlink()
    (run / "model.zip").symlink_to(victim)
    run_experiment(CFG, run, cache=None)  # resumes and exports model.zip again
    assert victim.read_bytes() == b"someone else's file"
    assert not (run / "model.zip").is_symlink()
    assert (run / "model.zip").read_bytes() == (run / "stages" / "PAM_s0.zip").read_bytes()


def test_the_io_helpers_never_write_through_a_symlink(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("kept")
    for name in ("a.json", "b.zip"):
        (tmp_path / name).symlink_to(victim)
    core_io.write_json_atomic(tmp_path / "a.json", {"x": math.inf, "y": [-math.inf, math.nan]})
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload")
    core_io.copy_file_atomic(src, tmp_path / "b.zip")
    assert victim.read_text() == "kept"
    assert strict((tmp_path / "a.json").read_text()) == {"x": "inf", "y": ["-inf", "nan"]}
    assert (tmp_path / "b.zip").read_bytes() == b"payload" and not (tmp_path / "b.zip").is_symlink()
    (tmp_path / "link").symlink_to(victim)
    with pytest.raises(OSError):
        core_io.copy_file_atomic(tmp_path / "link", tmp_path / "c")  # a symlink is not read either
    assert not (tmp_path / "c").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_marker_with_inf_is_strict_and_matches_before_and_after_the_fix(tmp_path):
    out, cfg = tmp_path / "m", {"regroup": {"alpha": math.inf, "overrides": [["fc1", math.inf]]}}
    with claim(out, "merge", cfg, ("model.zip",)):
        (out / "model.zip").write_bytes(b"merged")
    marker = out / MARKER
    assert strict(marker.read_text())["config"]["regroup"] == {"alpha": "inf", "overrides": [["fc1", "inf"]]}
    with claim(out, "merge", cfg, ("model.zip",)):  # the same configuration: accepted
        pass
    marker.write_text(json.dumps({"command": "merge", "config": cfg}))  # as written before the fix
    assert "Infinity" in marker.read_text()
    with claim(out, "merge", cfg, ("model.zip",)):
        pass
    with pytest.raises(RunConflict, match="another configuration"):
        with claim(out, "merge", {"regroup": {"alpha": 0.5, "overrides": []}}, ("model.zip",)):
            pass
