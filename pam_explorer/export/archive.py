"""Export / load a merged model as one zip: weights in safetensors + a JSON manifest.

Nothing in the file executes on load: the manifest is plain JSON (format, kind, tasks, geometry,
group widths, connectivity, provenance, preprocessing, alpha, FLOPs per subset, accuracies,
versions) and the
weights are a safetensors blob. :func:`load` rebuilds an all-zero MergedNet of the recorded
structure and copies the weights in, so its outputs equal the exported model's. A member is never
read past a cap (the manifest: :data:`MAX_MANIFEST_BYTES`; the weights: :data:`BYTES_PER_PARAM` per
number the manifest's geometry and widths declare, which are at most :data:`MAX_PARAMS`), so a small
zip cannot expand to hundreds of MB in memory; anything malformed
is an :class:`~pam_explorer.core.errors.ExportError`. :func:`write_outputs` is the one way export
writes files: refused if a path exists (unless ``force``) or is a directory, atomic, and nothing is
left behind when it fails.
Chain nets keep format ``pam-explorer-merged/1``; residual nets (wired geometry,
per-neuron-layer widths) are ``pam-explorer-merged/2``, which a reader of version 1 refuses
instead of misreading.
"""
from __future__ import annotations

import contextlib
import io
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from pam_explorer.core.errors import ConfigError, DataMissing, ExportError, PamError, StructureError
from pam_explorer.core.geometry import NetGeometry, Widths, check_widths
from pam_explorer.core.io import atomic_path, dumps_strict
from pam_explorer.core.subsets import subset_key
from pam_explorer.cost.analytic import costs_from_widths, subset_costs
from pam_explorer.export.manifest_check import check_manifest
from pam_explorer.merge.merged_net import MergedNet
from pam_explorer.zoo.checkpoint import load_state_into

FORMAT = "pam-explorer-merged/1"  # chain nets: unchanged since the first export (a "kind" key added)
FORMATS = {"chain": FORMAT, "residual": "pam-explorer-merged/2"}  # by NetGeometry.kind
WEIGHTS, MANIFEST = "weights.safetensors", "manifest.json"
MAX_MANIFEST_BYTES = 16 << 20  # a manifest is a few hundred kB even for VGG-16 with provenance
# the largest network an export may declare, in numbers (parameters): 50 M, i.e. 200 MB of float32
# weights; a full-width ResNet-50 (25.6 M, about 100 MB) loads, ten times that is refused before
# anything is read. The weights member is read up to BYTES_PER_PARAM per declared number (float32
# weights and BatchNorm statistics take about 4.1 to 4.6; safetensors headers come on top)
MAX_PARAMS = 50_000_000
BYTES_PER_PARAM = 8


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
        zf.writestr(MANIFEST, dumps_strict(manifest_of(net, extra), sort_keys=True))
        zf.writestr(WEIGHTS, st_save(state))
    return buf.getvalue()


def save(net: MergedNet, path: str | Path, extra: dict[str, Any] | None = None, force: bool = True) -> Path:
    """Write the export zip to ``path`` (atomically; see :func:`write_outputs`). ``force=False``
    refuses to replace an existing file (the CLI's default); ConfigError then, before any work."""
    path = Path(path)
    check_output(path, force)
    return write_outputs({path: to_bytes(net, extra)}, force)[0]


def check_output(path: Path, force: bool) -> None:
    """ConfigError if ``path`` is a directory, or exists and ``force`` is off."""
    if path.is_dir():
        raise ConfigError(f"output {path} is a directory; give a file name, e.g. {path / 'model.zip'}")
    if (path.exists() or path.is_symlink()) and not force:
        raise ConfigError(f"output {path} exists; choose another file or pass --force (force=True) to "
                          "replace it")


def write_outputs(files: Mapping[Path, bytes], force: bool = False) -> list[Path]:
    """Write every ``{path: bytes}`` atomically, in order (the last one renamed last); missing
    parent folders are created. Refused (ConfigError) as :func:`check_output` says; if writing
    fails, nothing is left behind (no temporary file, no folder it created) and an ExportError
    names the path."""
    paths = [Path(p) for p in files]
    for p in paths:
        check_output(p, force)
    created: list[Path] = []
    current = paths[0]
    try:
        for p in paths:
            for d in reversed(_missing_dirs(p.parent)):  # shallowest first
                d.mkdir()
                created.append(d)
        with contextlib.ExitStack() as stack:
            for p, data in reversed(list(zip(paths, files.values()))):  # exits rename the first first
                current = p
                stack.enter_context(atomic_path(p)).write_bytes(data)
    except OSError as exc:
        for d in reversed(created):
            with contextlib.suppress(OSError):
                d.rmdir()
        raise ExportError(f"cannot write {current}: {exc.strerror or exc}") from exc
    return paths


def _missing_dirs(folder: Path) -> list[Path]:
    """``folder`` and its missing ancestors, deepest first."""
    out = []
    while not folder.exists():
        out.append(folder)
        folder = folder.parent
    return out


def read_manifest(path_or_bytes: str | Path | bytes) -> dict[str, Any]:
    """The manifest (JSON object) of an export, from a path or the zip's bytes; ExportError if the
    file is not a zip with one, or if a part readers show is malformed (:mod:`.manifest_check`)."""
    with _open(path_or_bytes) as zf:
        if MANIFEST not in zf.namelist():
            raise ExportError(f"not a PAM Explorer export: no {MANIFEST} in {sorted(zf.namelist())[:10]}")
        return check_manifest(_manifest(zf))  # the parts readers show have the right types


def load(path_or_bytes: str | Path | bytes) -> MergedNet:
    """Rebuild the exported MergedNet (eval mode) from a path or the zip's bytes; ExportError if
    the file is malformed (the message names what), CheckpointMismatch if weights and manifest
    disagree."""
    with _open(path_or_bytes) as zf:
        names = set(zf.namelist())
        if not {MANIFEST, WEIGHTS} <= names:
            raise ExportError(f"not a PAM Explorer export: expected {MANIFEST} and {WEIGHTS}, found "
                              f"{sorted(names)[:10]}")
        manifest = _manifest(zf)
        if manifest.get("format") not in FORMATS.values():
            raise ExportError(f"unsupported export format {manifest.get('format')!r}; expected one of "
                              f"{sorted(FORMATS.values())}")
        geometry, widths, prov = _structure(manifest)
        if FORMATS[geometry.kind] != manifest["format"]:
            raise ExportError(f"export format {manifest['format']!r} does not hold a {geometry.kind} network")
        least, cap = _declared_size(geometry, widths)
        raw = _read_member(zf, WEIGHTS, cap)
    try:
        state = st_load(raw)
    except (safetensors.SafetensorError, ValueError, OverflowError) as exc:
        raise ExportError(f"not a PAM Explorer export: {WEIGHTS} is not a safetensors file ({exc})") from exc
    held = sum(v.numel() for v in state.values())
    if held < least:  # checked before the empty net of the declared size is allocated
        raise ExportError(f"{WEIGHTS} holds {held:,} numbers; the network {MANIFEST} declares needs at "
                          f"least {least:,}")
    try:
        net = MergedNet.from_widths(geometry, widths, prov)
    except StructureError as exc:
        raise ExportError(f"{MANIFEST} describes no valid network: {exc}") from exc
    return load_state_into(net, state, source="export").eval()


def _structure(manifest: dict[str, Any]) -> tuple[NetGeometry, dict[str, dict[str, int]], dict]:
    """Geometry, group widths and provenance of a manifest; ExportError naming a missing or
    malformed entry."""
    missing = [k for k in ("geometry", "group_widths", "provenance") if k not in manifest]
    if missing:
        raise ExportError(f"not a PAM Explorer export: {MANIFEST} lacks {missing}")
    try:
        geometry = NetGeometry.from_dict(manifest["geometry"])
        widths = {str(layer): {str(k): int(n) for k, n in g.items()}
                  for layer, g in manifest["group_widths"].items()}
        if any(n < 0 for g in widths.values() for n in g.values()):
            raise ValueError("a group width is negative")
        prov = {layer: {k: [tuple(int(x) for x in p) for p in v] for k, v in d.items()}
                for layer, d in manifest["provenance"].items()}
        _declared_size(geometry, widths)  # every layer has widths, every key is a subset, not too large
    except ExportError:
        raise
    except PamError as exc:
        raise ExportError(f"{MANIFEST} describes no valid network: {exc}") from exc
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ExportError(f"{MANIFEST} is malformed ({type(exc).__name__}: {exc})") from exc
    return geometry, widths, prov


def _declared_size(geometry: NetGeometry, widths: Widths) -> tuple[int, int]:
    """(fewest numbers the weights of the declared network hold: its parameters, as the analytic
    cost model counts them for all tasks; most bytes they can take: ``BYTES_PER_PARAM`` per
    number, plus room for the safetensors header). Raises a PamError for widths that do not fit
    the geometry, ExportError for a network of more than ``MAX_PARAMS`` numbers."""
    check_widths(geometry, widths)
    params = costs_from_widths(geometry, widths)[subset_key(geometry.tasks)]["params"]
    if params > MAX_PARAMS:
        raise ExportError(f"{MANIFEST} declares a network of {params:,} numbers, more than the "
                          f"{MAX_PARAMS:,} an export may hold (200 MB of float32 weights)")
    tensors = 8 * (len(geometry.layers) + len(geometry.tasks)) + sum(len(g) for g in widths.values())
    return params, BYTES_PER_PARAM * params + 4096 + 1024 * tensors


def _read_member(zf: zipfile.ZipFile, name: str, cap: int) -> bytes:
    """The bytes of member ``name``, never reading more than ``cap`` (ExportError if larger)."""
    info = zf.getinfo(name)
    if info.file_size > cap:
        raise ExportError(f"not a PAM Explorer export: {name} holds {info.file_size:,} bytes, more than "
                          f"the {cap:,} its manifest allows")
    try:
        with zf.open(info) as fh:
            data = fh.read(cap + 1)
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
        raise ExportError(f"not a PAM Explorer export: {name} cannot be read ({exc})") from exc
    if len(data) > cap:
        raise ExportError(f"not a PAM Explorer export: {name} expands past the {cap:,} bytes its manifest "
                          "allows")
    return data


def _manifest(zf: zipfile.ZipFile) -> dict[str, Any]:
    raw = _read_member(zf, MANIFEST, MAX_MANIFEST_BYTES)
    try:
        manifest = json.loads(raw)
    except ValueError as exc:  # bad JSON or text encoding
        raise ExportError(f"not a PAM Explorer export: {MANIFEST} is not JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise ExportError(f"not a PAM Explorer export: {MANIFEST} holds a JSON {type(manifest).__name__}, "
                          "not an object")
    return manifest


def _open(path_or_bytes: str | Path | bytes) -> zipfile.ZipFile:
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else Path(path_or_bytes)
    try:
        return zipfile.ZipFile(src)
    except zipfile.BadZipFile as exc:
        raise ExportError("not a PAM Explorer export (the file is not a zip archive)") from exc
    except IsADirectoryError as exc:
        raise ExportError(f"{src} is a directory, not an export file") from exc
    except FileNotFoundError as exc:
        raise DataMissing(f"export file {src} does not exist") from exc


__all__ = ["FORMAT", "FORMATS", "WEIGHTS", "MANIFEST", "MAX_MANIFEST_BYTES", "MAX_PARAMS", "BYTES_PER_PARAM",
           "manifest_of", "to_bytes", "save", "check_output", "write_outputs", "read_manifest", "load"]
