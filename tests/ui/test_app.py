"""The dashboard through streamlit.testing.v1.AppTest: pages render; the slider drives the figures
and numbers exactly as the backend computes them; export; bad uploads; runs and results."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pam_explorer import export
from pam_explorer.core.config import MIConfig, RegroupConfig
from pam_explorer.data import get_preset
from pam_explorer.regroup.explorer import Explorer
from pam_explorer.runs import jobs
from ui import figures as F

DEFAULT_ALPHA = get_preset("digits-2task").default_alpha

APP = str(Path(__file__).resolve().parents[2] / "app.py")
PAGES = ["ui/page_setup.py", "ui/page_export.py", "ui/page_runs.py", "ui/page_results.py",
         "ui/page_explorer.py"]


@pytest.fixture(scope="module")
def explorer() -> Explorer:
    return Explorer.open("digits-2task", MIConfig())  # the app's default setup (cache hit)


@pytest.fixture()
def runs_root(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("PAM_RUNS_ROOT", str(root))
    monkeypatch.setenv("PAM_JOBS_SELFTEST", "1")  # tiny `selftest` jobs stand in for experiments
    return root


def fresh() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, at.exception
    return at


def plotly_specs(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def test_every_page_renders(runs_root):
    at = fresh()
    assert at.select_slider[0].value == pytest.approx(DEFAULT_ALPHA)  # the preset's default alpha
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        assert not at.error, (page, [e.value for e in at.error])
    assert at.select_slider[0].value == pytest.approx(DEFAULT_ALPHA)  # alpha survives page changes


def test_slider_drives_groups_and_flops(explorer, runs_root):
    at = fresh()
    options = F.alpha_grid(F.max_mi(explorer.trajs.trajectories), extra=[DEFAULT_ALPHA])
    seen = set()
    for alpha in (options[30], options[45], options[-1], DEFAULT_ALPHA):
        at.select_slider[0].set_value(alpha).run()
        assert not at.exception
        groups = explorer.groups(RegroupConfig(alpha=alpha))
        shown = at.dataframe[0].value
        for layer, g in groups.items():
            for key, ids in g.groups.items():
                assert shown.loc[layer, "+".join(key)] == len(ids)
            assert shown.loc[layer, "sharing ratio"] == pytest.approx(g.sharing_ratio(), abs=1e-4)
        flops = at.dataframe[1].value
        for scheme, per in explorer.predicted_flops(RegroupConfig(alpha=alpha)).items():
            assert flops[scheme].to_dict() == per
        sharing_fig = plotly_specs(at)[0]
        ratios = sharing_fig["data"][0]["y"]
        assert ratios == pytest.approx([g.sharing_ratio() for g in groups.values()], abs=1e-4)
        seen.add(tuple(ratios))
    assert len(seen) >= 2, "moving alpha must change the sharing figure"


def test_expected_flops_validation(explorer, runs_root):
    at = fresh()
    probs = [n for n in at.number_input if n.key and n.key.startswith("prob_")]
    assert len(probs) == 3 and not at.error
    metrics = {m.label: m.value for m in at.metric}
    pred = explorer.predicted_flops(RegroupConfig(alpha=DEFAULT_ALPHA))
    want = sum(pred["PAM"].values()) / 3
    assert float(metrics["E[FLOPs] PAM"].replace(",", "")) == pytest.approx(want, abs=1)
    probs[0].set_value(0.9).run()
    assert any("sum to 1" in e.value for e in at.error)
    at.number_input(key=probs[0].key).set_value(0.2).run()
    at.number_input(key=probs[1].key).set_value(0.3).run()
    at.number_input(key=probs[2].key).set_value(0.5).run()
    assert not at.error
    metrics = {m.label: m.value for m in at.metric}
    want = 0.2 * pred["PAM"]["A"] + 0.3 * pred["PAM"]["B"] + 0.5 * pred["PAM"]["A+B"]
    assert float(metrics["E[FLOPs] PAM"].replace(",", "")) == pytest.approx(want, abs=1)


def test_export_bytes_load(explorer, runs_root):
    at = fresh()
    options = F.alpha_grid(F.max_mi(explorer.trajs.trajectories), extra=[DEFAULT_ALPHA])
    alpha = options[40]
    at.select_slider[0].set_value(alpha).run()
    at.switch_page("ui/page_export.py").run()
    assert not at.exception and not at.warning
    data = at.session_state["export_bytes"]
    net = export.load(data)
    manifest = export.read_manifest(data)
    assert manifest["alpha"] == pytest.approx(alpha) and manifest["preset"] == "digits-2task"
    groups = explorer.groups(RegroupConfig(alpha=alpha))
    nonempty = {l: {k: n for k, n in w.items() if n} for l, w in net.group_widths().items()}
    assert nonempty == {l: {"+".join(k): len(v) for k, v in g.groups.items() if v}
                        for l, g in groups.items()}
    assert len(at.get("download_button")) >= 1
    at.button(key="measure_latency").click().run()
    assert not at.exception
    lat = at.dataframe[-1].value
    assert list(lat.index) == ["A", "B", "A+B"] and (lat.iloc[:, 0] > 0).all()
    at.switch_page("ui/page_explorer.py").run()
    at.select_slider[0].set_value(options[10]).run()
    at.switch_page("ui/page_export.py").run()  # another model: its old latency is not shown
    assert not any("ms (cpu" in str(list(d.value.columns)) for d in at.dataframe)


def test_bad_upload_shows_error_and_keeps_setup(runs_root):
    at = fresh()
    at.switch_page("ui/page_setup.py").run()
    at.radio[0].set_value("Upload .safetensors per task").run()
    assert len(at.file_uploader) == 2
    at.file_uploader[0].upload("A.safetensors", b"this is not a checkpoint")
    at.file_uploader[1].upload("B.safetensors", b"\x00" * 64)
    at.button[0].click().run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "not applied" in errors and "safetensors" in errors
    assert at.session_state["setup"].checkpoints == "pretrained"
    at.switch_page("ui/page_explorer.py").run()
    assert not at.exception and at.dataframe[0].value.shape[0] == 4


def test_wrong_shape_upload(tmp_path, runs_root):
    from safetensors.torch import save

    from pam_explorer.zoo import build_model
    good = build_model("lenet5", 5, 1, 32).state_dict()
    wrong = build_model("lenet5", 3, 1, 32).state_dict()  # head for 3 labels, task has 5
    at = fresh()
    at.switch_page("ui/page_setup.py").run()
    at.radio[0].set_value("Upload .safetensors per task").run()
    at.file_uploader[0].upload("A.safetensors", save(dict(good)))
    at.file_uploader[1].upload("B.safetensors", save(dict(wrong)))
    at.button[0].click().run()
    errors = " ".join(e.value for e in at.error)
    assert "task B" in errors and "shape" in errors
    assert at.session_state["setup"].checkpoints == "pretrained"


def _wait(root, rid, timeout=20):
    deadline = time.time() + timeout
    while jobs.read_status(rid, root)["state"] not in jobs.FINAL and time.time() < deadline:
        time.sleep(0.05)
        jobs.poll(root)


def test_runs_and_results_pages(runs_root):
    report = {"preset": "digits-2task", "prune": "taylor", "tasks": ["A", "B"],
              "schemes": {s: {"flops": {"A": f, "B": f, "A+B": 2 * f - 5}, "accuracy": {"A": 96.0, "B": 95.0},
                              "widths": {"conv1": {"A": 2, "B": 2, "A+B": 4}},
                              "log": [{"step": 0, "task": "A", "accepted": True,
                                       "widths": {"conv1": {"A": 3, "B": 2, "A+B": 4}}, "flops": 10,
                                       "val_accuracy": {"A": 96.0}},
                                      {"step": 1, "task": "B", "accepted": True,
                                       "widths": {"conv1": {"A": 2, "B": 2, "A+B": 4}}, "flops": 9,
                                       "val_accuracy": {"B": 95.0}}]}
                          for s, f in (("B1", 100), ("B2", 80), ("PAM", 50))},
              "gains": {"vs_B1": {"average": 2.0, "peak": 2.2}, "vs_B2": {"average": 1.6, "peak": 1.7}}}
    ok = jobs.submit({"command": "selftest", "args": {"report": report}}, runs_root, name="fake")
    jobs.start_next(runs_root)
    _wait(runs_root, ok)
    bad = jobs.submit({"command": "selftest", "args": {"print": "exploded here", "exit": 4}}, runs_root,
                      name="bad")
    jobs.start_next(runs_root)
    _wait(runs_root, bad)
    at = fresh()
    at.switch_page("ui/page_runs.py").run()
    assert not at.exception
    runs_df = at.dataframe[0].value
    assert set(runs_df["state"]) == {"done", "failed"}
    assert any("exploded here" in c.value for c in at.code)
    at.switch_page("ui/page_results.py").run()
    assert not at.exception
    at.selectbox(key="res_run").set_value(ok).run()
    table = at.dataframe[0].value
    assert list(table.index) == ["B1", "B2", "PAM"]
    assert table.loc["PAM", "FLOPs A+B"] == 95 and table.loc["B1", "acc A (%)"] == 96.0
    assert len(at.get("plotly_chart")) >= 3  # gains, flops, sharing after pruning, log
    at.selectbox(key="res_run").set_value(bad).run()
    assert any("failed" in e.value for e in at.error)
    assert any("exploded here" in c.value for c in at.code)
    at.toggle[0].set_value(True).run()
    assert not at.exception and len(at.selectbox) >= 2


def test_five_tasks_full_algorithm_on_request(runs_root):
    """K = 5 (small MI sample and the fixed kernel without a chance level, for speed: this tests
    the page, not the estimator): 31 subsets; the full Algorithm 3 runs on a click."""
    from ui.state import Setup
    mi = MIConfig(n_samples=24, kernel="fixed", null_perms=0)
    exp = Explorer.open("digits-5task", mi)
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["setup"] = Setup("digits-5task", mi)
    at.run()
    assert not at.exception
    assert len([n for n in at.number_input if n.key and n.key.startswith("prob_")]) == 31
    alpha = get_preset("digits-5task").default_alpha
    simplified = exp.groups(RegroupConfig(alpha=alpha))
    assert at.dataframe[0].value.loc["conv2", "T1+T2+T3+T4+T5"] == len(simplified["conv2"].groups[exp.tasks])
    at.radio(key="algorithm_w").set_value("full").run()
    assert any("full Algorithm 3" in i.value for i in at.info)
    at.button[0].click().run()
    assert not at.exception
    full = exp.groups(RegroupConfig(alpha=alpha, algorithm="full"))
    shown = at.dataframe[0].value
    for layer, g in full.items():
        for key, ids in g.groups.items():
            assert shown.loc[layer, "+".join(key)] == len(ids)


def test_unbuildable_grouping_warns_and_keeps_figures(explorer, runs_root, monkeypatch):
    """No alpha of digits-2task gives an unbuildable grouping, so the backend's check is made
    to fail: the explorer warns and still shows the sharing figures; export warns too."""
    import pam_explorer.export.archive as archive
    import pam_explorer.regroup.explorer as explorer_module
    from pam_explorer.core.errors import StructureError

    def no_path(*a, **k):
        raise StructureError("layer 'conv2', group 'A': has 3 neuron(s) but no non-empty input group")

    monkeypatch.setattr(explorer_module, "check_structure", no_path)
    monkeypatch.setattr(archive, "merge_networks", no_path)
    at = fresh()
    assert any("cannot be built" in w.value and "no non-empty input group" in w.value for w in at.warning)
    assert at.dataframe[0].value.shape[0] == 4 and len(at.get("plotly_chart")) >= 2
    options = F.alpha_grid(F.max_mi(explorer.trajs.trajectories), extra=[DEFAULT_ALPHA])
    at.select_slider[0].set_value(options[17]).run()  # an alpha no other test exports
    at.switch_page("ui/page_export.py").run()
    assert not at.exception
    assert any("cannot be built" in w.value for w in at.warning)
    assert "export_bytes" not in at.session_state


def test_layer_override_and_range_notice(explorer, runs_root):
    at = fresh()
    top_conv1 = max(max(t.running_max) for t in explorer.trajs.trajectories["conv1"].values())
    at.number_input(key="ovr_conv1").set_value(round(top_conv1 * 2, 4)).run()
    assert not at.exception
    assert any("conv1" in i.value and "clamped" in i.value for i in at.info)
    cfg = RegroupConfig(alpha=DEFAULT_ALPHA, overrides=(("conv1", round(top_conv1 * 2, 4)),))
    shown = at.dataframe[0].value
    for layer, g in explorer.groups(cfg).items():
        assert shown.loc[layer, "A+B"] == len(g.groups[("A", "B")])
        assert shown.loc[layer, "alpha"] == pytest.approx(cfg.alpha_for(layer))
    at.number_input(key="ovr_conv1").set_value(None).run()
    assert at.dataframe[0].value.loc["conv1", "alpha"] == pytest.approx(DEFAULT_ALPHA)


def test_valid_upload_and_mi_settings_apply(runs_root):
    assets = Path(__file__).resolve().parents[2] / "assets" / "digits-2task"
    at = fresh()
    at.switch_page("ui/page_setup.py").run()
    at.radio[0].set_value("Upload .safetensors per task").run()
    for i, t in enumerate("AB"):
        at.file_uploader[i].upload(f"{t}.safetensors", (assets / f"{t}.safetensors").read_bytes())
    at.number_input[0].set_value(24).run()  # N samples: small, so the trajectories are quick
    at.button[0].click().run()
    assert not at.exception and not at.error
    setup = at.session_state["setup"]
    assert setup.checkpoints.startswith("upload-") and setup.arch == "lenet5" and setup.mi.n_samples == 24
    assert any("applied" in s.value for s in at.success)
    at.switch_page("ui/page_explorer.py").run()
    assert not at.exception
    exp = Explorer.open("digits-2task", MIConfig(n_samples=24))
    alpha = at.select_slider[0].value
    shown = at.dataframe[0].value
    for layer, g in exp.groups(RegroupConfig(alpha=alpha)).items():
        assert shown.loc[layer, "A+B"] == len(g.groups[("A", "B")])


def test_cancel_from_runs_page(runs_root):
    rid = jobs.submit({"command": "selftest", "args": {"sleep": 60}}, runs_root, name="sleeper")
    jobs.start_next(runs_root)
    at = fresh()
    at.switch_page("ui/page_runs.py").run()
    assert jobs.read_status(rid, runs_root)["state"] == "running"
    at.button(key=f"cancel_{rid}").click().run()
    assert not at.exception
    assert jobs.read_status(rid, runs_root)["state"] == "cancelled"


def test_preset_without_networks_keeps_setup(runs_root):
    from pam_explorer.data import list_presets
    from pam_explorer.zoo.pretrained import has_pretrained
    missing = [p for p in list_presets() if not has_pretrained(p, get_preset(p).task_names)]
    if not missing:
        pytest.skip("every preset has committed networks")
    at = fresh()
    at.switch_page("ui/page_setup.py").run()
    at.selectbox[0].set_value(missing[0]).run()
    assert "none committed" in " ".join(m.value for m in at.markdown)
    at.button[0].click().run()
    assert not at.exception
    assert any("not applied" in e.value and "pre-trained" in e.value for e in at.error)
    assert at.session_state["setup"].preset == "digits-2task"


def test_adapmtl_run_results_show_sparsity_breakdown(runs_root):
    """A real quick AdapMTL experiment launched as a background job, then its results page."""
    from pam_explorer.runs import job_spec
    from ui.run_args import MODES, experiment_job
    spec = experiment_job("digits-2task", "adapmtl", MODES[0], None, True, "cpu", 0.8)
    argv = job_spec.argv(spec, runs_root / "x")
    assert argv[argv.index("--target-sparsity") + 1] == "0.8"
    rid = jobs.submit(spec, runs_root, name="adapmtl-quick")
    jobs.start_next(runs_root)
    _wait(runs_root, rid, timeout=300)
    assert jobs.read_status(rid, runs_root)["state"] == "done", jobs.log_tail(rid, 30, runs_root)
    report = jobs.report(rid, runs_root)
    at = fresh()
    at.switch_page("ui/page_results.py").run()
    assert not at.exception, at.exception
    sparse = next(d.value for d in at.dataframe if "Delta_T (%)" in d.value.columns)
    for name in ("B1", "B2", "PAM"):
        s = report["schemes"][name]
        assert sparse.loc[name, "Delta_T (%)"] == pytest.approx(s["delta_t"])
        assert sparse.loc[name, "sparse FLOPs A+B"] == s["sparse_flops"]["A+B"]
        assert sparse.loc[name, "overall sparsity"] == pytest.approx(s["overall_sparsity"])
        assert s["overall_sparsity"] >= 0.8
    titles = [spec["layout"]["title"]["text"] for spec in plotly_specs(at)]
    assert "Final sparsity per component" in titles
    assert "AdapMTL sparsity per component (B1 A)" in titles
    curve = next(spec for spec in plotly_specs(at) if spec["layout"]["title"]["text"].endswith("(B1 A)"))
    overall = next(tr for tr in curve["data"] if tr["name"] == "overall")
    assert overall["y"] == [r["overall"] for r in report["schemes"]["B1"]["sparsity_series"]["A"]]
    at.selectbox(key="sparsity_of_single").set_value("PAM")
    at.run()
    assert not at.exception and at.selectbox(key="sparsity_of_single").value == "PAM"
    titles = [spec["layout"]["title"]["text"] for spec in plotly_specs(at)]
    assert "AdapMTL sparsity per component (PAM)" in titles, titles
