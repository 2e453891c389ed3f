"""Export/reload of merged residual nets (reference: the exported net's own outputs); chain
exports keep format 1 and a format that does not match the geometry is refused. Per-subset
exports of residual nets (format pam-explorer-subset/2): reference net(x, subset)."""
import io
import json
import zipfile

import pytest
import torch
from safetensors.torch import load as st_load
from torch.testing import assert_close

from pam_explorer import export
from pam_explorer.core.errors import ExportError
from pam_explorer.export.subset import read_embedded_manifest
from pam_explorer.merge.build import from_single, merge_networks
from pam_explorer.merge.fused_spec import build
from pam_explorer.zoo import build_model
from tests.helpers import random_grouping, tiny_resnets


def test_round_trip_is_exact_and_records_the_kind(tmp_path):
    nets = tiny_resnets(3)
    net = merge_networks(nets, "ABC", random_grouping(nets, "ABC", 4, empty=("B", "C"))).eval()
    net.remove_neurons("layer2", "A+B+C", [0, 2])
    path = export.save(net, tmp_path / "m.zip")
    manifest = export.read_manifest(path)
    assert (manifest["format"], manifest["kind"]) == (export.FORMATS["residual"], "residual")
    assert manifest["connectivity"]["layer2_0_downsample"]["A"] == net.reads("layer2_0_downsample", "A")
    back = export.load(path)
    assert back.provenance_map() == net.provenance_map() and back.group_widths() == net.group_widths()
    x = torch.randn(2, 1, 16, 16)
    for t, out in net(x).items():
        assert_close(back(x)[t], out)


def test_chain_exports_keep_format_one_and_formats_must_match(tmp_path):
    chain = from_single(build_model("lenet5", 2), "A")
    assert export.read_manifest(export.to_bytes(chain))["format"] == export.FORMAT == "pam-explorer-merged/1"
    blob = export.to_bytes(from_single(tiny_resnets(1)[0], "A"))
    src, dst = zipfile.ZipFile(io.BytesIO(blob)), tmp_path / "lie.zip"
    manifest = json.loads(src.read(export.MANIFEST))
    manifest["format"] = export.FORMAT  # a residual geometry claimed as format 1
    with zipfile.ZipFile(dst, "w") as zf:
        zf.writestr(export.MANIFEST, json.dumps(manifest))
        zf.writestr(export.WEIGHTS, src.read(export.WEIGHTS))
    with pytest.raises(ExportError, match="does not hold a residual network"):
        export.load(dst)


# --------------------------------------------------------------------------- per-subset export
def _pruned_net(size: int = 8):
    nets = tiny_resnets(2, seed=3, size=size)
    net = merge_networks(nets, "AB", random_grouping(nets, "AB", 5)).eval()
    net.remove_neurons("layer2", "A+B", [0, 2])
    return net


def test_residual_subset_safetensors_rebuilds_with_its_wiring(tmp_path):
    """Reference: net(x, subset) of the merged net; the format is version 2, the chain's stays 1."""
    net = _pruned_net()
    path, meta = export.save_subset(net, "B", "safetensors", tmp_path / "b.safetensors")
    manifest = json.loads(meta.read_text())
    assert manifest["format"] == export.SUBSET_FORMATS["residual"] != export.SUBSET_FORMAT
    layers = manifest["architecture"]["layers"]
    names = [d["name"] for d in layers]
    conv2 = layers[names.index("layer2_0_conv2")]
    want = (names.index("layer2_0_conv1"), names.index("layer2_0_downsample"))
    assert (conv2["source"], conv2["add"]) == want
    assert [p[0] for p in conv2["post"]] == ["ReLU"] and layers[0]["source"] is None
    x = torch.rand(4, 1, 8, 8)
    for layout in ("dense", "exact"):
        data, _ = export.subset_model_bytes(net, "B", "safetensors", layout=layout)
        assert_close(export.load_fused(data)(x)[0], net(x, ["B"])["B"], rtol=0, atol=1e-5)
    assert_close(export.load_fused(path)(x)[0], net(x, ["B"])["B"], rtol=0, atol=1e-5)


def test_residual_subset_architecture_with_a_forward_reference_is_refused():
    data, _ = export.subset_model_bytes(_pruned_net(), "A", "safetensors")
    manifest = read_embedded_manifest(data)
    manifest["architecture"]["layers"][1]["add"] = 5  # a layer that runs later
    with pytest.raises(ExportError, match="malformed.*earlier"):
        build(manifest["architecture"], st_load(data), ["A"])


def test_residual_subset_onnx_matches_pytorch(tmp_path):
    """onnxruntime's outputs (batch 1 and 5: the batch is dynamic) equal net(x, subset); without
    onnxruntime only onnx.checker runs. The dynamo exporter traces through torch.export."""
    onnx = pytest.importorskip("onnx")
    net = _pruned_net()
    path, meta = export.save_subset(net, "A+B", "onnx", tmp_path / "ab.onnx")
    onnx.checker.check_model(onnx.load(str(path)))
    assert json.loads(meta.read_text())["format"] == export.SUBSET_FORMATS["residual"]
    try:
        import onnxruntime as ort
    except ImportError:
        pytest.skip("onnxruntime is not installed: the graph was checked with onnx.checker only")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 5):
        x = torch.rand(n, 1, 8, 8)
        ref = net(x, ["A", "B"])
        for y, t in zip(session.run(None, {"image": x.numpy()}), "AB"):
            assert_close(torch.as_tensor(y), ref[t], rtol=0, atol=1e-5)
