"""Files a run reads but did not write this time (issue 25, items 1-7): stage-cache entries,
run-folder stage records, the lock file, model.zip, plan.json and the trajectory cache are data
to check, never to trust. Each case failed before the fix (a file written outside the run, a
symlink's target replaced, a corrupt zip accepted, a plan or a stale stage used, a traceback)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from pam_explorer.core.config import MIConfig
from pam_explorer.core.errors import DataError, PamError, RunConflict
from pam_explorer.data import get_preset
from pam_explorer.regroup import trajectories as traj
from pam_explorer.runs import outdir, schemes, stage_cache, stage_run
from pam_explorer.runs.experiment import ExperimentConfig, run_experiment
from pam_explorer.runs.stage_cache import StageCache
from pam_explorer.runs.stage_run import resolve_stage
from pam_explorer.runs.sweep import SweepConfig, SweepOptions, run_sweep
from pam_explorer.zoo.pretrained import load_pretrained

RECORD = {"flops": {"A": 10, "B": 12, "A+B": 20}, "accuracy": {"A": 98.5, "B": 97.0}}


def computer(stages: Path, tag: str = "_s0"):
    """A stand-in stage: writes its network into the run's ``stages`` folder as the schemes do
    (``B1<tag>.zip``) and returns RECORD and that file; counts its calls."""
    calls = []

    def compute():
        calls.append(1)
        (stages / f"B1{tag}.zip").write_bytes(b"the computed network")
        return dict(RECORD), {"B1.zip": stages / f"B1{tag}.zip"}
    compute.calls = calls
    return compute


def run_folder(tmp_path: Path) -> Path:
    d = tmp_path / "run" / "stages"
    d.mkdir(parents=True)
    return d


def plant_entry(cache_root: Path, key: str, record: dict, files: dict[str, bytes]) -> Path:
    entry = cache_root / "stages" / key
    entry.mkdir(parents=True)
    for name, data in files.items():
        (entry / name).parent.mkdir(parents=True, exist_ok=True)
        (entry / name).write_bytes(data)
    (entry / "record.json").write_text(json.dumps(record))
    return entry


# --------------------------------------------------------------------------- item 1
def test_a_cache_record_cannot_name_a_file_outside_its_folder(tmp_path, caplog):
    cache_root = tmp_path / "cache"
    (cache_root / "x").mkdir(parents=True)
    (cache_root / "x" / "payload.zip").write_bytes(b"attacker's bytes")  # what ../../x/payload.zip reaches
    (tmp_path / "x").mkdir()  # where the run folder's stages/../../x/ points
    plant_entry(cache_root, "k", {**RECORD, "_files": ["../../x/payload.zip"]}, {})
    stages = run_folder(tmp_path)
    compute = computer(stages)
    with caplog.at_level(logging.WARNING):
        record, source = resolve_stage(stages / "B1_s0.json", "k", StageCache(cache_root), compute, "_s0")
    assert source == "computed" and compute.calls == [1] and record == RECORD
    assert "not plain file names" in caplog.text
    # before the fix, x/payload_s0.zip was written too
    written = {p.relative_to(tmp_path) for p in tmp_path.rglob("*payload*")}
    assert written == {Path("cache/x/payload.zip")}  # nothing written next to it, or outside the run


def test_put_refuses_names_with_a_folder_part(tmp_path):
    src = tmp_path / "f.zip"
    src.write_bytes(b"x")
    with pytest.raises(ValueError, match="not a plain file name"):
        StageCache(tmp_path / "cache").put("k", RECORD, {"../f.zip": src})
    assert not (tmp_path / "f_s0.zip").exists() and not (tmp_path / "cache" / "stages" / "k").exists()


# --------------------------------------------------------------------------- item 4
def test_a_corrupt_cached_zip_is_recomputed(tmp_path, caplog):
    cache = StageCache(tmp_path / "cache")
    first = run_folder(tmp_path / "a")
    resolve_stage(first / "B1_s0.json", "k", cache, computer(first), "_s0")  # stores the entry
    entry = tmp_path / "cache" / "stages" / "k"
    (entry / "B1.zip").write_bytes(b"garbage of another length")
    stages = run_folder(tmp_path / "b")
    compute = computer(stages)
    with caplog.at_level(logging.WARNING):
        record, source = resolve_stage(stages / "B1_s0.json", "k", cache, compute, "_s0")
    assert source == "computed" and compute.calls == [1] and record == RECORD
    assert (stages / "B1_s0.zip").read_bytes() == b"the computed network"
    assert "differs from its recorded content hash" in caplog.text
    stored = json.loads((entry / "record.json").read_text())
    assert stored["_sha256"] == {"B1.zip": stage_cache.sha256_file(first / "B1_s0.zip")}


def test_a_symlink_or_hashless_entry_is_not_used(tmp_path):
    cache_root = tmp_path / "cache"
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"not for the run folder")
    hashes = {"B1.zip": "0" * 64}
    entry = plant_entry(cache_root, "k", {**RECORD, "_files": ["B1.zip"], "_sha256": hashes}, {})
    (entry / "B1.zip").symlink_to(secret)
    plant_entry(cache_root, "old", {**RECORD, "_files": ["B1.zip"]}, {"B1.zip": b"zip"})  # no hashes
    cache = StageCache(cache_root)
    assert cache.get("k") is None and cache.get("old") is None
    stages = run_folder(tmp_path)
    _, source = resolve_stage(stages / "B1_s0.json", "k", cache, computer(stages), "_s0")
    assert source == "computed" and (stages / "B1_s0.zip").read_bytes() == b"the computed network"


def test_a_good_entry_is_reused_with_its_files(tmp_path):
    cache = StageCache(tmp_path / "cache")
    first = run_folder(tmp_path / "a")
    resolve_stage(first / "B1_s0.json", "k", cache, computer(first), "_s0")
    stages = run_folder(tmp_path / "b")
    never = computer(stages)
    record, source = resolve_stage(stages / "B1_s3.json", "k", cache, never, "_s3")
    assert source == "cached" and never.calls == [] and record == RECORD
    assert (stages / "B1_s3.zip").read_bytes() == b"the computed network"


# --------------------------------------------------------------------------- item 6
def test_run_folder_records_carry_the_stage_key_and_version(tmp_path, monkeypatch):
    stages = run_folder(tmp_path)
    path = stages / "B1_s0.json"
    resolve_stage(path, "key-1", StageCache(None), computer(stages), "_s0")
    assert json.loads(path.read_text())["_stage"] == {"key": "key-1", "version": stage_cache.STAGE_VERSION}
    record, source = resolve_stage(path, "key-1", StageCache(None), None, "_s0")
    assert (record, source) == (RECORD, "resumed")  # the key is not part of the record read back
    with pytest.raises(RunConflict, match=r"B1_s0.json holds a stage of another version or configuration"
                                          r".*use another --out"):
        resolve_stage(path, "key-2", StageCache(None), None, "_s0")
    monkeypatch.setattr(stage_run, "STAGE_VERSION", "stage-v999")
    with pytest.raises(RunConflict, match="'stage-v999' key key-1 now"):
        resolve_stage(path, "key-1", StageCache(None), None, "_s0")


def test_records_written_before_keys_were_kept_still_resume(tmp_path):
    path = run_folder(tmp_path) / "B1_s0.json"
    path.write_text(json.dumps(RECORD))
    assert resolve_stage(path, "any key", StageCache(None), None, "_s0") == (RECORD, "resumed")


# --------------------------------------------------------------------------- item 7
@pytest.mark.parametrize("text, needle", [
    ('{"flops": {"A": 1', "is not JSON (truncated?"),
    ("[1, 2]", "holds a JSON list, not a stage record"),
    ("{}", "has no 'flops'"),
    ('{"flops": {"A": 1}, "accuracy": {"A": "x"}}', "has no 'accuracy'"),
], ids=["truncated", "list", "empty", "bad-accuracy"])
def test_a_corrupt_stage_record_is_a_one_line_error(tmp_path, text, needle):
    path = run_folder(tmp_path) / "PAM_s0.json"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        resolve_stage(path, "k", StageCache(None), computer(path.parent), "_s0")
    msg = str(err.value)
    assert str(path) in msg and needle in msg and "\n" not in msg
    assert path.read_text() == text  # left as it was


def test_a_folder_in_place_of_the_trajectory_cache_entry_is_a_one_line_error(tmp_path, monkeypatch):
    preset = get_preset("digits-2task")
    nets = load_pretrained(preset.name, preset.task_names)
    mi = MIConfig(n_samples=16, null_perms=0)
    monkeypatch.setattr(traj, "shipped_path", lambda *a: tmp_path / "none.json")
    (tmp_path / "trajectories" / f"{traj.cache_key(preset, nets, mi=mi)}.json").mkdir(parents=True)
    with pytest.raises(DataError, match="trajectory cache entry .* cannot be written .* PAM_CACHE_ROOT"):
        traj.compute_trajectories(preset, nets, mi=mi, cache_dir=tmp_path)


# --------------------------------------------------------------------------- item 2
@pytest.mark.parametrize("kind", ["symlink", "dangling", "hardlink"])
def test_a_planted_lock_file_is_refused_and_its_target_kept(tmp_path, kind):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    if kind != "dangling":
        victim.write_text("precious contents")
    if kind == "hardlink":
        (out / outdir.LOCK).hardlink_to(victim)
    else:
        (out / outdir.LOCK).symlink_to(victim)
    with pytest.raises(RunConflict, match=r"\.pam-run\.lock is (a symbolic link|not a plain file)"):
        with outdir.claim(out, "merge", {"a": 1}):
            pass
    assert victim.read_text() == "precious contents" if kind != "dangling" else not victim.exists()
    assert sorted(p.name for p in out.iterdir()) == [outdir.LOCK]  # no marker written


# --------------------------------------------------------------------------- item 5
@pytest.fixture()
def fake_stages(monkeypatch, tmp_path):
    """Stand-in stages (no computing), the trajectories in a private cache."""
    monkeypatch.setenv("PAM_CACHE_ROOT", str(tmp_path / "traj-cache"))

    def stage(name):
        def fn(s, nets, tasks, data, say, folder, tag):
            base = {"B1": 20.0, "B2": 15.0}.get(name) or 12.0 / (1 + s.regroup.alpha)
            return {"flops": {"A": base, "B": base, "A+B": 2 * base}, "params": {"A": 1, "B": 1, "A+B": 1},
                    "accuracy": {"A": 99.0, "B": 99.0}, "val_accuracy": {"A": 99.0, "B": 99.0}}, {}
        return fn
    for name in ("B1", "B2", "PAM"):
        monkeypatch.setitem(schemes.SCHEME_FNS, name, stage(name))


@pytest.mark.parametrize("plan, error, needle", [
    ({"rule": "typed", "alphas": [7.0]}, RunConflict, "plans alphas [7.0] (typed), not those of this sweep "
                                                      "(--alphas 0.05,0.5)"),
    ('{"rule": "typed", "alph', DataError, "is not a readable sweep plan"),
    ({"rule": "typed", "alphas": ["x"]}, DataError, "is not a sweep plan"),
], ids=["edited", "truncated", "malformed"])
def test_plan_json_must_match_the_configured_alphas(tmp_path, fake_stages, plan, error, needle):
    cfg = SweepConfig(quick=True, alphas=(0.05, 0.5), seeds=(0,))
    opts = SweepOptions(executor="inline", cache=None, poll_s=0)
    out = tmp_path / "sweep"
    first = run_sweep(cfg, out, opts, say=lambda _: None)
    assert [p["alpha"] for p in first["points"]] == [0.05, 0.5]
    path = out / "plan.json"
    path.write_text(plan if isinstance(plan, str) else json.dumps(plan))
    with pytest.raises(error) as err:
        run_sweep(cfg, out, opts, say=lambda _: None)
    msg = str(err.value)
    assert str(path) in msg and needle in msg and "use another --out" in msg and "\n" not in msg
    assert isinstance(err.value, PamError)


def test_an_experiment_refuses_a_stale_record_before_computing_any_stage(tmp_path, fake_stages, monkeypatch):
    cfg = ExperimentConfig(quick=True, schemes=("B1", "PAM"), seeds=(0,), device="cpu")
    out = tmp_path / "exp"
    run_experiment(cfg, out, cache=None)  # the stand-in stages: a finished folder in a second
    pam = out / "stages" / "PAM_s0.json"
    record = json.loads(pam.read_text())
    pam.write_text(json.dumps({**record, "_stage": {**record["_stage"], "key": "0" * 32}}))
    (out / "stages" / "B1_s0.json").unlink()  # a stage to compute before PAM is reached

    def forbidden(*_a, **_k):
        raise AssertionError("a stage was computed before the stale record was refused")
    monkeypatch.setitem(schemes.SCHEME_FNS, "B1", forbidden)
    with pytest.raises(RunConflict, match="PAM_s0.json holds a stage of another version or configuration"):
        run_experiment(cfg, out, cache=None)
