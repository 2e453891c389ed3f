"""Device selection shared by training, finetuning, pruning and the benchmarks."""
from __future__ import annotations

import torch

from pam_explorer.core.errors import ConfigError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" -> the GPU when one is present, else the CPU; anything else is passed to torch."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but no CUDA GPU is available; use 'cpu' or 'auto'")
    return torch.device(device)
