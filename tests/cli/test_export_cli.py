"""`export` on the command line: per-subset exports and every bad input (issue 13 items 3, 8, 10;
issue 15): a one-line error, exit status 2, and the folders byte-identical afterwards."""
from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from pam_explorer import export
from pam_explorer.cli import main
from tests.export.test_subset import SOURCE, tiny_net


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    export.save(tiny_net(), run / "model.zip", SOURCE)
    return run


def snapshot(*folders: Path) -> dict[str, bytes]:
    """Every file under the folders, by path, with its bytes (folders included as b'<dir>')."""
    out = {}
    for folder in folders:
        for p in sorted(folder.rglob("*")):
            out[str(p)] = b"<dir>" if p.is_dir() else p.read_bytes()
    return out


def refused(argv: list[str], capsys, *folders: Path, match: str) -> str:
    """Run the CLI, expect exit 2 with a one-line error containing ``match`` and no change on disk."""
    before = snapshot(*folders)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and match in err, err
    assert snapshot(*folders) == before
    return err


def test_subset_export_json_and_refusal_without_force(run_dir, tmp_path, capsys):
    out = tmp_path / "out" / "a.safetensors"  # a missing parent folder is created
    assert main(["export", "--run", str(run_dir), "--subset", "A", "--format", "safetensors",
                 "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["out"] == str(out) and Path(result["manifest"]).name == "a.safetensors.json"
    assert result["flops"] >= result["grouped_flops"] > 0
    x = torch.rand(2, 1, 32, 32)
    torch.testing.assert_close(export.load_fused(out)(x)[0], tiny_net()(x, ["A"])["A"], rtol=0, atol=1e-5)
    argv = ["export", "--run", str(run_dir), "--subset", "B", "--format", "safetensors", "--out", str(out)]
    refused(argv, capsys, tmp_path, match="exists; choose another file or pass --force")
    out.unlink()  # the sidecar alone still blocks
    refused(argv, capsys, tmp_path, match="a.safetensors.json exists")
    assert main(argv + ["--force"]) == 0
    assert json.loads(Path(str(out) + ".json").read_text())["subset"] == "B"


def test_merged_export_refuses_existing_file_and_directory(run_dir, tmp_path, capsys):
    out = tmp_path / "m.zip"
    out.write_bytes(b"keep me")
    refused(["export", "--run", str(run_dir), "--out", str(out)], capsys, tmp_path, run_dir, match="exists")
    refused(["export", "--run", str(run_dir), "--out", str(tmp_path)], capsys, tmp_path,
            match="is a directory")
    refused(["export", "--run", str(run_dir), "--out", str(tmp_path), "--force"], capsys, tmp_path,
            match="is a directory")
    assert main(["export", "--run", str(run_dir), "--out", str(out), "--force"]) == 0
    assert export.read_manifest(out)["scheme"] == "PAM"
    refused(["export", "--run", str(run_dir), "--out", str(tmp_path / "x.zip"), "--format", "onnx"], capsys,
            tmp_path, match="--format and --layout need --subset")


def test_unknown_subset_and_missing_package(run_dir, tmp_path, capsys, monkeypatch):
    base = ["export", "--run", str(run_dir), "--out", str(tmp_path / "m.onnx")]
    refused(base + ["--subset", "B+A"], capsys, tmp_path, match="valid subsets: A, B, A+B")
    refused(base + ["--subset", "C", "--format", "safetensors"], capsys, tmp_path,
            match="unknown task subset 'C'")
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript now fails
    refused(base + ["--subset", "A"], capsys, tmp_path, match="pip install onnxscript")


def test_failed_write_leaves_nothing_behind(run_dir, tmp_path, capsys, monkeypatch):
    import pam_explorer.core.io as core_io

    def fail(*_a):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(core_io.os, "replace", fail)
    err = refused(["export", "--run", str(run_dir), "--subset", "A+B", "--format", "safetensors",
                   "--out", str(tmp_path / "new" / "deep" / "ab.safetensors")], capsys, tmp_path,
                  match="cannot write")
    assert "No space left" in err and not (tmp_path / "new").exists()
    refused(["export", "--run", str(run_dir), "--out", str(tmp_path / "m.zip")], capsys, tmp_path,
            match="cannot write")


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _corrupt_cases(good: Path) -> dict[str, tuple[bytes, str]]:
    with zipfile.ZipFile(good) as zf:
        manifest, weights = json.loads(zf.read("manifest.json")), zf.read("weights.safetensors")
    no_geo = {k: v for k, v in manifest.items() if k != "geometry"}
    bad_geo = {**manifest, "geometry": {"layers": "x"}}
    return {
        "weights not safetensors": (_zip({"manifest.json": json.dumps(manifest).encode(),
                                          "weights.safetensors": b"\x00" * 64}), "not a safetensors file"),
        "manifest a list": (_zip({"manifest.json": b"[1, 2]", "weights.safetensors": weights}),
                            "holds a JSON list"),
        "manifest without geometry": (_zip({"manifest.json": json.dumps(no_geo).encode(),
                                            "weights.safetensors": weights}), "lacks ['geometry']"),
        "malformed geometry": (_zip({"manifest.json": json.dumps(bad_geo).encode(),
                                     "weights.safetensors": weights}), "manifest.json"),
        "weights bomb": (_zip({"manifest.json": json.dumps(manifest).encode(),
                               "weights.safetensors": b"\x00" * (24 << 20)}), "more than the"),
        "manifest bomb": (_zip({"manifest.json": b" " * (17 << 20), "weights.safetensors": weights}),
                          "more than the"),
        "not a zip": (b"PK\x03\x04 not really", "not a zip archive"),
    }


def test_corrupt_exports_are_one_line_errors(run_dir, tmp_path, capsys):
    for name, (data, match) in _corrupt_cases(run_dir / "model.zip").items():
        run = tmp_path / name.replace(" ", "_")
        run.mkdir()
        (run / "model.zip").write_bytes(data)
        assert len(data) < 200_000, name  # the bombs are small zips
        for extra in ([], ["--subset", "A", "--format", "safetensors"]):
            refused(["export", "--run", str(run), "--out", str(tmp_path / "o" / "x.bin")] + extra, capsys,
                    tmp_path, match=match)
