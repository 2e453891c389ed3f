"""Export / load a merged model as one zip: weights in safetensors + a JSON manifest.

Nothing in the file executes on load: the manifest is plain JSON (tasks, geometry, group widths,
connectivity, provenance, preprocessing, alpha, FLOPs per subset, accuracies, versions) and the
weights are a safetensors blob. :func:`load` rebuilds an all-zero MergedNet of the recorded
structure and copies the weights in, so its outputs equal the exported model's.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from pam_explorer.cost import NetGeometry, subset_costs
from pam_explorer.merged_net import MergedNet
from pam_explorer.zoo.checkpoint import load_state_into

FORMAT = "pam-explorer-merged/1"
WEIGHTS, MANIFEST = "weights.safetensors", "manifest.json"


def manifest_of(net: MergedNet, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything needed to rebuild and understand ``net`` (JSON-able)."""
    import safetensors
    connectivity = {layer: {key: net.reads(layer, key) for key in groups}
                    for layer, groups in net.group_widths().items()}
    return {
        "format": FORMAT,
        "tasks": list(net.tasks),
        "geometry": net.geometry.to_dict(),
        "group_widths": net.group_widths(),
        "connectivity": connectivity,
        "head_reads": {t: net.head_reads(t) for t in net.tasks},
        "provenance": {l: {k: [list(p) for p in v] for k, v in d.items()}
                       for l, d in net.provenance_map().items()},
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
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(to_bytes(net, extra))
    tmp.replace(path)
    return path


def read_manifest(path_or_bytes: str | Path | bytes) -> dict[str, Any]:
    with _open(path_or_bytes) as zf:
        return json.loads(zf.read(MANIFEST))


def load(path_or_bytes: str | Path | bytes) -> MergedNet:
    """Rebuild the exported MergedNet (eval mode) from a path or the zip's bytes."""
    with _open(path_or_bytes) as zf:
        names = set(zf.namelist())
        if not {MANIFEST, WEIGHTS} <= names:
            raise ValueError(f"not a PAM Explorer export: expected {MANIFEST} and {WEIGHTS}, found {sorted(names)}")
        manifest = json.loads(zf.read(MANIFEST))
        state = st_load(zf.read(WEIGHTS))
    if manifest.get("format") != FORMAT:
        raise ValueError(f"unsupported export format {manifest.get('format')!r}; expected {FORMAT!r}")
    geometry = NetGeometry.from_dict(manifest["geometry"])
    prov = {l: {k: [tuple(p) for p in v] for k, v in d.items()} for l, d in manifest["provenance"].items()}
    net = MergedNet.from_widths(geometry, manifest["group_widths"], prov)
    return load_state_into(net, state, source="export").eval()


def _open(path_or_bytes: str | Path | bytes) -> zipfile.ZipFile:
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else Path(path_or_bytes)
    try:
        return zipfile.ZipFile(src)
    except zipfile.BadZipFile as exc:
        raise ValueError("not a PAM Explorer export (the file is not a zip archive)") from exc
