"""The experiment on residual networks, every scheme: B1, B2 (MTZ zips the ResNets) and PAM, end
to end on tiny ResNet-18s trained for the test (quick settings)."""
from __future__ import annotations

from pam_explorer.core.config import DataConfig, TrainConfig
from pam_explorer.data import get_preset
from pam_explorer.runs.experiment import ExperimentConfig, run_experiment
from pam_explorer.runs.training_run import train_preset


def test_a_residual_experiment_runs_b1_b2_and_pam(tmp_path, monkeypatch):
    monkeypatch.setenv("PAM_ASSETS_ROOT", str(tmp_path / "assets"))
    train_preset(get_preset("digits-2task"), "resnet18", TrainConfig(epochs=1, device="cpu"),
                 DataConfig(n_train=64, n_val=16, n_test=16), hparams={"width": 0.0625, "small_input": True})
    cfg = ExperimentConfig(arch="resnet18", quick=True, device="cpu")
    report = run_experiment(cfg, tmp_path / "run", cache=None)
    b1, b2, pam = (report["schemes"][s]["flops"] for s in ("B1", "B2", "PAM"))
    trunk = b2["A"] + b2["B"] - b2["A+B"]  # one fully shared trunk: every subset runs all of it,
    assert 0 < b2["A+B"] - b2["A"] < 0.01 * trunk  # A+B adds only B's head
    assert 0 < b2["A+B"] - b2["B"] < 0.01 * trunk
    assert b1["A+B"] == b1["A"] + b1["B"]
    assert pam["A+B"] > 0
    per = report["per_seed"]["0"]["schemes"]["B2"]
    assert set(per["accuracy"]) == {"A", "B"} and all(0 <= a <= 100 for a in per["accuracy"].values())
    assert (tmp_path / "run" / "stages" / "B2_s0.zip").is_file()
