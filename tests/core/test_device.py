"""Device selection: "auto" picks the GPU only when one exists; "cuda" without one is a clear
ConfigError (the CLI prints it and exits 2: tests/cli/test_cli.py). The GPU test skips cleanly on
machines without CUDA."""
import pytest
import torch

from pam_explorer.core.device import resolve_device
from pam_explorer.core.errors import ConfigError
from pam_explorer.runs.bench import bench_greedy


def test_cpu_and_auto_without_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cpu") == torch.device("cpu") == resolve_device("auto")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_without_gpu_is_a_clear_error(monkeypatch, name):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=f"device '{name}' requested but no CUDA GPU is available"):
        resolve_device(name)


def test_bench_resolves_its_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        bench_greedy(neurons=8, samples=8, labels=2, device="cuda", naive_neurons=8)
    assert bench_greedy(neurons=8, samples=8, labels=2, device="auto", naive_neurons=8)["device"] == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_greedy_on_gpu_matches_the_reference():
    out = bench_greedy(neurons=32, samples=16, labels=2, device="cuda", naive_neurons=16)
    assert out["device"].startswith("cuda") and out["naive_matches_fast"]
