"""The export page's per-subset export and grouped-vs-fused latency, through AppTest. References:
the merged model the page serves (export.load of its zip) run on the same images."""
from __future__ import annotations

import pytest
import torch
from streamlit.testing.v1 import AppTest

from pam_explorer import export
from tests.ui.apptest import APP, DEFAULT_ALPHA


def merged_flops(net) -> dict:
    from pam_explorer.cost.analytic import subset_costs
    return {s: c["flops"] for s, c in subset_costs(net).items()}


@pytest.fixture()
def runs_root(tmp_path, monkeypatch):
    monkeypatch.setenv("PAM_RUNS_ROOT", str(tmp_path / "runs"))
    return tmp_path / "runs"


def test_subset_export_and_fused_latency(runs_root):
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("ui/page_export.py").run()
    assert not at.exception
    merged = export.load(at.session_state["export_bytes"])
    at.selectbox(key="subset_explorer").set_value("A").run()
    at.radio(key="format_explorer").set_value("safetensors").run()
    at.button(key="build_explorer").click().run()
    assert not at.exception and not at.error
    (_, subset, fmt), blob, manifest = at.session_state["subset_file_explorer"]
    assert (subset, fmt, manifest["subset"]) == ("A", "safetensors", "A")
    assert manifest["file"] == f"pam-digits-2task-merged-alpha{DEFAULT_ALPHA:g}-A.safetensors"  # its origin
    assert manifest["labels"]["A"][0] == "digit 0" and manifest["source"]["preset"] == "digits-2task"
    x = torch.rand(4, 1, 32, 32)
    torch.testing.assert_close(export.load_fused(blob)(x)[0], merged(x, ["A"])["A"], rtol=0, atol=1e-5)
    assert {b.proto.label for b in at.get("download_button")} >= {f"Download {manifest['file']}",
                                                                   "Download its manifest (.json)"}
    at.radio(key="format_explorer").set_value("torch-export").run()  # another file: the old one is hidden
    assert f"Download {manifest['file']}" not in {b.proto.label for b in at.get("download_button")}
    at.button(key="measure_latency").click().run()
    assert not at.exception
    lat = at.dataframe[-1].value
    assert list(lat.index) == ["A", "B", "A+B"]
    assert {"grouped ms (cpu, batch 1)", "fused ms (cpu, batch 1)"} <= set(lat.columns)
    assert (lat > 0).all().all()
    costs = at.dataframe[1].value  # the merged model's cost table: canonical order, separators
    assert list(costs.index) == ["A", "B", "A+B"]
    shown = costs.loc["A+B", "FLOPs"]
    assert shown == f"{merged_flops(merged)['A+B']:,}" and "," in shown
