"""Artefacts written before the stage layout still read: an export zip and an experiment run folder
(tests/fixtures/legacy/README.md says how they were made)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.testing import assert_close

from pam_explorer import export
from pam_explorer.core.config import MIConfig, RegroupConfig
from pam_explorer.core.subsets import subset_key
from pam_explorer.regroup.explorer import Explorer
from pam_explorer.runs import jobs
from pam_explorer.runs.experiment import ExperimentConfig, run_experiment

LEGACY = Path(__file__).resolve().parent / "fixtures" / "legacy"
FLOAT32 = {"rtol": 1.3e-6, "atol": 1e-5}  # torch.testing's defaults for float32


def test_legacy_export_loads_with_the_recorded_outputs():
    """The outputs were recorded on another machine: they agree to float32 rounding (torch's
    default float32 tolerances, rtol 1.3e-6 and atol 1e-5), not bit for bit (BLAS and oneDNN
    kernels, and so the summation order, differ between CPUs; seen: 1.5e-8 apart)."""
    net = export.load(LEGACY / "merged_v1.zip")
    want = load_file(str(LEGACY / "merged_v1_outputs.safetensors"))
    with torch.no_grad():
        full = net(want["input"])
        alone = net(want["input"], ["A"])
    assert full["A"].dtype == want["A"].dtype == torch.float32
    assert_close(full["A"], want["A"], **FLOAT32)
    assert_close(full["B"], want["B"], **FLOAT32)
    assert_close(alone["A"], want["A_alone"], **FLOAT32)
    manifest = export.read_manifest(LEGACY / "merged_v1.zip")
    assert manifest["format"] == export.FORMAT and manifest["tasks"] == ["A", "B"]
    assert manifest["flops"] == export.manifest_of(net)["flops"]


@pytest.fixture()
def legacy_root(tmp_path) -> tuple[Path, str]:
    (src,) = (LEGACY / "runs").iterdir()
    shutil.copytree(src, tmp_path / src.name)
    return tmp_path, src.name


def test_legacy_run_folder_is_listed_and_read(legacy_root):
    root, rid = legacy_root
    stored = json.loads((root / rid / "report.json").read_text())
    (run,) = jobs.list_runs(root)
    assert run["run_id"] == rid and run["state"] == "done" and run["exit_code"] == 0
    assert jobs.report(rid, root) == stored
    assert jobs.progress(rid, root)["stage"] == "done"
    assert "PAM vs B1" in jobs.log_tail(rid, 10, root)


def test_legacy_experiment_resumes_without_recomputing(legacy_root):
    root, rid = legacy_root
    out = root / rid
    stored = json.loads((out / "report.json").read_text())
    raw = json.loads((out / "config.json").read_text())
    cfg = ExperimentConfig.from_dict(raw)  # one "seed", none of the fields added since
    assert (cfg.seeds, cfg.floor, cfg.rank, cfg.regroup) == ((0,), "own", "flops-aware", "legacy")
    rows: list[dict] = []
    report = run_experiment(cfg, out, progress=rows.append, cache=None)
    said = [r["message"] for r in rows if r["stage"] in cfg.schemes]
    assert [m for m in said if "resumed" in m] == [f"{s}: resumed from the run folder" for s in cfg.schemes]
    assert not any("prune step" in m or "finetuning" in m for m in said)  # no stage ran again
    assert report["per_seed"]["0"]["schemes"] == stored["schemes"]  # nothing recomputed
    for name, rec in stored["schemes"].items():  # one seed: the summary is that seed's figures
        assert report["schemes"][name]["flops"] == rec["flops"]
        assert report["schemes"][name]["accuracy"] == rec["accuracy"]
    for key in ("gains", "latency_gains"):
        for vs, g in stored[key].items():
            assert report[key][vs]["average"] == pytest.approx(g["average"])
            assert report[key][vs]["peak"] == pytest.approx(g["peak"])
    assert report["reference_accuracy"] == pytest.approx(stored["reference_accuracy"])


def test_legacy_pickle_cache_is_ignored_and_the_old_estimator_reproduces(tmp_path, monkeypatch):
    """A joblib (pickle) entry the old code wrote is never opened (issue 13: nothing in the cache
    executes); the old estimator (fixed kernel, no chance level) recomputes the same groups that
    the old code's `regroup --alpha 0.05 --json` printed for conv1."""
    shutil.copytree(LEGACY / "cache", tmp_path / "cache")
    monkeypatch.setenv("PAM_CACHE_ROOT", str(tmp_path / "cache"))
    explorer = Explorer.open("digits-2task", MIConfig(n_samples=256, kernel="fixed", null_perms=0))
    assert not explorer.trajs.cache_hit
    conv1 = explorer.groups(RegroupConfig(alpha=0.05))["conv1"]
    assert {subset_key(k): len(v) for k, v in conv1.groups.items()} == {"A": 4, "B": 1, "A+B": 7}
