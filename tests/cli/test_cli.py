import json

import pytest

from pam_explorer.cli import main
from pam_explorer.core.errors import ConfigError


def test_regroup_json_contract(capsys):
    assert main(["regroup", "--preset", "digits-2task", "--alpha", "0.05", "--samples", "64", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["alpha"] == 0.05
    assert [l["name"] for l in out["layers"]] == ["conv1", "conv2", "fc1", "fc2"]
    for layer in out["layers"]:
        assert set(layer["groups"]) == {"A", "B", "A+B"}
        assert sum(layer["groups"].values()) == layer["width"]
        assert 0.0 <= layer["sharing_ratio"] <= 1.0
    assert out["layers"][0]["width"] == 12 and out["layers"][2]["width"] == 240


def test_bad_alpha_is_a_clear_error(capsys):
    assert main(["regroup", "--alpha", "-1", "--samples", "64"]) == 2
    assert "alpha" in capsys.readouterr().err


def test_quick_experiment_report_schema_resume_and_export(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["experiment", "--preset", "digits-2task", "--prune", "taylor", "--quick", "--delta", "100",
            "--out", str(out)]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    for scheme in ("B1", "B2", "PAM"):
        s = report["schemes"][scheme]
        assert set(s["flops"]) == {"A", "B", "A+B"} and set(s["accuracy"]) == {"A", "B"}
        assert all(v > 0 for v in s["flops"].values())
    b1 = report["schemes"]["B1"]["flops"]
    assert b1["A+B"] == b1["A"] + b1["B"]
    lat = report["schemes"]["B1"]["latency_ms"]  # B1's A+B: its fused nets in one timed call
    assert set(lat) == {"A", "B", "A+B"} and min(lat.values()) > 0
    assert report["latency"].startswith("CPU, batch 1") and "fused" in report["latency"]
    # one interleaved measurement of every scheme; gains only from the figures it judged reliable
    m = report["latency_measurement"]["schemes"]
    assert set(m) == {"B1", "B2", "PAM"} and all(set(per) == {"A", "B", "A+B"} for per in m.values())
    assert set(report["latency_gains"]) <= {"vs_B1", "vs_B2"}
    assert "ms A+B" in (out / "table.md").read_text()
    for key in ("vs_B1", "vs_B2"):
        g = report["gains"][key]
        ratios = [report["schemes"][key[3:]]["flops"][s] / report["schemes"]["PAM"]["flops"][s]
                  for s in ("A", "B", "A+B")]
        assert g["average"] == pytest.approx(sum(ratios) / 3) and g["peak"] == pytest.approx(max(ratios))
    assert "| PAM |" in (out / "table.md").read_text()
    # resume: every stage is read back, nothing recomputed, same report
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "stages").glob("*.json")}
    assert main(args) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / "stages").glob("*.json")} == mtimes
    untimed = lambda schemes: {n: {k: v for k, v in s.items() if not k.startswith("latency")}  # noqa: E731
                               for n, s in schemes.items()}  # latency is measured again: timing
    assert untimed(json.loads((out / "report.json").read_text())["schemes"]) == untimed(report["schemes"])
    # a different config in the same directory is refused, nothing is lost
    assert main(["experiment", "--preset", "digits-2task", "--prune", "vib", "--quick", "--delta", "100",
                 "--out", str(out)]) == 2
    assert (out / "report.json").is_file()
    # export reloads and runs
    assert main(["export", "--run", str(out), "--out", str(tmp_path / "m.zip")]) == 0
    import torch

    from pam_explorer import export
    net = export.load(tmp_path / "m.zip")
    assert net(torch.rand(2, 1, 32, 32), tasks=["A"])["A"].shape == (2, 5)
    assert export.read_manifest(tmp_path / "m.zip")["flops"] == report["schemes"]["PAM"]["flops"]


def test_merge_writes_model_flops_latency_and_accuracy(tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["merge", "--preset", "digits-2task", "--alpha", "0.5", "--samples", "64",
                 "--out", str(out), "--json"]) == 0
    summary = json.loads((out / "merge.json").read_text())
    assert json.loads(capsys.readouterr().out)["flops"] == summary["flops"]
    assert set(summary["flops"]) == set(summary["latency_ms"]) == {"A", "B", "A+B"}
    assert all(v > 0 for v in summary["latency_ms"].values())
    # a subset never costs more FLOPs than the whole
    assert max(summary["flops"]["A"], summary["flops"]["B"]) <= summary["flops"]["A+B"]
    assert set(summary["accuracy"]) == {"A", "B"} and all(50 < v <= 100 for v in summary["accuracy"].values())
    from pam_explorer import export
    from pam_explorer.cost.analytic import subset_costs
    net = export.load(out / "model.zip")
    assert {s: c["flops"] for s, c in subset_costs(net).items()} == summary["flops"]
    widths = {l: sum(g.values()) for l, g in summary["groups"].items()}
    assert widths == {"conv1": 12, "conv2": 32, "fc1": 240, "fc2": 168}


def test_quick_adapmtl_experiment_reports_sparsity_breakdown(tmp_path, capsys):
    out = tmp_path / "ad"
    assert main(["experiment", "--prune", "adapmtl", "--quick", "--target-sparsity", "0.8",
                 "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["target_sparsity"] == 0.8 and set(report["sparse_gains"]) == {"vs_B1", "vs_B2"}
    for name in ("B2", "PAM"):
        s = report["schemes"][name]
        assert s["frozen_at_step"] is not None and s["sparsity"]["overall"] >= 0.8
        assert set(s["sparsity"]) >= {"backbone", "A", "B", "overall"}
        series = s["sparsity_series"]
        overall = [r["overall"] for r in series]
        assert series[0]["step"] == 0 and overall[-1] == s["sparsity"]["overall"]
        # "flops" is the cost after pruning: the effective FLOPs; dense FLOPs are the unchanged structure's
        assert all(s["flops"][k] == s["sparse_flops"][k] < s["dense_flops"][k] for k in s["flops"])
    b1 = report["schemes"]["B1"]
    assert set(b1["sparsity"]) == {"A", "B"} and b1["sparsity"]["A"]["overall"] >= 0.8
    assert b1["sparse_flops"]["A+B"] == b1["sparse_flops"]["A"] + b1["sparse_flops"]["B"]
    sizes = {t: sum(b1["component_sizes"][t].values()) for t in ("A", "B")}
    assert b1["overall_sparsity"] == pytest.approx(
        sum(b1["sparsity"][t]["overall"] * sizes[t] for t in sizes) / sum(sizes.values()))
    # Delta_T of B1 is the mean relative change of its tasks (paper Eq. 7), in percent
    want = sum((b1["accuracy"][t] - b1["dense_test_accuracy"][t]) / b1["dense_test_accuracy"][t]
               for t in ("A", "B")) / 2 * 100
    assert b1["delta_t"] == pytest.approx(want)
    table = (out / "table.md").read_text()
    assert "effective FLOPs A+B" in table and "dense FLOPs A+B" in table and "Delta_T" in table
    import torch

    from pam_explorer import export
    net = export.load(out / "model.zip")  # zeros are real zeros in the exported weights
    zeros = sum(int((p == 0).sum()) for n, p in net.named_parameters()
                if n.endswith("weight") and p.dim() > 1)
    total = sum(p.numel() for n, p in net.named_parameters() if n.endswith("weight") and p.dim() > 1)
    assert zeros / total >= 0.8
    assert net(torch.rand(2, 1, 32, 32))["B"].shape == (2, 5)


def test_run_dir_from_before_a_new_config_field_still_resumes(tmp_path):
    import dataclasses

    from pam_explorer.runs.experiment import ExperimentConfig, _check_or_write_config
    old = dataclasses.asdict(ExperimentConfig(quick=True))
    del old["target_sparsity"]  # a run directory written before the field existed
    (tmp_path / "config.json").write_text(json.dumps(old))
    _check_or_write_config(ExperimentConfig(quick=True), tmp_path)  # its default: the same run
    with pytest.raises(ValueError, match="different configuration"):
        _check_or_write_config(ExperimentConfig(quick=True, target_sparsity=0.5), tmp_path)
    assert json.loads((tmp_path / "config.json").read_text()) == json.loads(json.dumps(old))  # not rewritten


@pytest.mark.parametrize("argv", [
    ["train", "--preset", "digits-2task", "--epochs", "1"],
    ["merge", "--out", "OUT"],
    ["experiment", "--quick", "--out", "OUT"],
    ["bench", "greedy", "--neurons", "8", "--samples", "8"],
])
def test_cuda_without_gpu_fails_at_once_with_a_clear_error(argv, tmp_path, capsys, monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv] + ["--device", "cuda"]
    assert main(argv) == 2
    assert "no CUDA GPU is available" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing was started


def test_train_writes_where_the_other_commands_look(tmp_path, capsys, monkeypatch):
    """What a missing-assets error advises (`train --preset P`, default --out) writes where
    load_pretrained then looks; here 1 epoch on 64 pictures through train_preset, and the CLI's
    arguments checked on a stand-in."""
    from pam_explorer.cli import commands
    from pam_explorer.core.config import DataConfig, TrainConfig
    from pam_explorer.data import get_preset
    from pam_explorer.runs.training_run import train_preset
    from pam_explorer.zoo.pretrained import load_pretrained, pretrained_meta
    monkeypatch.setenv("PAM_ASSETS_ROOT", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="python -m pam_explorer train --preset digits-2task$"):
        load_pretrained("digits-2task", ("A", "B"))
    seen = {}
    monkeypatch.setattr(commands, "train_preset",
                        lambda *a, **kw: seen.update(args=a, kw=kw) or {"tasks": {}})
    assert main(["train", "--preset", "digits-2task", "--epochs", "1", "--n-train", "64"]) == 0
    preset, arch, cfg, data, out, _ = seen["args"]
    assert (preset.name, arch, cfg.epochs, data.n_train, out) == ("digits-2task", "lenet5", 1, 64, None)
    command = ("python -m pam_explorer train --preset digits-2task --arch lenet5 --epochs 1 --seed 0 "
               "--n-train 64")
    assert seen["kw"]["extra_meta"] == {"command": command}
    train_preset(preset, arch, TrainConfig(epochs=1, device="cpu"),
                 DataConfig(n_train=64, n_val=16, n_test=16), extra_meta={"command": command})
    assert [n.arch for n in load_pretrained("digits-2task", ("A", "B"))] == ["lenet5", "lenet5"]
    for task, labels in (("A", [0, 1, 2, 3, 4]), ("B", [5, 6, 7, 8, 9])):  # each its own sidecar
        meta = pretrained_meta("digits-2task", task)
        assert (meta["task"], meta["labels"], meta["num_outputs"]) == (task, labels, 5)
        assert meta["command"] == command and meta["data"]["image_size"] == 32
    with pytest.raises(ValueError, match="unknown model 'nonet'"):
        train_preset(get_preset("digits-2task"), "nonet")


def test_train_width_and_small_input_reach_the_factory_and_the_sidecar(tmp_path, capsys, monkeypatch):
    """--width / --small-input go to the architecture's factory, the command and the sidecar's
    hparams; an option the architecture lacks is refused before any data is composed."""
    from pam_explorer.cli import commands
    from pam_explorer.core.config import DataConfig, TrainConfig
    from pam_explorer.data import get_preset
    from pam_explorer.runs.training_run import train_preset
    from pam_explorer.zoo.checkpoint import read_meta
    from pam_explorer.zoo.pretrained import load_pretrained
    seen = {}
    monkeypatch.setattr(commands, "train_preset",
                        lambda *a, **kw: seen.update(args=a, kw=kw) or {"tasks": {}})
    assert main(["train", "--arch", "resnet18", "--width", "0.0625", "--small-input", "--epochs", "1"]) == 0
    assert seen["kw"]["hparams"] == {"width": 0.0625, "small_input": True}
    assert seen["kw"]["extra_meta"]["command"].endswith("--n-train 8000 --width 0.0625 --small-input")
    assert main(["train", "--epochs", "1"]) == 0
    assert seen["kw"]["hparams"] == {}  # the architecture's defaults; command unchanged
    preset = get_preset("digits-2task")
    with pytest.raises(ConfigError, match=r"train --arch lenet5: no option\(s\) \['small_input'\]"):
        train_preset(preset, "lenet5", hparams={"small_input": True}, out=tmp_path / "no")
    assert not (tmp_path / "no").exists()
    monkeypatch.setenv("PAM_ASSETS_ROOT", str(tmp_path))
    train_preset(preset, "resnet18", TrainConfig(epochs=1, device="cpu"),
                 DataConfig(n_train=64, n_val=16, n_test=16), hparams={"width": 0.0625, "small_input": True})
    nets = load_pretrained("digits-2task", ("A", "B"), "resnet18")
    assert [n.hparams for n in nets] == [{"width": 0.0625, "small_input": True}] * 2
    assert nets[0].conv1.kernel_size == (3, 3) and nets[0].conv1.out_channels == 4
    assert read_meta(tmp_path / "digits-2task" / "resnet18" / "B.safetensors")["hparams"]["width"] == 0.0625


def test_arch_option_selects_the_committed_networks(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PAM_ASSETS_ROOT", str(tmp_path))
    for argv in (["regroup", "--arch", "vgg16"], ["merge", "--arch", "vgg16", "--out", str(tmp_path / "m")],
                 ["experiment", "--arch", "vgg16", "--quick", "--out", str(tmp_path / "e")]):
        assert main(argv) == 2
        assert "create them with: python -m pam_explorer train --preset digits-2task --arch vgg16" in \
            capsys.readouterr().err
    assert main(["experiment", "--arch", "nonet", "--quick", "--out", str(tmp_path / "e2")]) == 2
    assert "ExperimentConfig.arch: unknown architecture 'nonet'" in capsys.readouterr().err
