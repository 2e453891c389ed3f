"""A user's network file as a single-task network of a registered architecture.

Three kinds of file load, none of them by running code from it:

* this project's own checkpoint: ``X.safetensors`` with its JSON sidecar ``X.json``
  (:mod:`pam_explorer.zoo.checkpoint`), which names the architecture and its options;
* a ``.safetensors`` file without a sidecar (the architecture and options may also sit in its
  header's ``__metadata__`` as ``arch`` and ``hparams``, a JSON object);
* a plain PyTorch state_dict, ``.pth`` / ``.pt``, read with ``torch.load(weights_only=True)``.

What the file does not say comes from the caller (a project file's ``arch`` and options), and
options still unknown are read off the tensor shapes (:func:`infer_options`: a ResNet's width
from its stage widths and its stem from conv1's kernel, a LeNet's width from its layers, ...).
Then the head must have one output per label of the task, every tensor must fit the
architecture by name and shape, and every weight must be finite. Each error is a one-line
:class:`~pam_explorer.core.errors.PamError` that starts with ``where`` (e.g. ``"pam.toml:
tasks.A.net (nets/A.pth)"``). The network comes back in eval mode.
"""
from __future__ import annotations

import inspect
import io
import itertools
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from torch import nn

from pam_explorer.core.errors import CheckpointMismatch, ConfigError, DataError, DataMissing, PamError
from pam_explorer.zoo.checkpoint import load_state_into, read_meta, read_state
from pam_explorer.zoo.registry import build_model, get_model, list_models, model_options
from pam_explorer.zoo.resnet import read_torchvision_state

State = dict[str, torch.Tensor]
SUFFIXES = (".safetensors", ".pth", ".pt")
MAX_CANDIDATES = 64  # option combinations tried against the shapes


def read_network_file(path: str | Path) -> tuple[State, dict | None]:
    """(state dict, what its sidecar or header says: {"arch", "hparams", ...} or None)."""
    path = Path(path)
    if not path.is_file():
        raise DataMissing(f"network file {path} does not exist")
    if path.suffix not in SUFFIXES:
        raise CheckpointMismatch(f"{path.name}: a network file must be .safetensors, or a state_dict saved "
                                 f"as .pth / .pt; got {path.suffix or 'no suffix'}")
    state = read_state(path) if path.suffix == ".safetensors" else read_torchvision_state(path)
    if path.with_suffix(".json").is_file():
        return state, read_meta(path)
    return state, _header_meta(_header_bytes(path)) if path.suffix == ".safetensors" else None


def read_network_bytes(raw: bytes, filename: str, sidecar: bytes | None = None) -> tuple[State, dict | None]:
    """As :func:`read_network_file` for uploaded bytes (``sidecar``: the uploaded JSON, if any)."""
    suffix = Path(filename).suffix
    if suffix not in SUFFIXES:
        raise CheckpointMismatch(f"{filename}: a network file must be .safetensors, .pth or .pt")
    if suffix == ".safetensors":
        try:
            state = st_load(raw)
        except (SafetensorError, ValueError) as exc:
            raise CheckpointMismatch(f"{filename} is not a safetensors file ({exc})") from exc
        meta = _header_meta(raw)
    else:
        try:
            state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable or unsafe pickle is the user's file
            raise CheckpointMismatch(f"{filename} could not be read with torch.load(weights_only=True) "
                                     f"({exc}); save the weights as safetensors instead") from exc
        state, meta = _plain_state(state, filename), None
    if sidecar is not None:
        try:
            meta = json.loads(sidecar)
        except ValueError as exc:
            raise DataError(f"the sidecar of {filename} is not valid JSON ({exc})") from exc
        if not isinstance(meta, dict):
            raise DataError(f"the sidecar of {filename} must hold a JSON object")
    return state, meta


def _plain_state(state: Any, filename: str) -> State:
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointMismatch(f"{filename} holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _header_bytes(path: Path) -> bytes:
    with path.open("rb") as fh:
        head = fh.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else 0
        return head + fh.read(min(n, 100_000_000))


def _header_meta(raw: bytes) -> dict | None:
    """{"arch", "hparams"} from a safetensors header's ``__metadata__`` (strings), if it has them."""
    n = int.from_bytes(raw[:8], "little") if len(raw) >= 8 else 0
    try:
        meta = json.loads(raw[8:8 + n]).get("__metadata__") or {}
        if "arch" not in meta:
            return None
        hparams = json.loads(meta.get("hparams", "{}"))
    except (ValueError, AttributeError):
        return None
    return {"arch": meta["arch"], "hparams": hparams if isinstance(hparams, dict) else {}}


def network_from_state(state: State, meta: dict | None, *, arch: str | None, options: Mapping[str, Any],
                       num_outputs: int, in_channels: int, image_size: int, where: str) -> nn.Module:
    """The network ``state`` describes (see the module docstring); ``meta``: its sidecar/header."""
    try:
        arch, options = _arch_and_options(meta or {}, arch, dict(options), in_channels, where)
        _check_head(state, arch, options, num_outputs, in_channels, image_size, where)
        options = infer_options(arch, state, options, num_outputs, in_channels, image_size)
        model = build_model(arch, num_outputs, in_channels, image_size, **options)
        return load_state_into(model, state, source="file").eval()
    except PamError as exc:
        raise type(exc)(str(exc) if str(exc).startswith(where) else f"{where}: {exc}") from exc
    except TypeError as exc:  # an option value of the wrong kind
        raise ConfigError(f"{where}: cannot build {arch} with options {options} ({exc})") from exc


def _arch_and_options(meta: dict, arch: str | None, options: dict, in_channels: int,
                      where: str) -> tuple[str, dict]:
    have = meta.get("arch")
    if arch is not None and have is not None and have != arch:
        raise CheckpointMismatch(f"arch is {arch!r}, but the file's sidecar describes a {have} network")
    arch = arch or have
    if arch is None:
        raise ConfigError(f"which architecture is it? Name it (arch = \"...\"; registered: "
                          f"{', '.join(list_models())})")
    get_model(arch)  # ConfigError naming the registered ones
    known = model_options(arch)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"{arch} has no option {unknown[0]!r}; its options: {', '.join(known)}")
    hparams = meta.get("hparams") or {}
    clash = sorted(k for k in set(hparams) & set(options) if hparams[k] != options[k])
    if clash:
        raise ConfigError(f"{clash[0]} = {options[clash[0]]!r}, but the file's sidecar says "
                          f"{hparams[clash[0]]!r}; remove one of them")
    side_ch = meta.get("in_channels")
    if isinstance(side_ch, int) and side_ch != in_channels:
        raise CheckpointMismatch(f"the network reads {side_ch}-channel pictures, but the project's "
                                 f"channels = {in_channels}")
    return arch, {**{k: v for k, v in hparams.items() if k in known}, **options}


def _meta_model(arch: str, options: Mapping, num_outputs: int, in_channels: int, image_size: int
                ) -> nn.Module | None:
    """The network's shapes without its memory (meta device); None if the options cannot build it."""
    try:
        with torch.device("meta"):
            return build_model(arch, num_outputs, in_channels, image_size, **options)
    except (PamError, TypeError, ValueError, RuntimeError):
        return None


def _check_head(state: State, arch: str, options: Mapping, num_outputs: int, in_channels: int,
                image_size: int, where: str) -> None:
    model = _meta_model(arch, options, num_outputs, in_channels, image_size)
    head = getattr(model, "head", None)
    if head is None:
        return
    key = next(n for n, p in model.named_parameters() if p is head.weight)
    if key in state and state[key].dim() == 2 and state[key].shape[0] != num_outputs:
        raise CheckpointMismatch(f"its head ({key}) has {state[key].shape[0]} outputs, but the task has "
                                 f"{num_outputs} label(s): one output per label")


def infer_options(arch: str, state: State, given: Mapping[str, Any], num_outputs: int, in_channels: int,
                  image_size: int) -> dict:
    """``given`` plus the options of ``arch`` it lacks, read off the shapes in ``state``: the first
    combination of candidates (width from the ratio of a layer's width to the default one, the
    ResNet stem from conv1's kernel, extra FC layers from their names, the FC width of a VGG) whose
    network has exactly the state's tensor names and shapes; an option at its default is left
    out. None fits: the combination that fits the most tensors (loading then names the first
    tensor that does not fit)."""
    free = [o for o in model_options(arch) if o not in given]
    if not free or _fit(arch, dict(given), state, num_outputs, in_channels, image_size) == 1.0:
        return dict(given)
    base = _meta_model(arch, given, num_outputs, in_channels, image_size)
    pools = [_candidates(o, state, base) for o in free]
    best, best_fit = dict(given), -1.0
    for combo in itertools.islice(itertools.product(*pools), MAX_CANDIDATES):
        opts = {**given, **{o: v for o, v in zip(free, combo) if v is not None}}
        fit = _fit(arch, opts, state, num_outputs, in_channels, image_size)
        if fit > best_fit:
            best, best_fit = opts, fit
        if fit == 1.0:
            break
    defaults = {n: p.default for n, p in inspect.signature(get_model(arch).factory).parameters.items()}
    return {k: v for k, v in best.items() if k in given or v != defaults.get(k)}


def _fit(arch: str, options: dict, state: State, num_outputs: int, in_channels: int,
         image_size: int) -> float:
    """The fraction of the network's tensors that ``state`` has by name and shape (1.0: all, and
    nothing more); -1 if the options do not build."""
    model = _meta_model(arch, options, num_outputs, in_channels, image_size)
    if model is None:
        return -1.0
    want = model.state_dict()
    same = sum(k in state and tuple(state[k].shape) == tuple(v.shape) for k, v in want.items())
    return 1.0 if same == len(want) == len(state) else same / max(len(want), len(state)) * 0.999


def _candidates(option: str, state: State, base: nn.Module | None) -> list:
    """Values of ``option`` to try, the likeliest first (None: the architecture's default)."""
    if option == "small_input":
        stem = state.get("conv1.weight")
        return [stem is not None and stem.shape[-1] == 3, stem is None or stem.shape[-1] != 3]
    if option == "extra_fc":
        fcs = [int(m.group(1)) for k in state if (m := re.match(r"blocks\.fc(\d+)\.", k))]
        return [max(0, max(fcs, default=2) - 2)]
    if option == "fc_width":
        fc1 = state.get("blocks.fc1.0.weight")
        return [int(fc1.shape[0])] if fc1 is not None else [None]
    if option == "width" and base is not None:
        pairs = [(int(t.shape[0]), state[k].shape[0] / t.shape[0]) for k, t in base.state_dict().items()
                 if t.dim() >= 2 and k in state and state[k].dim() == t.dim()]
        ratios = [r for _, r in sorted(pairs, key=lambda p: -p[0])]
        return list(dict.fromkeys([*(round(r, 6) for r in ratios), None]))[:16]
    return [None]


def networks_from_uploads(arch: str, files: Mapping[str, tuple[str, bytes]], outputs: Mapping[str, int],
                          in_channels: int, image_size: int) -> list[nn.Module]:
    """One network per task from uploaded files, in the order of ``outputs`` ({task: labels}).

    files: {task: (file name, bytes)}: .safetensors (options from its header's shapes or
    metadata) or .pth / .pt state_dicts; ``arch`` is the architecture chosen for all of them.
    Raises ConfigError for a missing file, else what :func:`network_from_state` raises, naming
    the task and the file.
    """
    missing = [t for t in outputs if not files.get(t) or not files[t][1]]
    if missing:
        raise ConfigError(f"upload one network file per task; missing: {missing}")
    nets = []
    for t, n_out in outputs.items():
        name, raw = files[t]
        where = f"task {t} ({name})"
        try:
            state, meta = read_network_bytes(raw, name)
        except PamError as exc:
            raise type(exc)(f"{where}: {exc}") from exc
        nets.append(network_from_state(state, meta, arch=arch, options={}, num_outputs=n_out,
                                       in_channels=in_channels, image_size=image_size, where=where))
    return nets


__all__ = ["read_network_file", "read_network_bytes", "network_from_state", "infer_options",
           "networks_from_uploads", "SUFFIXES"]
