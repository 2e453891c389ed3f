"""What an export's manifest.json must look like to be read and shown.

:func:`pam_explorer.export.archive.read_manifest` returns a manifest only when the parts that
readers show or index (tasks, costs per subset, group widths, accuracies, the regrouping that made
it) have the expected JSON types; otherwise a one-line ExportError naming the value
(``manifest.json: tasks: 5 is not of type 'array'``). Rebuilding the network checks the rest
(:func:`pam_explorer.export.archive.load`). Unknown keys are allowed.
"""
from __future__ import annotations

from typing import Any

from pam_explorer.core.errors import DataError, ExportError
from pam_explorer.core.json_check import (
    NUMBER,
    NUMBER_OR_NULL,
    PER_KEY_NUMBER,
    STRING,
    check_json,
    either,
    obj,
)

_OVERRIDES = either({"type": "array", "items": {"type": "array", "prefixItems": [STRING, NUMBER],
                                                "minItems": 2, "maxItems": 2}}, PER_KEY_NUMBER)
SCHEMA = obj({
    "tasks": {"type": "array", "items": STRING, "minItems": 1},
    "flops": PER_KEY_NUMBER, "params": PER_KEY_NUMBER, "group_widths": obj(values=PER_KEY_NUMBER),
    "accuracy": PER_KEY_NUMBER, "reference_accuracy": PER_KEY_NUMBER,
    "alpha": NUMBER_OR_NULL, "finetune_epochs": {"type": ["integer", "null"]},
    **{k: STRING for k in ("preset", "algorithm", "both_picked", "format", "stage", "scheme", "prune")},
    "overrides": _OVERRIDES, "alpha_overrides": _OVERRIDES,
    "mi": obj({"profile": STRING, "n_samples": {"type": "integer"}, "sigma2": NUMBER}),
}, required=("tasks",))


def check_manifest(manifest: Any, name: str = "manifest.json") -> dict:
    """``manifest`` if it has the shape readers rely on (:data:`SCHEMA`); else ExportError."""
    try:
        return check_json(manifest, SCHEMA, name)
    except DataError as exc:
        raise ExportError(f"not a readable PAM Explorer export: {exc}") from None


__all__ = ["SCHEMA", "check_manifest"]
