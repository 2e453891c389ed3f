"""Safe checkpoints: safetensors weights + a JSON sidecar describing how to rebuild the net.

Loading never unpickles anything. A checkpoint that does not fit the architecture raises
:class:`~pam_explorer.core.errors.CheckpointMismatch` naming the first mismatched tensor; a tensor
with NaN or inf values, or a sidecar that is not JSON, lacks a key or names an unknown
hyper-parameter, or declares a size beyond :data:`SIDECAR_LIMITS`, raises
:class:`~pam_explorer.core.errors.DataError` naming the tensor or the file; the network a sidecar
describes is checked against the weights on the meta device before any memory is allocated.
Uploaded checkpoints (the dashboard's Setup page) load through :func:`nets_from_uploads`.
Both files are written atomically (core/io.py).
"""
from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, load_file, save
from torch import nn

from pam_explorer.core.errors import CheckpointMismatch, ConfigError, DataError, DataMissing, PamError
from pam_explorer.core.io import dumps_strict, write_bytes_atomic, write_text_atomic
from pam_explorer.zoo.registry import build_model, get_model

SIDECAR_KEYS = ("arch", "num_outputs", "in_channels", "image_size")  # + optional "hparams"
# the sizes a sidecar may declare (labels per task, picture channels, picture side in pixels):
# far above any network here, far below what would exhaust memory before the weights are checked
SIDECAR_LIMITS = {"num_outputs": 100_000, "in_channels": 1_024, "image_size": 8_192}


def save_checkpoint(model: nn.Module, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write ``path`` (.safetensors) and ``path`` with suffix .json (architecture + ``meta``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    write_bytes_atomic(path, save(state))
    info = {
        "arch": getattr(model, "arch", None),
        "num_outputs": getattr(model, "num_outputs", None),
        "in_channels": getattr(model, "in_channels", None),
        "image_size": getattr(model, "image_size", None),
        "hparams": getattr(model, "hparams", {}),
        **(meta or {}),
    }
    write_text_atomic(path.with_suffix(".json"), dumps_strict(info, sort_keys=True))
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
    check_fits(model, state, source)
    for key, tensor in state.items():
        if (tensor.is_floating_point() or tensor.is_complex()) and not bool(torch.isfinite(tensor).all()):
            raise DataError(f"tensor {key!r} in the {source} has non-finite values "
                            f"({int(torch.isnan(tensor).sum())} NaN, {int(torch.isinf(tensor).sum())} inf); "
                            "a network with them computes NaN outputs, so it is not loaded")
    model.load_state_dict(state)
    return model


def check_fits(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """CheckpointMismatch unless ``state`` has exactly ``model``'s tensor names and shapes (works
    on a model built on the meta device: nothing is allocated)."""
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


def load_checkpoint(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Load ``path`` into ``model`` or, if None, into a network rebuilt from the JSON sidecar.

    The sidecar's network is first built on the meta device (no memory) and checked against the
    weights' names and shapes, so a sidecar declaring sizes the weights do not have (e.g.
    ``num_outputs: 1000000000``) is a CheckpointMismatch before anything is allocated."""
    path = Path(path)
    state = read_state(path)
    if model is None:
        side, info = path.with_suffix(".json"), read_meta(path)
        with torch.device("meta"):
            skeleton = _model_from_sidecar(side, info)
        check_fits(skeleton, state, source=path.name)
        model = _model_from_sidecar(side, info)
    return load_state_into(model, state, source=path.name)


def _model_from_sidecar(side: Path, info: dict[str, Any]) -> nn.Module:
    """An untrained network as the sidecar describes it; DataError naming ``side`` otherwise."""
    missing = [k for k in SIDECAR_KEYS if k not in info]
    if missing:
        raise DataError(f"checkpoint sidecar {side} lacks key(s) {missing}; it needs {list(SIDECAR_KEYS)} "
                        "(and optionally hparams)")
    bad = [k for k in SIDECAR_KEYS[1:] if not (isinstance(info[k], int) and not isinstance(info[k], bool)
                                              and 0 < info[k] <= SIDECAR_LIMITS[k])]
    if bad:
        raise DataError(f"checkpoint sidecar {side}: {bad[0]} must be a positive integer (at most "
                        f"{SIDECAR_LIMITS[bad[0]]:,}), got {info[bad[0]]!r}")
    hparams = info.get("hparams") or {}
    if not isinstance(hparams, dict):
        raise DataError(f"checkpoint sidecar {side}: hparams must be a JSON object, got {hparams!r}")
    try:
        factory = get_model(info["arch"]).factory
    except PamError as exc:
        raise DataError(f"checkpoint sidecar {side}: {exc}") from exc
    known = [n for n in inspect.signature(factory).parameters if n not in
             ("num_outputs", "in_channels", "image_size")]
    unknown = sorted(set(hparams) - set(known))
    if unknown:
        raise DataError(f"checkpoint sidecar {side}: unknown hparam(s) {unknown} for {info['arch']}; "
                        f"known: {known}")
    try:
        return build_model(info["arch"], info["num_outputs"], info["in_channels"], info["image_size"],
                           **hparams)
    except (TypeError, ValueError) as exc:  # a value of the wrong kind (PamError is a ValueError)
        raise DataError(f"checkpoint sidecar {side}: cannot build {info['arch']} from it ({exc})") from exc


def read_meta(path: str | Path) -> dict[str, Any]:
    """The JSON sidecar of a checkpoint (a JSON object); DataMissing / DataError naming the file."""
    side = Path(path).with_suffix(".json")
    try:
        text = side.read_text()
    except FileNotFoundError as exc:
        raise DataMissing(f"checkpoint sidecar {side} does not exist; it describes the network "
                          f"({', '.join(SIDECAR_KEYS)}, hparams)") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"checkpoint sidecar {side} cannot be read ({exc})") from exc
    try:
        info = json.loads(text)
    except ValueError as exc:
        raise DataError(f"checkpoint sidecar {side} is not valid JSON ({exc})") from exc
    if not isinstance(info, dict):
        raise DataError(f"checkpoint sidecar {side} must hold a JSON object, got {type(info).__name__}")
    return info


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
        try:
            with torch.device("meta"):  # sizes checked against the weights before any allocation
                skeleton = build_model(arch, n_out, in_channels, image_size)
            check_fits(skeleton, state, f"checkpoint of task {t}")
            model = build_model(arch, n_out, in_channels, image_size)
            nets.append(load_state_into(model, state, source=f"checkpoint of task {t}").eval())
        except CheckpointMismatch as exc:
            raise CheckpointMismatch(f"task {t}: {exc}") from exc
    return nets
