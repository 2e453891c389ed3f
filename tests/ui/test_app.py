"""The dashboard through streamlit.testing.v1.AppTest: pages render; the slider drives the figures
and numbers exactly as the backend computes them; export of the explorer's model; bad uploads;
setup (presets without networks). Runs, results and finished runs' models: test_app_runs.py."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pam_explorer import export
from pam_explorer.core import paths
from pam_explorer.core.config import MIConfig, RegroupConfig
from pam_explorer.data import get_preset
from pam_explorer.regroup.explorer import Explorer
from pam_explorer.runs import jobs
from tests.ui.apptest import APP, DEFAULT_ALPHA, echarts, fresh, view
from ui import figures as F
from ui import labels as L

PAGES = ["ui/page_setup.py", "ui/page_export.py", "ui/page_runs.py", "ui/page_results.py",
         "ui/page_explorer.py"]


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
    options = F.alpha_grid(explorer.max_mi(), extra=[DEFAULT_ALPHA])
    seen = set()
    for alpha in (options[30], options[45], options[-1], DEFAULT_ALPHA):
        at.select_slider[0].set_value(alpha).run()
        assert not at.exception
        groups = explorer.groups(RegroupConfig(alpha=alpha))
        shown = at.table[0].value
        for layer, g in groups.items():
            for key, ids in g.groups.items():
                assert shown.loc[layer, "+".join(key)] == len(ids)
            assert shown.loc[layer, "sharing ratio"] == pytest.approx(g.sharing_ratio(), abs=1e-4)
        chart = echarts(at)[0]
        shared = next(x for x in chart["series"] if x["name"] == "A+B")["data"]
        assert shared == [len(g.groups[("A", "B")]) for g in groups.values()]
        seen.add(tuple(shared))
        view(at, "Predicted FLOPs")
        flops = at.table[0].value
        for scheme, per in explorer.predicted_flops(RegroupConfig(alpha=alpha)).items():
            assert flops[scheme].to_dict() == {k: f"{v:,}" for k, v in per.items()}  # 1,234,567
        pam_all = next(m for m in at.metric if m.label == "PAM FLOPs A+B")  # a label short enough to show
        assert pam_all.value == f"{explorer.predicted_flops(RegroupConfig(alpha=alpha))['PAM']['A+B']:,}"
        assert "predicted, before pruning" in [c.value for c in at.caption]
        view(at, "Groups and sharing")
    assert len(seen) >= 2, "moving alpha must change the sharing figure"


def test_expected_flops_validation(explorer, runs_root):
    at = view(fresh(), "Expected FLOPs")
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
    # the gains are labelled "before pruning", with one line on why PAM is larger then
    b1 = 0.2 * pred["B1"]["A"] + 0.3 * pred["B1"]["B"] + 0.5 * pred["B1"]["A+B"]
    assert metrics["PAM gain vs B1"] == f"{b1 / want:.3f}x"  # a label short enough to show whole
    gain = next(m for m in at.metric if m.label == "PAM gain vs B1")
    captions = [c.value for c in at.caption]
    assert gain.help == L.BEFORE_PRUNING_WHY and L.BEFORE_PRUNING_WHY in " ".join(captions)
    assert captions.count("expected, before pruning") == 2  # under each gain's value
    # the slider's help says why sharing is not monotone in alpha
    rule = L.BOTH_PICKED_TEXT[RegroupConfig().both_picked]
    assert L.NOT_MONOTONE.format(rule=rule) in at.select_slider[0].help


def test_explorer_draws_one_backend_view(explorer, runs_root):
    """Issue 26 points 9-11 and issue 27: the page draws what regroup.view computes. The phase
    chart opens on the first layer where alpha cuts inside the trajectory (not on conv1 with
    alpha above its chart); the mean sharing is the mean of the layers' ratios; the groups view
    says next to its chart why sharing is not monotone in alpha; FLOPs are defined."""
    cfg = RegroupConfig(alpha=DEFAULT_ALPHA)
    tops = {layer: max(max(t.running_max) for t in explorer.trajs.trajectories[layer].values())
            for layer in explorer.trajs.layers}
    first_cut = next(layer for layer, top in tops.items() if DEFAULT_ALPHA < top)
    assert first_cut != "conv1"  # digits-2task at its default alpha: conv1's trajectory ends below alpha
    at = fresh()
    ratios = [g.sharing_ratio() for g in explorer.groups(cfg).values()]
    sharing = next(m for m in at.metric if m.label == "Mean sharing ratio")
    assert sharing.value == f"{sum(ratios) / len(ratios):.1%}"
    captions = " ".join(c.value for c in at.caption)
    assert L.NOT_MONOTONE.format(rule=L.BOTH_PICKED_TEXT[cfg.both_picked]) in captions
    assert "At alpha 0 no neuron can be exclusive" in captions
    assert L.FLOPS_DEF in next(m for m in at.metric if m.label == "PAM FLOPs A+B").help
    view(at, "MI phase curves")
    assert at.selectbox(key="phase_layer").value == first_cut
    chart = echarts(at)[0]
    assert chart["title"]["text"] == f"MI phase curves of {first_cut}" and not chart["title"]["subtext"]
    assert any(x["name"] == f"alpha = {DEFAULT_ALPHA:g}" for x in chart["series"])  # drawn, not "above"


def test_export_bytes_load(explorer, runs_root):
    at = fresh()
    options = F.alpha_grid(explorer.max_mi(), extra=[DEFAULT_ALPHA])
    alpha = options[40]
    at.select_slider[0].set_value(alpha).run()
    at.switch_page("ui/page_export.py").run()
    assert not at.exception and not at.error
    assert any("before finetuning" in w.value and "test accuracy A" in w.value for w in at.warning)
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
    at.radio(key="checkpoints_digits-2task").set_value("Upload a network file per task").run()
    assert len(at.file_uploader) == 2
    at.file_uploader[0].upload("A.safetensors", b"this is not a checkpoint")
    at.file_uploader[1].upload("B.safetensors", b"\x00" * 64)
    at.button(key="apply_setup").click().run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "not applied" in errors and "safetensors" in errors
    assert at.session_state["setup"].checkpoints == "pretrained"
    at.switch_page("ui/page_explorer.py").run()
    assert not at.exception and at.table[0].value.shape[0] == 4


def test_wrong_shape_upload(tmp_path, runs_root):
    from safetensors.torch import save

    from pam_explorer.zoo import build_model
    good = build_model("lenet5", 5, 1, 32).state_dict()
    wrong = build_model("lenet5", 3, 1, 32).state_dict()  # head for 3 labels, task has 5
    at = fresh()
    at.switch_page("ui/page_setup.py").run()
    at.radio(key="checkpoints_digits-2task").set_value("Upload a network file per task").run()
    at.file_uploader[0].upload("A.safetensors", save(dict(good)))
    at.file_uploader[1].upload("B.safetensors", save(dict(wrong)))
    at.button(key="apply_setup").click().run()
    errors = " ".join(e.value for e in at.error)
    assert "task B (B.safetensors)" in errors and "head (head.weight) has 3 outputs" in errors
    assert at.session_state["setup"].checkpoints == "pretrained"


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
    alpha = get_preset("digits-5task").default_alpha
    simplified = exp.groups(RegroupConfig(alpha=alpha))
    assert at.table[0].value.loc["conv2", "T1+T2+T3+T4+T5"] == len(simplified["conv2"].groups[exp.tasks])
    view(at, "Expected FLOPs")
    assert len([n for n in at.number_input if n.key and n.key.startswith("prob_")]) == 31
    view(at, "Groups and sharing")
    at.radio(key="algorithm_w").set_value("full").run()
    assert any("full Algorithm 3" in i.value for i in at.info)
    at.button[0].click().run()
    assert not at.exception
    full = exp.groups(RegroupConfig(alpha=alpha, algorithm="full"))
    shown = at.table[0].value
    for layer, g in full.items():
        for key, ids in g.groups.items():
            assert shown.loc[layer, "+".join(key)] == len(ids)


def test_unbuildable_grouping_warns_and_keeps_figures(explorer, runs_root, monkeypatch):
    """No alpha of digits-2task gives an unbuildable grouping, so the backend's check is made
    to fail: the explorer warns and still shows the sharing figures; export warns too."""
    import pam_explorer.regroup.explorer as explorer_module
    import pam_explorer.runs.merge_run as merge_run
    from pam_explorer.core.errors import StructureError

    def no_path(*a, **k):
        raise StructureError("layer 'conv2', group 'A': has 3 neuron(s) but no non-empty input group")

    monkeypatch.setattr(explorer_module, "check_structure", no_path)
    monkeypatch.setattr(merge_run, "merge_networks", no_path)
    at = fresh()
    assert any("cannot be built" in w.value and "no non-empty input group" in w.value for w in at.warning)
    assert at.table[0].value.shape[0] == 4 and len(at.get("echarts_chart")) == 1
    options = F.alpha_grid(explorer.max_mi(), extra=[DEFAULT_ALPHA])
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
    shown = at.table[0].value
    for layer, g in explorer.groups(cfg).items():
        assert shown.loc[layer, "A+B"] == len(g.groups[("A", "B")])
        assert shown.loc[layer, "alpha"] == pytest.approx(cfg.alpha_for(layer))
    view(at, "MI phase curves")  # the huge override does not stretch the phase chart's axis
    at.selectbox(key="phase_layer").set_value("conv1").run()
    chart = echarts(at)[0]
    assert chart["yAxis"]["max"] < 1 and "above the chart" in chart["title"]["subtext"]
    view(at, "Groups and sharing")
    at.number_input(key="ovr_conv1").set_value(None).run()
    assert at.table[0].value.loc["conv1", "alpha"] == pytest.approx(DEFAULT_ALPHA)


def test_valid_upload_and_mi_settings_apply(runs_root):
    assets = Path(__file__).resolve().parents[2] / "assets" / "digits-2task"
    at = fresh()
    at.switch_page("ui/page_setup.py").run()
    at.radio(key="checkpoints_digits-2task").set_value("Upload a network file per task").run()
    for i, t in enumerate("AB"):
        at.file_uploader[i].upload(f"{t}.safetensors", (assets / f"{t}.safetensors").read_bytes())
    at.number_input[0].set_value(24).run()  # N samples: small, so the trajectories are quick
    at.button(key="apply_setup").click().run()
    assert not at.exception and not at.error
    setup = at.session_state["setup"]
    assert setup.checkpoints.startswith("upload-") and setup.arch == "lenet5" and setup.mi.n_samples == 24
    assert any("applied" in s.value for s in at.success)
    at.switch_page("ui/page_explorer.py").run()
    assert not at.exception
    exp = Explorer.open("digits-2task", MIConfig(n_samples=24))
    alpha = at.select_slider[0].value
    shown = at.table[0].value
    for layer, g in exp.groups(RegroupConfig(alpha=alpha)).items():
        assert shown.loc[layer, "A+B"] == len(g.groups[("A", "B")])


def test_preset_without_networks_offers_training(runs_root, tmp_path, monkeypatch):
    """A preset without networks: "Pre-trained" cannot be chosen, the page gives a command that
    works (tests/runs/test_dashboard_jobs.py runs it) and a "Train networks for this preset"
    button, which submits the train job (installing under a temporary assets root here)."""
    monkeypatch.setenv("PAM_ASSETS_ROOT", str(tmp_path / "assets"))
    monkeypatch.setenv("PAM_CACHE_ROOT", str(paths.cache_root()))
    shutil.copytree(paths.REPO / "assets" / "digits-2task", tmp_path / "assets" / "digits-2task")
    at = fresh()
    at.switch_page("ui/page_setup.py").run()
    at.selectbox(key="setup_preset").set_value("digits-inclusion").run()
    assert not at.exception
    assert at.radio(key="checkpoints_digits-inclusion").options == ["Upload a network file per task"]
    assert any("python -m pam_explorer train --preset digits-inclusion" in c.value for c in at.code)
    assert "none trained yet" in " ".join(m.value for m in at.markdown)
    at.button(key="train_digits-inclusion").click().run()
    assert not at.exception
    (run,) = [r for r in jobs.list_runs(runs_root)]
    assert run["job"] == {"command": "train", "args": {"preset": "digits-inclusion", "epochs": 15,
                                                       "device": "auto", "install": True}}
    assert any("Training" in str(p.proto.text) for p in at.get("progress"))
    jobs.cancel(run["run_id"], runs_root)
    at.button(key="apply_setup").click().run()  # uploads chosen, none given: refused, setup kept
    assert any("not applied" in e.value for e in at.error)
    assert at.session_state["setup"].preset == "digits-2task"
    at.selectbox(key="setup_preset").set_value("digits-2task").run()
    assert "0.658 bits (measured" in " ".join(m.value for m in at.markdown)  # measured, not "~0.62"
