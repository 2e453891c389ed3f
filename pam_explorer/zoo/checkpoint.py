"""Safe checkpoints: safetensors weights + a JSON sidecar describing how to rebuild the net.

Loading never unpickles anything. A checkpoint that does not fit the architecture raises
:class:`~pam_explorer.core.errors.CheckpointMismatch` naming the first mismatched tensor; uploaded
checkpoints (the dashboard's Setup page) load through :func:`nets_from_uploads`.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, load_file, save_file
from torch import nn

from pam_explorer.core.errors import CheckpointMismatch, ConfigError, DataMissing
from pam_explorer.zoo.registry import build_model


def save_checkpoint(model: nn.Module, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write ``path`` (.safetensors) and ``path`` with suffix .json (architecture + ``meta``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(path))
    info = {
        "arch": getattr(model, "arch", None),
        "num_outputs": getattr(model, "num_outputs", None),
        "in_channels": getattr(model, "in_channels", None),
        "image_size": getattr(model, "image_size", None),
        "hparams": getattr(model, "hparams", {}),
        **(meta or {}),
    }
    path.with_suffix(".json").write_text(json.dumps(info, indent=2, sort_keys=True))
    return path


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file; anything else gets a clear error."""
    path = Path(path)
    if not path.is_file():
        raise DataMissing(f"checkpoint {path} does not exist")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointMismatch(
            f"{path.name} is not a safetensors checkpoint ({exc}); save weights with "
            "safetensors.torch.save_file(model.state_dict(), path)") from exc


def load_state_into(model: nn.Module, state: dict[str, torch.Tensor],
                    source: str = "checkpoint") -> nn.Module:
    """Copy ``state`` into ``model`` after checking every tensor name and shape."""
    expected = model.state_dict()
    arch = getattr(model, "arch", type(model).__name__)
    for key, tensor in expected.items():
        if key not in state:
            raise CheckpointMismatch(f"{source} lacks tensor {key!r} of shape {tuple(tensor.shape)} "
                                     f"required by {arch}")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointMismatch(
                f"tensor {key!r} has shape {tuple(state[key].shape)} in the {source} but "
                f"{arch} expects {tuple(tensor.shape)}")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise CheckpointMismatch(f"{source} has tensor(s) {extra[:5]} that {arch} does not have")
    model.load_state_dict(state)
    return model


def load_checkpoint(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Load ``path`` into ``model`` or, if None, into a network rebuilt from the JSON sidecar."""
    path = Path(path)
    state = read_state(path)
    if model is None:
        info = json.loads(path.with_suffix(".json").read_text())
        model = build_model(info["arch"], info["num_outputs"], info["in_channels"],
                            info["image_size"], **info.get("hparams", {}))
    return load_state_into(model, state, source=path.name)


def read_meta(path: str | Path) -> dict[str, Any]:
    """The JSON sidecar of a checkpoint."""
    return json.loads(Path(path).with_suffix(".json").read_text())


def nets_from_uploads(arch: str, files: Mapping[str, bytes], outputs: Mapping[str, int], in_channels: int,
                      image_size: int = 32) -> list[nn.Module]:
    """One network per task from uploaded safetensors bytes, in the order of ``outputs``.

    files: {task: bytes}; outputs: {task: number of labels}, in task order. Safe: safetensors (no
    pickle) + :func:`load_state_into` (name/shape checks) into
    ``build_model(arch, outputs[task], in_channels, image_size)``. Raises ConfigError for a
    missing file, CheckpointMismatch (naming the task) for one that is not safetensors or does
    not fit.
    """
    missing = [t for t in outputs if not files.get(t)]
    if missing:
        raise ConfigError(f"upload one .safetensors checkpoint per task; missing: {missing}")
    nets = []
    for t, n_out in outputs.items():
        try:
            state = load(files[t])
        except (SafetensorError, ValueError) as exc:
            raise CheckpointMismatch(
                f"{t}.safetensors is not a safetensors checkpoint ({exc}); save weights with "
                "safetensors.torch.save_file(model.state_dict(), path)") from exc
        model = build_model(arch, n_out, in_channels, image_size)
        try:
            nets.append(load_state_into(model, state, source=f"checkpoint of task {t}").eval())
        except CheckpointMismatch as exc:
            raise CheckpointMismatch(f"task {t}: {exc}") from exc
    return nets
