"""Per-subset export: the fused model of one task subset (:func:`pam_explorer.merge.fuse.fuse`) as
ONNX, a torch.export program (.pt2) or safetensors weights, each with a JSON manifest.

Files: the model FILE in its own format, loadable by standard tools (onnxruntime,
``torch.export.load``, ``safetensors.safe_open``), and the sidecar FILE.json: the manifest
(:data:`SUBSET_FORMAT`) with the sha256 of FILE. The manifest, less the file's hash, is also embedded
in FILE (ONNX ``metadata_props["pam_manifest"]``, the .pt2 extra file ``pam_manifest.json``, the
safetensors header ``__metadata__["pam_manifest"]``). It records the tasks and their label names,
the input (name, shape, dtype, value range, normalisation), the outputs (names, shapes, labels, how to
read a logit), the ONNX opset, FLOPs and parameters of the fused model and of the grouped subset,
and for safetensors the architecture (:mod:`pam_explorer.merge.fused_spec`), so that the file is
usable without this project. Chain nets are format ``pam-explorer-subset/1``, residual nets
``pam-explorer-subset/2`` (their architecture has the shortcut wiring, which a reader of version 1
would not know; it refuses them).

What loading executes: ONNX and safetensors files are data. ``torch.export.load`` unpickles parts
of a .pt2 archive when they are pickles (the sample inputs, tensors flagged ``use_pickle``); files
written here hold no pickle (no sample inputs, plain tensor bytes), but never load a .pt2 from a
source you do not trust. This project itself only writes .pt2 files.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import re
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from pam_explorer.core.errors import ConfigError, ExportError
from pam_explorer.core.io import dumps_strict
from pam_explorer.cost.analytic import fused_costs, subset_costs
from pam_explorer.data import get_preset
from pam_explorer.data.digits import DIGIT_NAMES
from pam_explorer.data.real import CELEBA_ATTRIBUTES, FASHION_CLASSES
from pam_explorer.export.archive import (
    MAX_MANIFEST_BYTES,
    check_output,
    load,
    manifest_of,
    read_manifest,
    write_outputs,
)
from pam_explorer.merge.fuse import FusedNet, fuse
from pam_explorer.merge.fused_spec import build, describe
from pam_explorer.merge.merged_net import MergedNet

SUBSET_FORMAT = "pam-explorer-subset/1"  # chain nets: unchanged since the first subset export
# by NetGeometry.kind: a residual fused model's architecture has wiring (source, add, post per
# layer, pam_explorer.merge.fused_spec) that a reader of version 1 would drop, so it refuses /2
SUBSET_FORMATS = {"chain": SUBSET_FORMAT, "residual": "pam-explorer-subset/2"}
MODEL_FORMATS = ("onnx", "torch-export", "safetensors")
SUFFIXES = {"onnx": ".onnx", "torch-export": ".pt2", "safetensors": ".safetensors"}
PACKAGES = {"onnx": ("onnx", "onnxscript"), "torch-export": (), "safetensors": ("safetensors",)}
OPSET = 23  # ONNX opset of the dynamo-based exporter's graphs (onnxruntime >= 1.22 runs it)
MANIFEST_KEY = "pam_manifest"
INPUT_NAME = "image"
LABEL_NAMES = {"digits": DIGIT_NAMES, "fashion": FASHION_CLASSES, "celeba": CELEBA_ATTRIBUTES}


def check_format(fmt: str) -> None:
    """ConfigError if ``fmt`` is not a known format or a package it needs is not installed."""
    if fmt not in MODEL_FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(MODEL_FORMATS)}")
    missing = []
    for name in PACKAGES[fmt]:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ConfigError(f"export format {fmt!r} needs the Python package(s) {', '.join(missing)}: "
                          f"pip install {' '.join(missing)}")


def sidecar(path: str | Path) -> Path:
    """The manifest written beside a per-subset model file: FILE.json."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def label_names(preset: str | None, tasks: list[str], outputs: list[int],
                given: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """{task: label names}: ``given`` (a project's, recorded with the run), else from the preset
    (when known and consistent), else "label 0", ..."""
    try:
        p = get_preset(preset) if preset and not str(preset).endswith(".toml") else None
    except ConfigError:
        p = None
    names = {}
    for t, n in zip(tasks, outputs):
        if isinstance(given, dict) and isinstance(given.get(t), list) and len(given[t]) == n:
            names[t] = [str(x) for x in given[t]]
            continue
        cols = p.task_labels[p.task_names.index(t)] if p is not None and t in p.task_names else None
        ok = cols is not None and len(cols) == n and p.dataset in LABEL_NAMES
        names[t] = [LABEL_NAMES[p.dataset][c] for c in cols] if ok else [f"label {i}" for i in range(n)]
    return names


def subset_manifest(net: MergedNet, fused: FusedNet, fmt: str, source: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
    """The manifest of ``fused`` (fused from ``net``) exported as ``fmt``, without the file's hash.

    source: what the merged model's own manifest records beyond its structure (scheme, preset,
    alpha, prune, accuracy, ...); kept under "source".
    """
    geo, subset = net.geometry, fused.subset
    outputs = {t: geo.head_outputs[geo.tasks.index(t)] for t in fused.tasks}
    source = dict(source or {})
    labels = label_names(source.get("preset"), list(fused.tasks), list(outputs.values()),
                         source.get("label_names"))
    grouped = subset_costs(net)[subset]
    fused_cost = fused_costs(geo, net.group_widths())[subset] if fused.layout == "dense" else grouped
    manifest = {
        "format": SUBSET_FORMATS[geo.kind], "model_format": fmt, "subset": subset, "tasks": list(fused.tasks),
        "labels": labels, "layout": fused.layout,
        "input": {"name": INPUT_NAME, "shape": ["batch", geo.in_channels, geo.image_size, geo.image_size],
                  "dtype": "float32", "layout": "NCHW", "value_range": [0.0, 1.0],
                  "normalisation": "none: pixel intensities scaled to [0, 1]; no mean or std subtracted"},
        "outputs": [{"name": name, "task": t, "shape": ["batch", outputs[t]], "labels": labels[t]}
                    for name, t in zip(fused.output_names, fused.tasks)],
        "decision": "multi-label: label present iff logit > 0 (sigmoid(logit) > 0.5)",
        "flops": fused_cost["flops"], "params": fused_cost["params"],
        "grouped_flops": grouped["flops"], "grouped_params": grouped["params"],
        "cost_note": "FLOPs = 2 x multiply-accumulates of conv/linear layers for one image",
        "groups": {name: dict(g) for name, g in zip(fused.layer_names, fused.groups)},
        "source": source,
        "versions": {"torch": torch.__version__, "safetensors": safetensors.__version__},
    }
    if fmt == "onnx":
        manifest["opset"] = OPSET
        manifest["versions"]["onnx"] = importlib.import_module("onnx").__version__
    if fmt == "safetensors":
        manifest["architecture"] = describe(fused)
    return manifest


def subset_model_bytes(net: MergedNet, subset: str, fmt: str, source: dict[str, Any] | None = None,
                       layout: str = "dense") -> tuple[bytes, dict[str, Any]]:
    """(the model file's bytes, its manifest with "sha256" and "bytes") for one subset of ``net``.

    Raises ConfigError (unknown format, missing package), StructureError (unknown subset).
    """
    check_format(fmt)
    fused = fuse(net, subset, layout).cpu()
    manifest = subset_manifest(net, fused, fmt, source)
    data = _WRITERS[fmt](fused, manifest)
    return data, {**manifest, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def subset_bytes_from_archive(archive: bytes | str | Path, subset: str, fmt: str, layout: str = "dense"
                              ) -> tuple[bytes, dict[str, Any]]:
    """(model file bytes, its manifest with "file") of one subset of a merged export zip (bytes or
    path): what the dashboard's download buttons serve. The file is named after where the model
    came from (:func:`download_name`)."""
    check_format(fmt)
    net = load(archive)
    source = {k: v for k, v in read_manifest(archive).items() if k not in manifest_of(net)}
    data, manifest = subset_model_bytes(net, subset, fmt, source, layout)
    return data, {**manifest, "file": download_name(source, subset, fmt)}


def download_name(source: Mapping[str, Any], subset: str, fmt: str) -> str:
    """pam-<preset>-<scheme>-alpha<alpha>-<subset><suffix> from an archive manifest's fields
    ("merged" when it names no scheme: a model merged but not finetuned); parts it lacks are left
    out, and anything but letters, digits and ``.+_-`` becomes ``_``."""
    alpha = source.get("alpha")
    number = isinstance(alpha, (int, float)) and not isinstance(alpha, bool)
    parts = [source.get("preset"), source.get("scheme") or "merged",
             f"alpha{alpha:g}" if number else None, subset]
    stem = "-".join(re.sub(r"[^A-Za-z0-9.+_-]", "_", str(p)) for p in parts if p not in (None, ""))
    return f"pam-{stem}{SUFFIXES[fmt]}"


def save_subset(net: MergedNet, subset: str, fmt: str, path: str | Path, source: dict[str, Any] | None = None,
                force: bool = False, layout: str = "dense") -> tuple[Path, Path]:
    """Write FILE and FILE.json (see the module docstring); returns their paths.

    Every check (output paths, format, subset) comes before any work; writing is atomic and leaves
    nothing behind when it fails (:func:`pam_explorer.export.archive.write_outputs`).
    """
    path = Path(path)
    meta = sidecar(path)
    for p in (path, meta):
        check_output(p, force)
    check_format(fmt)
    data, manifest = subset_model_bytes(net, subset, fmt, source, layout)
    text = dumps_strict({**manifest, "file": path.name}, sort_keys=True).encode()
    write_outputs({path: data, meta: text}, force)
    return path, meta


def _example(fused: FusedNet, manifest: dict[str, Any]) -> tuple[torch.Tensor, dict]:
    """A (2, C, H, W) example input and the dynamic batch dimension for the exporters."""
    _, c, h, w = manifest["input"]["shape"]
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    return torch.rand(2, c, h, w), {"x": {0: batch}}


def _manifest_text(manifest: dict[str, Any]) -> str:
    return dumps_strict(manifest, indent=None, sort_keys=True)


def _onnx_bytes(fused: FusedNet, manifest: dict[str, Any]) -> bytes:
    onnx = importlib.import_module("onnx")
    x, dynamic = _example(fused, manifest)
    # the exporter may print progress: keep stdout clean for --json
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(fused, (x,), dynamo=True, opset_version=OPSET, verbose=False,
                                    input_names=[INPUT_NAME], output_names=fused.output_names,
                                    dynamic_shapes=dynamic)
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = MANIFEST_KEY, _manifest_text(manifest)
    proto.doc_string = f"PAM Explorer fused model of task subset {fused.subset} ({manifest['format']})"
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def _pt2_bytes(fused: FusedNet, manifest: dict[str, Any]) -> bytes:
    x, dynamic = _example(fused, manifest)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(fused, (x,), dynamic_shapes=dynamic)
    program.example_inputs = None  # otherwise saved as a pickle, which torch.export.load unpickles
    buf = io.BytesIO()
    torch.export.save(program, buf, extra_files={f"{MANIFEST_KEY}.json": _manifest_text(manifest)})
    return buf.getvalue()


def _safetensors_bytes(fused: FusedNet, manifest: dict[str, Any]) -> bytes:
    state = {k: v.detach().cpu().contiguous() for k, v in fused.state_dict().items()}
    return st_save(state, metadata={MANIFEST_KEY: _manifest_text(manifest)})


_WRITERS = {"onnx": _onnx_bytes, "torch-export": _pt2_bytes, "safetensors": _safetensors_bytes}


def load_fused(path_or_bytes: str | Path | bytes) -> FusedNet:
    """The FusedNet of a safetensors subset export, rebuilt from the manifest in its header (no
    code runs: a JSON header and raw tensors); ExportError if the file is not one."""
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    manifest = read_embedded_manifest(data)
    if "architecture" not in manifest or "tasks" not in manifest:
        raise ExportError("the safetensors file's manifest has no architecture or tasks")
    try:
        state = st_load(data)
    except (safetensors.SafetensorError, ValueError) as exc:
        raise ExportError(f"not a safetensors file ({exc})") from exc
    return build(manifest["architecture"], state, list(manifest["tasks"]), manifest.get("layout", "dense"))


def read_embedded_manifest(data: bytes) -> dict[str, Any]:
    """The manifest in a safetensors subset export's header (``__metadata__["pam_manifest"]``)."""
    size = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    if not 0 < size <= min(len(data) - 8, MAX_MANIFEST_BYTES):
        raise ExportError("not a safetensors file (its header length is out of range)")
    try:
        meta = json.loads(data[8:8 + size]).get("__metadata__") or {}
        manifest = json.loads(meta[MANIFEST_KEY])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ExportError(f"not a PAM Explorer subset export: no readable {MANIFEST_KEY} in the "
                          f"safetensors header ({type(exc).__name__})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") not in SUBSET_FORMATS.values():
        raise ExportError(f"not a PAM Explorer subset export: expected a format of "
                          f"{sorted(SUBSET_FORMATS.values())}")
    return manifest


__all__ = ["SUBSET_FORMAT", "SUBSET_FORMATS", "MODEL_FORMATS", "SUFFIXES", "PACKAGES", "OPSET",
           "download_name", "MANIFEST_KEY", "check_format", "sidecar", "label_names", "subset_manifest",
           "subset_model_bytes", "subset_bytes_from_archive", "save_subset", "load_fused",
           "read_embedded_manifest"]
