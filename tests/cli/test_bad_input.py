"""Bad input through the CLI (issue 13): each case exits 2 with a one-line error that names the
problem, before any computing, and leaves every file byte-identical (nothing added either).

Heavy stages are replaced by a function that fails the test if it is called, so "checked before
computing" is asserted, not assumed. The CLI runs in-process (pam_explorer.cli.main).
"""
from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from pam_explorer import export
from pam_explorer.cli import main
from pam_explorer.core.errors import DataError
from pam_explorer.merge.build import merge_networks
from pam_explorer.runs import experiment as experiment_mod
from pam_explorer.runs import merge_run, outdir, training_run
from pam_explorer.zoo.pretrained import load_pretrained

REPO = Path(__file__).resolve().parents[2]
LEGACY_RUN = next((REPO / "tests" / "fixtures" / "legacy" / "runs").iterdir())


def snapshot(folder: Path) -> dict[str, str]:
    """{relative path: sha256 or 'dir'} of everything under ``folder``, hidden files included."""
    out = {}
    for p in sorted(folder.rglob("*")):
        out[str(p.relative_to(folder))] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture()
def no_compute(monkeypatch):
    """Every command fails the test if it reaches its computing."""
    def forbidden(*_a, **_k):
        raise AssertionError("computing started before the bad input was rejected")
    monkeypatch.setattr(merge_run, "_merge", forbidden)
    monkeypatch.setattr(training_run, "_train", forbidden)
    monkeypatch.setattr(experiment_mod, "_run", forbidden)
    monkeypatch.setattr("pam_explorer.cli.commands.Explorer.open", forbidden)


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    err = capsys.readouterr().err.strip()
    return code, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    for n in needles:
        assert n in err, (n, err)


MERGE = ["merge", "--preset", "digits-2task", "--samples", "64"]
EXPERIMENT = ["experiment", "--preset", "digits-2task", "--prune", "taylor", "--quick"]
TRAIN = ["train", "--preset", "digits-2task", "--epochs", "1", "--n-train", "200"]


# --------------------------------------------------------------------------- item 2: other commands' folders
@pytest.fixture()
def experiment_dir(tmp_path) -> Path:
    """A finished experiment folder (the legacy fixture: no marker) plus a model.zip."""
    d = tmp_path / "exp"
    shutil.copytree(LEGACY_RUN, d)
    (d / "model.zip").write_bytes(b"the experiment's pruned model")
    return d


def test_merge_into_an_experiment_folder_is_refused(experiment_dir, capsys, no_compute):
    before = snapshot(experiment_dir)
    code, err = run_cli(MERGE + ["--out", str(experiment_dir)], capsys)
    assert_one_line_error(code, err, str(experiment_dir), "results of `experiment`")
    code, err = run_cli(MERGE + ["--out", str(experiment_dir), "--force"], capsys)  # never across commands
    assert_one_line_error(code, err, "results of `experiment`")
    assert snapshot(experiment_dir) == before


def test_merge_into_a_marked_folder_of_another_command(tmp_path, capsys, no_compute):
    for command in ("experiment", "train", "sweep"):
        d = tmp_path / command
        d.mkdir()
        (d / outdir.MARKER).write_text(json.dumps({"command": command, "config": {}}))
        before = snapshot(d)
        code, err = run_cli(MERGE + ["--out", str(d)], capsys)
        assert_one_line_error(code, err, f"results of `{command}`")
        assert snapshot(d) == before


def test_foreign_model_zip_is_not_replaced(tmp_path, capsys, no_compute):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "model.zip").write_bytes(b"exported by hand")
    (d / "notes.txt").write_text("keep")
    before = snapshot(d)
    code, err = run_cli(MERGE + ["--out", str(d)], capsys)
    assert_one_line_error(code, err, "model.zip", "not written by `merge`")
    assert snapshot(d) == before


def test_experiment_and_train_refuse_a_merge_folder(tmp_path, capsys, no_compute):
    d = tmp_path / "m"
    d.mkdir()
    (d / "merge.json").write_text("{}")  # a merge folder of an older version (no marker)
    (d / "model.zip").write_bytes(b"merged")
    before = snapshot(d)
    for args in (EXPERIMENT, TRAIN):
        code, err = run_cli(args + ["--out", str(d)], capsys)
        assert_one_line_error(code, err, "results of `merge`")
    assert snapshot(d) == before


def test_merge_of_another_config_needs_force(tmp_path, capsys, no_compute):
    d = tmp_path / "m"
    d.mkdir()
    old = {"preset": "digits-2task", "regroup": {"alpha": 0.9, "overrides": [], "algorithm": "simplified"}}
    (d / outdir.MARKER).write_text(json.dumps({"command": "merge", "config": old}))
    (d / "model.zip").write_bytes(b"merged at 0.9")
    before = snapshot(d)
    code, err = run_cli(MERGE + ["--alpha", "0.5", "--out", str(d)], capsys)
    assert_one_line_error(code, err, "another configuration", "--force")
    assert snapshot(d) == before
    with pytest.raises(AssertionError, match="computing started"):  # --force goes ahead
        main(MERGE + ["--alpha", "0.5", "--out", str(d), "--force"])


def test_experiment_of_another_config_is_refused_without_force(experiment_dir, capsys, no_compute):
    """No --force for experiment: its stage cache must not mix two configurations."""
    before = snapshot(experiment_dir)
    code, err = run_cli(["experiment", "--prune", "vib", "--quick", "--out", str(experiment_dir)], capsys)
    assert_one_line_error(code, err, "another configuration", "prune: 'taylor' there, 'vib' now")
    assert "--force" not in err
    assert snapshot(experiment_dir) == before


def test_train_into_committed_checkpoints_needs_force(tmp_path, capsys, no_compute):
    d = tmp_path / "assets"
    shutil.copytree(REPO / "assets" / "digits-2task", d)
    before = snapshot(d)
    code, err = run_cli(TRAIN + ["--out", str(d)], capsys)
    assert_one_line_error(code, err, "`train` results of an unknown configuration", "--force")
    assert snapshot(d) == before
    with pytest.raises(AssertionError, match="computing started"):
        main(TRAIN + ["--out", str(d), "--force"])


# --------------------------------------------------------------------------- item 8: --out problems
@pytest.mark.parametrize("args", [MERGE, EXPERIMENT, TRAIN], ids=["merge", "experiment", "train"])
def test_out_is_an_existing_file(tmp_path, capsys, no_compute, args):
    f = tmp_path / "results"
    f.write_bytes(b"precious")
    code, err = run_cli(args + ["--out", str(f)], capsys)
    assert_one_line_error(code, err, f"--out {f} is an existing file")
    assert f.read_bytes() == b"precious" and sorted(p.name for p in tmp_path.iterdir()) == ["results"]


@pytest.fixture()
def read_only(tmp_path, monkeypatch) -> Path:
    """A folder on which creating anything fails with EROFS (simulated: chmod does not stop root)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "existing").mkdir()
    real_open, real_mkdir = os.open, Path.mkdir

    def under(p) -> bool:
        return str(Path(p).absolute()).startswith(str(ro) + os.sep)

    def fake_open(path, flags, *a, **k):
        if under(path) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *a, **k)

    def fake_mkdir(self, *a, **k):
        if under(self) and not self.exists():
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *a, **k)
    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(Path, "mkdir", fake_mkdir)
    return ro


@pytest.mark.parametrize("args", [MERGE, EXPERIMENT, TRAIN], ids=["merge", "experiment", "train"])
def test_out_on_a_read_only_file_system(read_only, capsys, no_compute, args):
    before = snapshot(read_only)
    for out in (read_only / "new" / "deeper", read_only / "existing"):
        code, err = run_cli(args + ["--out", str(out)], capsys)
        assert_one_line_error(code, err, f"--out {out} cannot be written (read-only file system)")
    assert snapshot(read_only) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions (simulated above)")
def test_out_in_a_chmod_555_folder(tmp_path, capsys, no_compute):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code, err = run_cli(MERGE + ["--out", str(ro / "m")], capsys)
        assert_one_line_error(code, err, "cannot be written (permission denied)")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_a_failed_command_leaves_no_marker_or_folder(tmp_path):
    out = tmp_path / "a" / "b"
    with pytest.raises(RuntimeError), outdir.claim(out, "merge", {"x": 1}, ("model.zip",)):
        assert (out / outdir.MARKER).is_file() and (out / outdir.LOCK).is_file()
        raise RuntimeError("the command failed")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- item 8: checkpoint sidecars
@pytest.fixture()
def assets(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "assets"
    shutil.copytree(REPO / "assets" / "digits-2task", root / "digits-2task")
    monkeypatch.setenv("PAM_ASSETS_ROOT", str(root))
    monkeypatch.setenv("PAM_CACHE_ROOT", str(tmp_path / "cache"))
    return root / "digits-2task"


def _edit_sidecar(assets: Path, edit) -> Path:
    side = assets / "B.json"
    info = json.loads(side.read_text())
    text = edit(info)
    side.write_text(text if isinstance(text, str) else json.dumps(info))
    return side


@pytest.mark.parametrize("edit, needles", [
    (lambda info: "{not json", ["is not valid JSON", "line 1"]),
    (lambda info: info.pop("num_outputs"), ["lacks key(s) ['num_outputs']"]),
    (lambda info: info["hparams"].update(depth=3), ["unknown hparam(s) ['depth'] for lenet5", "width"]),
    (lambda info: info.update(in_channels="one"), ["in_channels must be a positive integer"]),
    (lambda info: "[1, 2]", ["must hold a JSON object, got list"]),
], ids=["invalid-json", "missing-key", "unknown-hparam", "bad-value", "not-an-object"])
def test_bad_checkpoint_sidecar(assets, capsys, edit, needles):
    side = _edit_sidecar(assets, edit)
    before = snapshot(assets.parent)
    code, err = run_cli(["regroup", "--json"], capsys)
    assert_one_line_error(code, err, f"checkpoint sidecar {side}", *needles)
    assert snapshot(assets.parent) == before and not (assets.parent.parent / "cache").exists()


def test_missing_sidecar(assets, capsys):
    (assets / "A.json").unlink()
    code, err = run_cli(["regroup", "--json"], capsys)
    assert_one_line_error(code, err, f"checkpoint sidecar {assets / 'A.json'} does not exist")


# --------------------------------------------------------------------------- item 9: non-finite weights
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_checkpoint_weights(assets, capsys, value):
    path = assets / "A.safetensors"
    state = load_file(str(path))
    state["blocks.fc1.0.weight"][3, 7] = value
    save_file(state, str(path))
    code, err = run_cli(["regroup", "--json"], capsys)
    kind = "1 NaN, 0 inf" if math.isnan(value) else "0 NaN, 1 inf"
    assert_one_line_error(code, err, "tensor 'blocks.fc1.0.weight' in the A.safetensors",
                          f"non-finite values ({kind})")


def test_non_finite_export_weights_are_rejected_with_the_tensor_name():
    nets = load_pretrained("digits-2task", ("A", "B"))
    from tests.helpers import random_grouping
    net = merge_networks(nets, ("A", "B"), random_grouping(nets, ("A", "B"), seed=0))
    name, param = next((n, p) for n, p in net.named_parameters() if p.dim() > 1)
    with torch.no_grad():
        param.view(-1)[0] = float("nan")
    blob = export.to_bytes(net)
    with pytest.raises(DataError, match=f"tensor '{name}' in the export has non-finite values"):
        export.load(blob)


# --------------------------------------------------------------------------- item 11: strict JSON
def _strict(text: str):
    def reject(token):
        raise ValueError(f"non-standard JSON token {token}")
    return json.loads(text, parse_constant=reject)


def test_regroup_alpha_inf_prints_strict_json(capsys):
    assert main(["regroup", "--alpha", "inf", "--json"]) == 0
    out = _strict(capsys.readouterr().out)
    assert out["alpha"] == "inf" and float(out["alpha"]) == math.inf
    assert all(layer["alpha"] == "inf" for layer in out["layers"])
    for layer in out["layers"]:  # every neuron is shareable at alpha = inf: the contract keys hold
        assert sum(layer["groups"].values()) == layer["width"] and 0 <= layer["sharing_ratio"] <= 1


# --------------------------------------------------------------------------- item 12: --override typos
@pytest.mark.parametrize("cmd", [["regroup", "--json"], MERGE + ["--out", "never-created"]],
                         ids=["regroup", "merge"])
def test_override_of_an_unknown_layer(capsys, no_compute, cmd):
    code, err = run_cli(cmd + ["--override", "nosuchlayer=0.1"], capsys)
    assert_one_line_error(code, err, "--override nosuchlayer=0.1: unknown layer 'nosuchlayer'",
                          "conv1, conv2, fc1, fc2")
    assert not Path("never-created").exists()


@pytest.mark.parametrize("item, needle", [
    ("conv1=abc", "--override 'conv1=abc': ALPHA must be a number of bits, got 'abc'"),
    ("conv1", "--override 'conv1': expected LAYER=ALPHA"),
    ("conv1=-1", "RegroupConfig.overrides[conv1]: alpha must be a number >= 0"),
])
def test_override_bad_value(capsys, no_compute, item, needle):
    code, err = run_cli(["regroup", "--override", item], capsys)
    assert_one_line_error(code, err, needle)


@pytest.mark.parametrize("cmd", ["experiment", "sweep"])
def test_bad_prune_lr_is_refused_before_anything_runs(tmp_path, capsys, no_compute, cmd):
    code, err = run_cli([cmd, "--quick", "--prune-lr", "0", "--out", str(tmp_path / "x")], capsys)
    assert_one_line_error(code, err, "ExperimentConfig.prune_lr: must be a finite number > 0, got 0.0")
    assert not (tmp_path / "x").exists()
