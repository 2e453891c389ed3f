"""Export / load a merged model as one zip: weights in safetensors + a JSON manifest.

Nothing in the file executes on load: the manifest is plain JSON (format, kind, tasks, geometry,
group widths, connectivity, provenance, preprocessing, alpha, FLOPs per subset, accuracies,
versions) and the
weights are a safetensors blob. :func:`load` rebuilds an all-zero MergedNet of the recorded
structure and copies the weights in, so its outputs equal the exported model's. Chain nets keep
format ``pam-explorer-merged/1``; residual nets (wired geometry, per-neuron-layer widths) are
``pam-explorer-merged/2``, which a reader of version 1 refuses instead of misreading.
:func:`merged_model_bytes` is the export of the explorer's merged model at a regroup config (what
the dashboard's Export page serves).
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import safetensors
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from pam_explorer.core.config import RegroupConfig
from pam_explorer.core.errors import ExportError
from pam_explorer.core.geometry import NetGeometry
from pam_explorer.core.io import write_bytes_atomic
from pam_explorer.cost.analytic import subset_costs
from pam_explorer.merge.build import merge_networks
from pam_explorer.merge.merged_net import MergedNet
from pam_explorer.regroup.explorer import Explorer
from pam_explorer.zoo.checkpoint import load_state_into

FORMAT = "pam-explorer-merged/1"  # chain nets: unchanged since the first export (a "kind" key added)
FORMATS = {"chain": FORMAT, "residual": "pam-explorer-merged/2"}  # by NetGeometry.kind
WEIGHTS, MANIFEST = "weights.safetensors", "manifest.json"


def manifest_of(net: MergedNet, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything needed to rebuild and understand ``net`` (JSON-able)."""
    # per module layer (for a chain net: per layer); widths and provenance are per neuron layer
    connectivity = {layer: {key: net.reads(layer, key) for key in net.groups[layer]}
                    for layer in net.module_layers}
    return {
        "format": FORMATS[net.geometry.kind],
        "kind": net.geometry.kind,
        "tasks": list(net.tasks),
        "geometry": net.geometry.to_dict(),
        "group_widths": net.group_widths(),
        "connectivity": connectivity,
        "head_reads": {t: net.head_reads(t) for t in net.tasks},
        "provenance": {layer: {k: [list(p) for p in v] for k, v in d.items()}
                       for layer, d in net.provenance_map().items()},
        "flops": {s: c["flops"] for s, c in subset_costs(net).items()},
        "params": {s: c["params"] for s, c in subset_costs(net).items()},
        "preprocessing": {"input": "images (N, C, H, W) float32 in [0, 1]"},
        "versions": {"torch": torch.__version__, "safetensors": safetensors.__version__},
        **(extra or {}),
    }


def to_bytes(net: MergedNet, extra: dict[str, Any] | None = None) -> bytes:
    """The export zip as bytes (for a download button)."""
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(MANIFEST, json.dumps(manifest_of(net, extra), indent=2, sort_keys=True))
        zf.writestr(WEIGHTS, st_save(state))
    return buf.getvalue()


def save(net: MergedNet, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write the export zip to ``path`` (atomically: a failed write leaves no partial file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_bytes_atomic(path, to_bytes(net, extra))


def read_manifest(path_or_bytes: str | Path | bytes) -> dict[str, Any]:
    """The manifest (JSON) of an export, from a path or the zip's bytes; ExportError if it has none."""
    with _open(path_or_bytes) as zf:
        if MANIFEST not in zf.namelist():
            raise ExportError(f"not a PAM Explorer export: no {MANIFEST} in {sorted(zf.namelist())}")
        return _manifest(zf)


def load(path_or_bytes: str | Path | bytes) -> MergedNet:
    """Rebuild the exported MergedNet (eval mode) from a path or the zip's bytes."""
    with _open(path_or_bytes) as zf:
        names = set(zf.namelist())
        if not {MANIFEST, WEIGHTS} <= names:
            raise ExportError(f"not a PAM Explorer export: expected {MANIFEST} and {WEIGHTS}, found "
                              f"{sorted(names)}")
        manifest = _manifest(zf)
        state = st_load(zf.read(WEIGHTS))
    if manifest.get("format") not in FORMATS.values():
        raise ExportError(f"unsupported export format {manifest.get('format')!r}; expected one of "
                          f"{sorted(FORMATS.values())}")
    geometry = NetGeometry.from_dict(manifest["geometry"])
    if FORMATS[geometry.kind] != manifest["format"]:
        raise ExportError(f"export format {manifest['format']!r} does not hold a {geometry.kind} network")
    prov = {layer: {k: [tuple(p) for p in v] for k, v in d.items()}
            for layer, d in manifest["provenance"].items()}
    net = MergedNet.from_widths(geometry, manifest["group_widths"], prov)
    return load_state_into(net, state, source="export").eval()


def _manifest(zf: zipfile.ZipFile) -> dict[str, Any]:
    try:
        manifest = json.loads(zf.read(MANIFEST))
    except ValueError as exc:  # bad JSON or text encoding
        raise ExportError(f"not a PAM Explorer export: {MANIFEST} is not JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise ExportError(f"not a PAM Explorer export: {MANIFEST} holds no JSON object")
    return manifest


def _open(path_or_bytes: str | Path | bytes) -> zipfile.ZipFile:
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else Path(path_or_bytes)
    try:
        return zipfile.ZipFile(src)
    except zipfile.BadZipFile as exc:
        raise ExportError("not a PAM Explorer export (the file is not a zip archive)") from exc


def merged_model_bytes(explorer: Explorer, cfg: RegroupConfig) -> bytes:
    """The export zip of the explorer's networks merged at ``cfg`` (before finetuning and pruning),
    with alpha, preset, algorithm, overrides and MI settings in the manifest. Raises
    StructureError if the groups at cfg cannot be built as a network."""
    net = merge_networks(explorer.nets, explorer.tasks, explorer.groups(cfg))
    extra = {"alpha": cfg.alpha, "preset": explorer.preset.name, "algorithm": cfg.algorithm,
             "alpha_overrides": dict(cfg.overrides),
             "mi": {"n_samples": explorer.mi.n_samples, "sigma2": explorer.mi.sigma2}}
    return to_bytes(net, extra)


__all__ = ["FORMAT", "FORMATS", "WEIGHTS", "MANIFEST", "manifest_of", "to_bytes", "save", "read_manifest",
           "load", "merged_model_bytes"]
