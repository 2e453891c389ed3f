import json
import zipfile

import pytest
import torch

from pam_explorer import export
from pam_explorer.cost.analytic import subset_costs
from pam_explorer.merge.build import merge_networks
from pam_explorer.zoo import build_model


def _mixed_net():
    torch.manual_seed(0)
    nets = [build_model("lenet5", 3, 1, 32, width=0.5).eval() for _ in range(2)]
    widths = {"conv1": 3, "conv2": 8, "fc1": 60, "fc2": 42}
    grouping = {}
    for layer, w in widths.items():
        ids = torch.randperm(2 * w).tolist()
        grouping[layer] = {("A",): tuple(ids[:w // 2]), ("B",): tuple(ids[w // 2:w]),
                           ("A", "B"): tuple(ids[w:])}
    return merge_networks(nets, ["A", "B"], grouping).eval()


def test_export_round_trip_reproduces_outputs(tmp_path):
    net = _mixed_net()
    net.groups["fc1"]["A+B"][0].weight.data.add_(0.1)  # a finetuned-looking change
    path = export.save(net, tmp_path / "model.zip", {"alpha": 0.05, "accuracy": {"A": 90.0}})
    again = export.load(path)
    x = torch.rand(5, 1, 32, 32)
    for tasks in (["A"], ["B"], ["A", "B"]):
        out, ref = again(x, tasks=tasks), net(x, tasks=tasks)
        for t in tasks:
            # bit for bit: the same weights through the same forward on the same machine
            torch.testing.assert_close(out[t], ref[t], rtol=0, atol=0)
    manifest = export.read_manifest(path)
    assert manifest["alpha"] == 0.05 and manifest["tasks"] == ["A", "B"]
    assert manifest["flops"] == {s: c["flops"] for s, c in subset_costs(net).items()}
    assert manifest["group_widths"] == net.group_widths()
    assert manifest["connectivity"]["fc1"]["A"] == ["A", "A+B"]


def test_export_contains_no_pickle_and_loads_from_bytes():
    data = export.to_bytes(_mixed_net())
    with zipfile.ZipFile(__import__("io").BytesIO(data)) as zf:
        assert sorted(zf.namelist()) == ["manifest.json", "weights.safetensors"]
        json.loads(zf.read("manifest.json"))
    assert isinstance(export.load(data), torch.nn.Module)


def test_bad_files_get_clear_errors(tmp_path):
    bad = tmp_path / "x.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a zip"):
        export.load(bad)
    other = tmp_path / "y.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(ValueError, match="manifest.json"):
        export.load(other)
