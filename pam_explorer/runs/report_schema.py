"""What a run's report.json must look like to be shown, and reading it checked.

The dashboard's Results page reads report.json files of any version (and planted or damaged
ones); :func:`read_report` gives a report only when every part the page draws has the expected
JSON types (:data:`SCHEMA`), else a one-line DataError naming the value (``seeds: 5 is not of
type 'array'``). Parts that are absent are fine (older reports lack some); unknown keys are
allowed (newer writers add them). ``latency_measurement`` is the interleaved measurement of
:mod:`pam_explorer.cost.latency_compare`. A report of the published schedule also holds, per seed
and scheme, the stage record with its accuracy-FLOPs ``curve`` (a list of checkpoints; B1: one
list per task network), which the page reads off at any tolerance, and the figures at the stored
tolerances (``tolerances``); a number may be the strict-JSON string "inf" (``alpha``, overrides).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pam_explorer.core.errors import DataError
from pam_explorer.core.json_check import (
    NUMBER,
    NUMBER_OR_NULL,
    PAIR,
    PER_KEY_NUMBER,
    PER_KEY_PAIR,
    STRING,
    STRINGS,
    check_json,
    either,
    obj,
)
from pam_explorer.runs import run_folders

_NUMBERS_OR_NESTED = obj(values=either(NUMBER, PER_KEY_NUMBER))
WIDTHS = obj(values=_NUMBERS_OR_NESTED)  # {layer: {group: n}}, B1: {task: {layer: {group: n}}}
LOG_ROW = obj({"step": {"type": "integer"}, "task": {"type": ["string", "null"]},
               "accepted": {"type": ["boolean", "null"]},
               "val_accuracy": either(NUMBER_OR_NULL, PER_KEY_NUMBER),
               "flops": either(NUMBER, PER_KEY_NUMBER), "widths": WIDTHS})
LOG = either({"type": "array", "items": LOG_ROW}, obj(values={"type": "array", "items": LOG_ROW}))
SERIES = {"type": "array", "items": obj({"step": NUMBER}, values=NUMBER_OR_NULL)}

INTEGER = {"type": "integer"}
NON_FINITE = {"enum": ["inf", "-inf", "nan"]}  # strict JSON's non-finite numbers (core/io.py)
NUMBER_LIKE = either(NUMBER_OR_NULL, NON_FINITE)
_FIGURE = either(PER_KEY_NUMBER, {"type": "null"})  # null: no checkpoint above the floor (published schedule)
SCHEME = obj({
    **{k: _FIGURE for k in ("flops", "params", "latency_ms", "latency_ms_cuda", "sparse_flops",
                            "dense_flops", "flops_before_pruning", "accuracy", "accuracy_min",
                            "val_accuracy", "reference_val_accuracy", "zipped_accuracy", "accuracy_se",
                            "val_se")},
    **{f"{k}_ci95": PER_KEY_PAIR for k in ("flops", "params", "latency_ms", "latency_ms_cuda", "sparse_flops",
                                           "dense_flops", "accuracy", "val_accuracy")},
    "widths": WIDTHS, "groups_before_pruning": WIDTHS, "log": LOG,
    "sparsity_series": either(SERIES, obj(values=SERIES)), "sparsity": _NUMBERS_OR_NESTED,
    "frozen_at_step": either(NUMBER_OR_NULL, obj(values=NUMBER_OR_NULL)),
    **{k: NUMBER_OR_NULL for k in ("delta_t", "overall_sparsity", "seconds")},
})
CHECKPOINT = obj({"index": INTEGER, "step": NUMBER, "fraction": NUMBER, "finetuned": {"type": "boolean"},
                  "flops": PER_KEY_NUMBER, "params": PER_KEY_NUMBER, "widths": WIDTHS,
                  **{k: PER_KEY_NUMBER for k in ("val_accuracy", "val_se", "test_accuracy", "test_se")}},
                 required=("flops", "val_accuracy"))
CURVE = {"type": "array", "items": CHECKPOINT}
RECORD = {**SCHEME, "properties": {  # a stage record of one seed: SCHEME's figures + its curve
    **SCHEME["properties"], "curve": either(CURVE, obj(values=CURVE)),
    "points": either(INTEGER, obj(values=INTEGER), {"type": "null"}),
    "readoffs": obj(values=either(NUMBER_OR_NULL, obj(values=NUMBER_OR_NULL))), "delta": NUMBER,
    "schedule": STRING}}
GAIN = obj({"average": NUMBER_OR_NULL, "peak": NUMBER_OR_NULL, "n": {"type": "integer", "minimum": 1},
            "average_ci95": either(PAIR, {"type": "null"}), "peak_ci95": either(PAIR, {"type": "null"}),
            "average_verdict": STRING, "peak_verdict": STRING, "subsets": STRINGS})
GAINS = obj(values=GAIN)
LATENCY_CELL = obj({"median_ms": NUMBER, "iqr_ms": NUMBER, "reliable": {"type": "boolean"},
                    "why": {"type": ["string", "null"]}}, required=("median_ms", "reliable"))
LATENCY_MEASUREMENT = obj({"threads": {"type": "integer"}, "rounds": {"type": "integer"}, "rule": STRING,
                           "schemes": obj(values=obj(values=LATENCY_CELL))}, required=("schemes",))
OVERRIDES = either({"type": "array", "items": {"type": "array", "prefixItems": [STRING, NUMBER_LIKE],
                                               "minItems": 2, "maxItems": 2}},
                   obj(values=NUMBER_LIKE))
CONFIG = obj({"rank": STRING, "floor": STRING, "regroup": STRING, "overrides": OVERRIDES,
              "regroup_config": obj({"overrides": OVERRIDES, "both_picked": STRING, "alpha": NUMBER_LIKE}),
              "mi": obj({"profile": STRING, "n_samples": {"type": "integer"}, "sigma2": NUMBER,
                         "kernel": STRING, "null_perms": {"type": "integer"}}),
              "prune_config": obj({"delta": NUMBER})})
MISSING = obj(values={"type": "array", "items": either(STRING, INTEGER)})  # {scheme: [seeds]}
AT_TOLERANCE = obj({"schemes": obj(values=SCHEME), "gains": GAINS, "missing": MISSING})
PER_SEED = obj(values=obj({"schemes": obj(values=RECORD),
                           "gains": obj(values=obj({"average": NUMBER_OR_NULL, "peak": NUMBER_OR_NULL}))}))

SCHEMA = obj({
    "preset": STRING, "prune": STRING, "tasks": STRINGS, "alpha": NUMBER_LIKE,
    "schedule": STRING, "delta": NUMBER, "missing": MISSING, "tolerances": obj(values=AT_TOLERANCE),
    "per_seed": PER_SEED,
    "quick": {"type": "boolean"}, "seeds": {"type": "array", "items": {"type": "integer"}},
    "config": CONFIG, "torch_threads": {"type": "integer"}, "latency": STRING,
    "reference_accuracy": PER_KEY_NUMBER, "reference_val_accuracy": PER_KEY_NUMBER,
    "floor": either(PER_KEY_NUMBER, STRING), "schemes": obj(values=SCHEME),
    "gains": GAINS, "latency_gains": GAINS, "sparse_gains": GAINS,
    "floor_check": obj(values=obj({"meets": {"type": "boolean"}, "worst": PER_KEY_NUMBER})),
    "target_sparsity": NUMBER, "latency_measurement": LATENCY_MEASUREMENT,
})


def check_report(report: Any, name: str = "report.json") -> dict:
    """``report`` if it has the shape the dashboard reads (see :data:`SCHEMA`); else DataError."""
    return check_json(report, SCHEMA, name)


def read_report(run_id: str, root: str | Path | None = None) -> dict | None:
    """The checked report.json of a run; None if it wrote none; DataError (one line, naming the
    run and the bad value) if it is not JSON or has the wrong shape."""
    path = run_folders.run_dir(run_id, root) / "report.json"
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # unreadable, a folder, bad JSON or text encoding
        raise DataError(f"{run_id}/report.json is not readable JSON ({type(exc).__name__})") from None
    if not isinstance(report, dict):
        raise DataError(f"{run_id}/report.json holds a JSON {type(report).__name__}, not an object")
    return check_report(report, f"{run_id}/report.json")


__all__ = ["SCHEMA", "check_report", "read_report"]
