"""Checking JSON read from disk against a JSON Schema, with a one-line error.

Files such as a run's report.json or an export's manifest.json may come from another version, a
crash or someone else; a reader that indexes them blindly turns a malformed value into a
traceback. :func:`check_json` validates with the ``jsonschema`` library and raises
:class:`~pam_explorer.core.errors.DataError` naming the file, the path of the bad value and what
was expected: "report.json: seeds: 5 is not of type 'array'". Schemas list only what a reader
relies on; other keys are allowed (newer writers may add them).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from pam_explorer.core.errors import DataError

MAX_MESSAGE = 200  # characters of the offending value's description kept in the message

# building blocks of the schemas (JSON numbers: int or float, never true/false)
NUMBER: dict = {"type": "number"}
NUMBER_OR_NULL: dict = {"type": ["number", "null"]}
STRING: dict = {"type": "string"}
STRINGS: dict = {"type": "array", "items": STRING}
PER_KEY_NUMBER: dict = {"type": "object", "additionalProperties": NUMBER}
PAIR: dict = {"type": "array", "items": NUMBER, "minItems": 2, "maxItems": 2}
PER_KEY_PAIR: dict = {"type": "object", "additionalProperties": PAIR}


def obj(properties: Mapping[str, dict] | None = None, values: dict | None = None,
        required: tuple[str, ...] = ()) -> dict:
    """An object schema: known ``properties``, the schema of every other value (``values``), the
    keys it must have."""
    out: dict = {"type": "object", "properties": dict(properties or {})}
    if values is not None:
        out["additionalProperties"] = values
    if required:
        out["required"] = list(required)
    return out


def either(*schemas: dict) -> dict:
    return {"anyOf": list(schemas)}


def check_json(value: Any, schema: dict, name: str) -> Any:
    """``value`` itself if it matches ``schema``; else DataError("<name>: <path>: <what>")."""
    error = best_match(Draft202012Validator(schema).iter_errors(value))
    if error is None:
        return value
    where = ".".join(str(p) for p in error.absolute_path) or "top level"
    what = " ".join(error.message.split())  # one line, whatever the value held
    if len(what) > MAX_MESSAGE:
        what = what[:MAX_MESSAGE] + " ..."
    raise DataError(f"{name}: {where}: {what}")


__all__ = ["check_json", "obj", "either", "NUMBER", "NUMBER_OR_NULL", "STRING", "STRINGS", "PER_KEY_NUMBER",
           "PAIR", "PER_KEY_PAIR"]
