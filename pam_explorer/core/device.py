"""Device selection shared by training, finetuning, pruning and the benchmarks."""
from __future__ import annotations

import logging

import torch

from pam_explorer.core.errors import ConfigError
from pam_explorer.core.validate import is_device


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" -> the GPU when one is present, else the CPU; "cpu", "cuda" and "cuda:i" as torch
    reads them. Anything else (``tpu``, ``meta``, ``mps``, ...), and a GPU that is not there,
    is a ConfigError."""
    if isinstance(device, torch.device):
        return device
    if not is_device(device):
        raise ConfigError(f"--device {device!r}: expected auto, cpu, cuda or cuda:i (the devices this "
                          "project runs on)")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but no CUDA GPU is available; use 'cpu' or 'auto'")
    dev = torch.device(device)
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device {device!r} requested but this machine has {torch.cuda.device_count()} "
                          "CUDA GPU(s); use cuda:0 ... or 'auto'")
    return dev


def available_devices() -> list[str]:
    """The device names a user can pick here: "auto", "cpu", and "cuda" only where a GPU is."""
    return ["auto", "cpu", "cuda"] if torch.cuda.is_available() else ["auto", "cpu"]


def _not_the_cuda_probe(record: logging.LogRecord) -> bool:
    return "No CUDA runtime is found" not in record.getMessage()


def quiet_cuda_probe() -> None:
    """Drop torch's "No CUDA runtime is found, using CUDA_HOME=..." warning (logged when
    ``torch.utils.cpp_extension`` is first imported, e.g. by ``torch.utils.benchmark``, on a
    machine with a CUDA toolkit but no GPU): it says nothing about this project's work and
    would open every run log. Other warnings of that logger are kept."""
    logging.getLogger("torch.utils.cpp_extension").addFilter(_not_the_cuda_probe)


__all__ = ["resolve_device", "available_devices", "quiet_cuda_probe"]
