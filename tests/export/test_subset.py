"""Per-subset export (export.subset): each file reproduces the merged net's outputs for its subset
when run by its own runtime (onnxruntime, torch.export.load, a rebuild from the safetensors header),
and its manifest says what the file is. References: net(x, subset), hashlib, the preset's labels."""
from __future__ import annotations

import hashlib
import json
import zipfile

import pytest
import torch

from pam_explorer import export
from pam_explorer.cost.analytic import fused_costs, subset_costs
from pam_explorer.export.subset import MANIFEST_KEY, read_embedded_manifest
from pam_explorer.merge.build import merge_networks
from pam_explorer.zoo import build_model
from tests.helpers import random_grouping

SOURCE = {"preset": "digits-2task", "scheme": "PAM", "alpha": 0.5}


def tiny_net(seed: int = 0):
    """A merged pair of half-width LeNet-5s (5 labels each, like digits-2task) with random groups."""
    torch.manual_seed(seed)
    nets = [build_model("lenet5", 5, 1, 32, width=0.5).eval() for _ in range(2)]
    return merge_networks(nets, ["A", "B"], random_grouping(nets, ["A", "B"], seed)).eval()


def _assert_outputs(got, net, tasks, x):
    ref = net(x, tasks)
    assert len(got) == len(tasks)
    for y, t in zip(got, tasks):
        torch.testing.assert_close(torch.as_tensor(y), ref[t], rtol=0, atol=1e-5)


def test_safetensors_export_rebuilds_and_describes_itself(tmp_path):
    net = tiny_net()
    path, meta = export.save_subset(net, "A+B", "safetensors", tmp_path / "ab.safetensors", SOURCE)
    data = path.read_bytes()
    manifest = json.loads(meta.read_text())
    assert manifest["sha256"] == hashlib.sha256(data).hexdigest() and manifest["bytes"] == len(data)
    embedded = read_embedded_manifest(data)
    assert embedded == {k: v for k, v in manifest.items() if k not in ("sha256", "bytes", "file")}
    assert manifest["format"] == export.SUBSET_FORMAT and manifest["tasks"] == ["A", "B"]
    assert manifest["labels"]["B"] == [f"digit {d}" for d in range(5, 10)]
    assert [o["name"] for o in manifest["outputs"]] == ["logits_A", "logits_B"]
    assert manifest["input"]["shape"] == ["batch", 1, 32, 32] and manifest["input"]["value_range"] == [0, 1]
    assert manifest["flops"] == fused_costs(net.geometry, net.group_widths())["A+B"]["flops"]
    assert manifest["grouped_flops"] == subset_costs(net)["A+B"]["flops"]
    assert manifest["source"]["alpha"] == 0.5
    x = torch.rand(3, 1, 32, 32)
    _assert_outputs(export.load_fused(path)(x), net, ["A", "B"], x)
    exact, m2 = export.subset_model_bytes(net, "B", "safetensors", layout="exact")
    assert m2["flops"] == subset_costs(net)["B"]["flops"] and m2["labels"]["B"][0] == "label 0"
    _assert_outputs(export.load_fused(exact)(x), net, ["B"], x)


def test_torch_export_program_runs_and_holds_no_pickle(tmp_path):
    net = tiny_net(1)
    path, _ = export.save_subset(net, "A", "torch-export", tmp_path / "a.pt2", SOURCE)
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert [zf.getinfo(n).file_size for n in names if "sample_inputs" in n] == [0]
        for n in names:  # every tensor is stored as raw bytes, none as a pickle
            if n.endswith("_config.json"):
                assert all(not e["use_pickle"] for e in json.loads(zf.read(n))["config"].values())
    extra = {f"{MANIFEST_KEY}.json": ""}
    program = torch.export.load(path, extra_files=extra)
    assert json.loads(extra[f"{MANIFEST_KEY}.json"])["subset"] == "A"
    for n in (1, 4):  # the batch dimension is dynamic
        x = torch.rand(n, 1, 32, 32)
        _assert_outputs(program.module()(x), net, ["A"], x)


def test_onnx_matches_pytorch_in_onnxruntime(tmp_path):
    onnx = pytest.importorskip("onnx")
    net = tiny_net(2)
    path, meta = export.save_subset(net, "A+B", "onnx", tmp_path / "ab.onnx", SOURCE)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    opset = max(o.version for o in model.opset_import if o.domain == "")
    assert json.loads(meta.read_text())["opset"] == opset
    embedded = {p.key: p.value for p in model.metadata_props}[MANIFEST_KEY]
    assert json.loads(embedded)["outputs"][1]["labels"][0] == "digit 5"
    try:
        import onnxruntime as ort
    except ImportError:
        pytest.skip("onnxruntime is not installed: the graph was checked with onnx.checker only")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["logits_A", "logits_B"]
    for n in (1, 6):
        x = torch.rand(n, 1, 32, 32)
        _assert_outputs(session.run(None, {"image": x.numpy()}), net, ["A", "B"], x)
