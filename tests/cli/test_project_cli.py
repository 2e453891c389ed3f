"""Issue 28 through the command line: a project of the user's own networks and data.

The fixture project (tests/project_fixture.py: 240 MNIST 2x2-grid PNGs, a CSV, LeNet-5s of width
0.1) runs train, regroup, merge, experiment --quick and export --subset A --format onnx end to
end; a project whose content changed is another run; bad projects are one error line and leave
no run folder; a preset written out with ``project --preset`` gives the preset's groups.
"""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from pam_explorer.cli import main
from pam_explorer.core.config import MIConfig, RegroupConfig
from pam_explorer.data import load_preset_data, read_project
from pam_explorer.graph.layer_map import layer_map
from pam_explorer.graph.networks import project_networks
from pam_explorer.regroup.explorer import Explorer
from pam_explorer.regroup.project import Project
from tests.project_fixture import NAMES, TOML, make_project, rewrite_csv, write_toml


@pytest.fixture()
def roots(tmp_path, monkeypatch):
    monkeypatch.setenv("PAM_CACHE_ROOT", str(tmp_path / "cache"))  # computed here, never a stale hit
    monkeypatch.setenv("PAM_RUNS_ROOT", str(tmp_path / "runs"))
    return tmp_path


def run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err.strip()


def test_project_end_to_end(roots, capsys):
    """train -> regroup -> merge -> experiment --quick -> export onnx, all on --project. About 40 s
    on the shared 2-core machine (the quick experiment's three schemes are most of it)."""
    t0 = time.monotonic()
    toml = make_project(roots / "proj")
    p = str(toml)
    code, _, err = run(["regroup", "--project", p], capsys)  # no networks yet: how to create them
    assert code == 2 and err.startswith("error: ") and f"train --project {toml}" in err

    code, out, err = run(["train", "--project", p, "--epochs", "2"], capsys)
    assert code == 0 and "estimate: about" in err and "160 training pictures" in err
    nets = {t: (roots / "proj" / "nets" / f"{t}.safetensors") for t in "AB"}
    before = {t: f.read_bytes() for t, f in nets.items()}
    code, out, _ = run(["train", "--project", p, "--epochs", "1"], capsys)  # never overwrites
    assert code == 0 and out.count("has its network already") == 2
    assert {t: f.read_bytes() for t, f in nets.items()} == before

    code, out, _ = run(["regroup", "--project", p, "--alpha", "0.05", "--json"], capsys)
    report = json.loads(out)
    loaded = project_networks(read_project(toml))
    widths = {a.name: a.width + b.width for a, b in zip(layer_map(loaded[0]), layer_map(loaded[1]))}
    assert {l["name"]: l["width"] for l in report["layers"]} == widths
    assert report["preset"] == p

    code, out, _ = run(["merge", "--project", p, "--alpha", "0.05", "--finetune-epochs", "1",
                        "--out", str(roots / "m"), "--json"], capsys)
    assert code == 0 and json.loads(out)["preset"] == p and (roots / "m" / "model.zip").is_file()

    exp = roots / "e"
    code, _, err = run(["experiment", "--project", p, "--quick", "--out", str(exp)], capsys)
    assert code == 0, err
    assert err.splitlines()[0].startswith("estimate: about")
    report = json.loads((exp / "report.json").read_text())
    assert report["preset"] == p and set(report["schemes"]) == {"B1", "B2", "PAM"}
    config = json.loads((exp / "config.json").read_text())
    assert config["project_key"] == read_project(toml).content_key()

    onnx = roots / "a.onnx"
    code, out, err = run(["export", "--run", str(exp), "--subset", "A", "--format", "onnx",
                          "--out", str(onnx), "--json"], capsys)
    assert code == 0, err
    manifest = json.loads((roots / "a.onnx.json").read_text())
    assert manifest["labels"] == {"A": list(NAMES[:5])} and manifest["source"]["project"] == "fixture"
    code, _, err = run(["export", "--run", str(roots / "m"), "--subset", "B", "--format", "onnx",
                        "--out", str(roots / "m.onnx")], capsys)  # a merge run's manifest names them too
    assert code == 0, err
    assert json.loads((roots / "m.onnx.json").read_text())["labels"] == {"B": list(NAMES[5:])}
    print(f"project end to end: {time.monotonic() - t0:.1f} s")


def test_a_changed_project_is_another_run(roots, capsys):
    toml = make_project(roots / "proj", nets=True)
    exp = roots / "e"
    args = ["experiment", "--project", str(toml), "--quick", "--schemes", "B1", "--out", str(exp)]
    assert run(args, capsys)[0] == 0
    before = sorted((f.name, f.stat().st_mtime_ns) for f in exp.rglob("*") if f.is_file())
    rewrite_csv(toml.parent, lambda rows: rows[1].__setitem__(2, "1" if rows[1][2] == "0" else "0"))
    code, _, err = run(args, capsys)
    assert code == 2 and "results of another configuration" in err and "project_key" in err, err
    assert "\n" not in err
    assert sorted((f.name, f.stat().st_mtime_ns) for f in exp.rglob("*") if f.is_file()) == before


@pytest.mark.parametrize("edit,needle", [
    (lambda root: (root / "labels.csv").unlink(), "labels.csv does not exist"),
    (lambda root: rewrite_csv(root, lambda rows: rows[4].__setitem__(3, "yes")),
     "labels.csv row 4 (line 5), column 'one': 'yes' is not 0 or 1"),
    (lambda root: write_toml(root, TOML.split("[tasks.B]")[0]), "pam.toml: 1 task(s)"),
    (lambda root: (root / "nets" / "B.safetensors").write_bytes(b"junk"), "tasks.B.net (nets/B.safetensors)"),
], ids=["missing-csv", "non-binary", "one-task", "bad-network"])
@pytest.mark.parametrize("command", ["experiment", "merge", "sweep"])
def test_bad_project_is_one_line_and_no_run_folder(roots, capsys, edit, needle, command):
    toml = make_project(roots / "proj", nets=True)
    edit(toml.parent)
    out = roots / "out"
    extra = {"experiment": ["--quick"], "merge": [], "sweep": ["--quick", "--alphas", "0.1", "--seeds", "0"]}
    code, _, err = run([command, "--project", str(toml), *extra[command], "--out", str(out)], capsys)
    assert code == 2 and err.startswith("error: ") and "\n" not in err and needle in err, err
    assert not out.exists()


def test_preset_written_as_a_project_gives_the_same_groups(roots, capsys):
    """About 20 s: 11,000 pictures written to a compressed NPZ and read back, and two sets of MI
    trajectories (small N)."""
    out = roots / "digits"
    code, _, err = run(["project", "--preset", "digits-2task", "--out", str(out)], capsys)
    assert code == 0, err
    splits, again = load_preset_data("digits-2task"), load_preset_data(str(out / "pam.toml"))
    for s in ("train", "val", "test"):
        assert torch.equal(splits[s].images, again[s].images)
        assert torch.equal(splits[s].labels, again[s].labels)
    mi = MIConfig(n_samples=48, null_perms=2)  # small: this compares the two paths, not the estimator
    preset = Explorer.open("digits-2task", mi, use_cache=False)
    project = Project.open(out / "pam.toml", mi, use_cache=False)
    assert project.relatedness_bits == pytest.approx(preset.relatedness_bits)
    for alpha in (0.0, 0.02, 0.05, 0.2, 1.0):
        cfg = RegroupConfig(alpha=alpha)
        assert project.groups(cfg) == preset.groups(cfg), alpha
    assert np.load(out / "data.npz")["label_names"].tolist()[:2] == ["digit 0", "digit 1"]


def test_arch_does_not_apply_to_a_project(roots, capsys):
    toml = make_project(roots / "proj", nets=True)
    code, _, err = run(["regroup", "--project", str(toml), "--arch", "resnet18"], capsys)
    assert code == 2 and "--arch resnet18 does not apply to --project" in err
    with pytest.raises(SystemExit):  # --preset and --project together: argparse refuses
        main(["regroup", "--project", str(toml), "--preset", "digits-2task"])
