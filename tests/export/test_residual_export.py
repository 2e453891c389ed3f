"""Export/reload of merged residual nets (reference: the exported net's own outputs); chain
exports keep format 1 and a format that does not match the geometry is refused."""
import io
import json
import zipfile

import pytest
import torch
from torch.testing import assert_close

from pam_explorer import export
from pam_explorer.core.errors import ExportError
from pam_explorer.merge.build import from_single, merge_networks
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
