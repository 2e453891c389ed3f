"""Bad input through the CLI, round 2 (issue 25, items 9-13): overrides checked against the chosen
architecture, seeds and devices bounded, sidecar and export sizes capped before allocation,
workers clamped. Each case failed before the fix (accepted and ignored, a traceback, a folder
left behind, memory allocated or hundreds of processes started)."""
from __future__ import annotations

import io
import json
import logging
import zipfile
from pathlib import Path

import pytest

from pam_explorer import export
from pam_explorer.cli import main
from pam_explorer.core.errors import ExportError
from pam_explorer.export import archive
from pam_explorer.merge.build import merge_networks
from pam_explorer.runs import executors, merge_run, training_run
from pam_explorer.runs import experiment as experiment_mod
from pam_explorer.zoo.pretrained import load_pretrained
from tests.cli.test_bad_input import REPO, assert_one_line_error, run_cli, snapshot
from tests.helpers import random_grouping


@pytest.fixture()
def no_compute(monkeypatch, tmp_path):
    """Every command fails the test if it reaches its computing; a private cache root."""
    def forbidden(*_a, **_k):
        raise AssertionError("computing started before the bad input was rejected")
    monkeypatch.setattr(merge_run, "_merge", forbidden)
    monkeypatch.setattr(training_run, "_train", forbidden)
    monkeypatch.setattr(experiment_mod, "_run", forbidden)
    monkeypatch.setenv("PAM_CACHE_ROOT", str(tmp_path / "cache"))


# --------------------------------------------------------------------------- item 9
RESNET = ["regroup", "--preset", "mnist-2task", "--arch", "resnet18", "--json"]


def test_an_override_is_checked_against_the_chosen_architecture(capsys, no_compute):
    code, err = run_cli(RESNET + ["--override", "conv1=0.1"], capsys)  # a LeNet layer, not a ResNet one
    assert_one_line_error(code, err, "--override conv1=0.1: unknown layer 'conv1'", "resnet18",
                          "layer1, layer1_0_conv1")


def test_a_resnet_layer_override_is_applied(capsys, no_compute):
    """Reference: the groups of the whole network regrouped at that alpha."""
    def groups(*extra: str) -> dict:
        assert main(RESNET + list(extra)) == 0
        return {row["name"]: row["groups"] for row in json.loads(capsys.readouterr().out)["layers"]}
    default, everywhere = groups("--alpha", "0.05"), groups("--alpha", "0.001")
    assert default["layer1"] != everywhere["layer1"]  # the case tells an applied override apart
    overridden = groups("--alpha", "0.05", "--override", "layer1=0.001")
    assert overridden == {**default, "layer1": everywhere["layer1"]}


# --------------------------------------------------------------------------- item 10
@pytest.mark.parametrize("args, needle", [
    (["experiment", "--quick", "--seed", "99999999999999999999"], "ExperimentConfig.seeds: must be distinct "
                                                                  "integers in [0, 2**32)"),
    (["experiment", "--quick", "--seeds", "0,4294967296"], "ExperimentConfig.seeds"),
    (["sweep", "--quick", "--alphas", "0.1", "--seeds", "4294967296"], "ExperimentConfig.seeds"),
    (["train", "--preset", "digits-2task", "--seed", "4294967296"], "TrainConfig.seed: must be an integer "
                                                                    "in [0, 2**32)"),
], ids=["experiment-huge", "experiment-2**32", "sweep", "train"])
def test_seeds_are_bounded(tmp_path, capsys, no_compute, args, needle):
    code, err = run_cli(args + ["--out", str(tmp_path / "x")], capsys)
    assert_one_line_error(code, err, needle)
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------- item 11
@pytest.mark.parametrize("device", ["tpu", "meta", "mps", "cuda:x", ""])
@pytest.mark.parametrize("cmd", [
    ["experiment", "--quick"], ["sweep", "--quick", "--alphas", "0.1"], ["merge", "--samples", "64"],
    ["train", "--preset", "digits-2task", "--epochs", "1"], ["bench", "greedy", "--neurons", "8"]],
    ids=["experiment", "sweep", "merge", "train", "bench"])
def test_devices_other_than_auto_cpu_cuda_are_one_line_errors(tmp_path, capsys, no_compute, cmd, device):
    out = [] if cmd[0] == "bench" else ["--out", str(tmp_path / "x")]
    code, err = run_cli(cmd + ["--device", device] + out, capsys)
    assert_one_line_error(code, err, repr(device), "cuda")
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------- item 12
@pytest.fixture()
def assets(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "assets"
    import shutil
    shutil.copytree(REPO / "assets" / "digits-2task", root / "digits-2task")
    monkeypatch.setenv("PAM_ASSETS_ROOT", str(root))
    monkeypatch.setenv("PAM_CACHE_ROOT", str(tmp_path / "cache"))
    return root / "digits-2task"


@pytest.mark.parametrize("edit, needles", [
    ({"num_outputs": 10 ** 9}, ["num_outputs must be a positive integer (at most 100,000), got 1000000000"]),
    ({"image_size": 10 ** 6}, ["image_size must be a positive integer (at most 8,192)"]),
    ({"num_outputs": 90_000}, ["B.safetensors", "has shape (5, 84)", "expects (90000, 84)"]),
    ({"hparams": {"width": 300.0}}, ["B.safetensors", "has shape"]),
], ids=["outputs-1e9", "image-1e6", "outputs-90k", "width-300"])
def test_sidecar_sizes_are_checked_before_anything_is_allocated(assets, capsys, monkeypatch, edit, needles):
    import torch.nn as nn
    side = assets / "B.json"
    side.write_text(json.dumps({**json.loads(side.read_text()), **edit}))
    real_init = nn.Linear.__init__

    def small_only(self, n_in, n_out, *a, **k):  # a real (not meta) layer of the declared size
        if k.get("device") is None and n_in * n_out > 10 ** 7:
            import torch
            if torch.get_default_device().type != "meta":
                raise AssertionError(f"allocated a {n_out} x {n_in} layer before checking the weights")
        real_init(self, n_in, n_out, *a, **k)
    monkeypatch.setattr(nn.Linear, "__init__", small_only)
    before = snapshot(assets.parent)
    code, err = run_cli(["regroup", "--json"], capsys)
    assert_one_line_error(code, err, *needles)
    assert snapshot(assets.parent) == before


def _manifest_of_size(fc_width: int) -> tuple[dict, bytes]:
    """A real LeNet export's manifest with fc1 and fc2 widened to ``fc_width`` shared neurons
    (about fc_width**2 parameters), and its real weights."""
    nets = load_pretrained("digits-2task", ("A", "B"))
    blob = export.to_bytes(merge_networks(nets, ("A", "B"), random_grouping(nets, ("A", "B"), seed=0)))
    zf = zipfile.ZipFile(io.BytesIO(blob))
    manifest = json.loads(zf.read(archive.MANIFEST))
    for layer in ("fc1", "fc2"):
        manifest["group_widths"][layer] = {"A": 0, "B": 0, "A+B": fc_width}
    return manifest, zf.read(archive.WEIGHTS)


def test_an_export_declaring_ten_resnet50s_is_refused_before_its_weights_are_read(monkeypatch):
    manifest, weights = _manifest_of_size(16_000)  # 256 M numbers: ten full-width ResNet-50s
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(archive.MANIFEST, json.dumps(manifest))
        zf.writestr(archive.WEIGHTS, weights)
    real_read = archive._read_member

    def manifest_only(zf, name, cap):
        assert name == archive.MANIFEST, f"read {name} (up to {cap:,} bytes) of a network over the cap"
        return real_read(zf, name, cap)
    monkeypatch.setattr(archive, "_read_member", manifest_only)
    with pytest.raises(ExportError, match=r"^manifest.json declares a network of 2[0-9]{2},[0-9,]+ numbers, "
                                          r"more than the 50,000,000 an export may hold"):
        export.load(buf.getvalue())


def test_the_export_caps_admit_a_full_width_resnet50():
    manifest, _ = _manifest_of_size(4_900)  # about 25.6 M numbers, ResNet-50's count
    geometry, widths, _ = archive._structure(manifest)
    least, cap = archive._declared_size(geometry, widths)
    assert 25_000_000 < least < 26_500_000
    assert 4 * least < cap <= 8 * least + 100_000  # float32 weights fit, 8 bytes per number at most


# --------------------------------------------------------------------------- item 13
def test_workers_are_clamped_to_four_times_the_cores(monkeypatch, caplog):
    monkeypatch.setattr(executors, "_cores", lambda: 2)
    with caplog.at_level(logging.WARNING):
        assert [executors.clamp_workers(n) for n in (999, 8, 3)] == [8, 8, 3]
    assert caplog.text.count("--workers 999 is more than 4 x the 2 cores here: using 8") == 1
    assert executors.LocalExecutor(999, 1, Path("logs")).capacity == 8


def test_a_sweep_with_no_jobs_starts_no_workers(tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(executors._Worker, "__init__", lambda self, *a: started.append(a))
    pool = executors.LocalExecutor(999, 1, tmp_path / "logs")
    pool.warm()  # what the sweep calls before it knows its jobs
    pool.close()
    assert started == []
