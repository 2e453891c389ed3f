"""Job specs: what a background run may execute, as data checked against an allow-list.

A run's status.json holds ``"job": {"command": "experiment", "args": {"preset": "digits-2task",
"quick": true, ...}}``, never a command line. :func:`check` accepts a spec only if its command is
one of :data:`COMMANDS` and every argument is a known one with a value of the right form (a name
of letters, digits and ``_.+-`` not starting with ``-``; a finite number; a count; a flag; a
device; for ``preset`` also a project file, an absolute path ending in ``.toml``, passed as
``--project``). :func:`argv` rebuilds the command from a checked spec:
``[sys.executable, "-m", "pam_explorer", <command>, --flag value ..., "--out", <run dir>]``: no
shell, no output path from the spec (a run's results always go to its own folder). Anything else is a
ConfigError and nothing runs.

``selftest`` is a fixed Python snippet (print, sleep, write progress/report JSON into the run
folder, exit with a code) for fast tests of the queue; it is refused unless the environment has
``PAM_JOBS_SELFTEST=1``.

Standard library only: the detached wrapper (``python -I runs/jobs.py _run ...``) loads this file
by path, and gives it ``errors`` (core/errors.py) before running it.
"""
from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

if __package__:
    from pam_explorer.core import errors
# else: loaded by path by the wrapper, which sets the module's ``errors`` first

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:[0-9]{1,2})?")
SELFTEST_ENV = "PAM_JOBS_SELFTEST"


def _fail(where: str, msg: str) -> None:
    raise errors.ConfigError(f"job spec {where}: {msg}")


def _name(where: str, v: Any) -> list[str]:
    if not (isinstance(v, str) and _NAME.fullmatch(v)):
        _fail(where, f"must be a name of letters, digits and _.+- (not starting with '-'), got {v!r}")
    return [v]


def _preset(where: str, v: Any) -> list[str]:
    """A preset's name, or a project file: an absolute path ending in .toml of printable characters
    (the command reads and checks the file; nothing in it runs)."""
    if isinstance(v, str) and is_project(v):
        return [v]
    return _name(where, v)


def is_project(v: str) -> bool:
    """Whether ``v`` names a project file (see :func:`_preset`)."""
    return (v.startswith("/") and v.endswith(".toml") and len(v) <= 4096 and v.isprintable()
            and "/../" not in v + "/")


def _number(where: str, v: Any) -> list[str]:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        _fail(where, f"must be a finite number, got {v!r}")
    return [repr(float(v))]


def _count(where: str, v: Any) -> list[str]:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 10 ** 9:
        _fail(where, f"must be a non-negative integer, got {v!r}")
    return [str(v)]


def _device(where: str, v: Any) -> list[str]:
    if not (isinstance(v, str) and _DEVICE.fullmatch(v)):
        _fail(where, f"must be auto, cpu, mps, cuda or cuda:N, got {v!r}")
    return [v]


def _counts(where: str, v: Any) -> list[str]:
    if not (isinstance(v, (list, tuple)) and v):
        _fail(where, f"must be a non-empty list of integers >= 0, got {v!r}")
    return [",".join(_count(where, x)[0] for x in v)]


def _names(where: str, v: Any) -> list[str]:
    if not (isinstance(v, (list, tuple)) and v):
        _fail(where, f"must be a non-empty list of names, got {v!r}")
    return [",".join(_name(where, x)[0] for x in v)]


def _overrides(where: str, v: Any) -> list[str]:
    if not isinstance(v, Mapping):
        _fail(where, f"must be an object {{layer: alpha}}, got {v!r}")
    return [f"{_name(where, k)[0]}={_number(where, a)[0]}" for k, a in v.items()]


def _alphas(where: str, v: Any) -> list[str]:
    """"auto" or a non-empty list of finite numbers >= 0 (bits)."""
    if v == "auto":
        return ["auto"]
    def bad(x: Any) -> bool:
        return isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x < 0

    if not (isinstance(v, (list, tuple)) and v) or any(bad(x) for x in v):
        _fail(where, f"must be 'auto' or a non-empty list of finite numbers >= 0, got {v!r}")
    return [",".join(repr(float(x)) for x in v)]


def _mix(where: str, v: Any) -> list[str]:
    """{subset name: probability}: SUBSET=P,... (the command checks that they sum to 1)."""
    if not (isinstance(v, Mapping) and v):
        _fail(where, f"must be an object {{subset: probability}}, got {v!r}")
    return [",".join(f"{_name(where, k)[0]}={_number(where, p)[0]}" for k, p in v.items())]


FLAG = "flag"  # a boolean: the flag present or not
Kind = Callable[[str, Any], list[str]] | str

COMMANDS: dict[str, dict[str, Kind]] = {
    "experiment": {"preset": _preset, "prune": _name, "alpha": _number, "overrides": _overrides,
                   "schemes": _names,
                   "finetune_epochs": _count, "seed": _count, "seeds": _counts, "device": _device,
                   "target_sparsity": _number, "quick": FLAG, "floor": _name, "rank": _name,
                   "regroup": _name, "arch": _name, "schedule": _name, "delta": _number},
    "sweep": {"preset": _preset, "prune": _name, "alphas": _alphas, "seeds": _counts, "executor": _name,
              "workers": _count, "threads": _count, "mix": _mix, "quick": FLAG, "floor": _name,
              "rank": _name, "regroup": _name, "finetune_epochs": _count, "device": _device,
              "target_sparsity": _number, "slurm_partition": _name, "gpus_per_job": _count,
              "cpus_per_job": _count, "mem_gb": _number, "time_min": _count, "arch": _name,
              "schedule": _name, "delta": _number},
    # training writes the checkpoints into the run's folder; ``install`` (a flag, no path) also
    # copies them to assets/<preset> when that preset has no networks there (never replaces any)
    "train": {"preset": _name, "arch": _name, "epochs": _count, "seed": _count, "n_train": _count,
              "device": _device, "install": FLAG},
    "merge": {"preset": _preset, "alpha": _number, "overrides": _overrides, "algorithm": _name,
              "finetune_epochs": _count, "device": _device, "samples": _count, "sigma2": _number,
              "pooling": _name, "label_mode": _name, "bound": _name, "kernel": _name, "null_perms": _count,
              "normalise": _name, "both_picked": _name},
}
_SELFTEST_ARGS = ("print", "stderr", "sleep", "exit", "progress", "report")


def check(job: Any) -> dict:
    """A normalised copy of ``job`` ({"command", "args"}) if it is allowed; else ConfigError."""
    if not isinstance(job, Mapping):
        _fail("", "a run needs a job {'command': ..., 'args': {...}}; this one has none (a run of an "
              "older version, or a planted file): it is listed but never executed")
    command, args = job.get("command"), job.get("args", {})
    extra = sorted(set(job) - {"command", "args"})
    if extra:
        _fail("", f"unknown key(s) {extra}; a job is {{'command': ..., 'args': {{...}}}}")
    if not isinstance(args, Mapping):
        _fail("args", f"must be an object, got {args!r}")
    if command == "selftest":
        return {"command": command, "args": _check_selftest(args)}
    if command not in COMMANDS:
        _fail("command", f"{command!r} is not one of {sorted(COMMANDS)}")
    allowed = COMMANDS[command]
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        _fail("args", f"unknown argument(s) {unknown} of {command}; known: {sorted(allowed)}")
    for key, value in args.items():
        where = f"{command} {key}"
        if allowed[key] == FLAG:
            if not isinstance(value, bool):
                _fail(where, f"must be true or false, got {value!r}")
        elif value is not None:
            allowed[key](where, value)
    return {"command": command, "args": {k: v for k, v in args.items() if v is not None}}


def _check_selftest(args: Mapping) -> dict:
    if os.environ.get(SELFTEST_ENV) != "1":
        _fail("command", f"'selftest' runs only when {SELFTEST_ENV}=1 (tests)")
    unknown = sorted(set(args) - set(_SELFTEST_ARGS))
    if unknown:
        _fail("args", f"unknown argument(s) {unknown} of selftest")
    for key in ("print", "stderr"):
        if key in args and not (isinstance(args[key], str) and len(args[key]) < 1000):
            _fail(f"selftest {key}", "must be a short string")
    if "sleep" in args and not (_number("selftest sleep", args["sleep"]) and 0 <= args["sleep"] <= 600):
        _fail("selftest sleep", "must be between 0 and 600 seconds")
    if "exit" in args:
        _count("selftest exit", args["exit"])
    for key in ("progress", "report"):
        if key in args and not (isinstance(args[key], Mapping) and len(json.dumps(args[key])) < 100_000):
            _fail(f"selftest {key}", "must be a JSON object (under 100 kB)")
    return dict(args)


def argv(job: Any, run_dir: str | Path) -> list[str]:
    """The command of a checked ``job``, writing into ``run_dir``."""
    job = check(job)
    command, args = job["command"], job["args"]
    if command == "selftest":
        return [sys.executable, "-I", "-c", _SELFTEST, json.dumps(args), str(run_dir)]
    out = [sys.executable, "-m", "pam_explorer", command]
    for key, value in args.items():
        flag = "--" + key.replace("_", "-")
        kind = COMMANDS[command][key]
        if kind == FLAG:
            out += [flag] if value else []
        elif key == "overrides":
            for item in kind(key, value):
                out += ["--override", item]
        elif key == "preset" and is_project(value):  # a project file: --project, the command checks it
            out += ["--project", value]
        else:
            out += [flag, *kind(key, value)]
    return out + ["--out", str(run_dir)]


def describe(job: Any) -> str:
    """A short command line for display ("experiment --preset digits-2task --quick")."""
    try:
        full = argv(job, "RUN_DIR")
    except errors.ConfigError as exc:
        return f"(not runnable: {exc})"
    if job.get("command") == "selftest":
        return f"selftest {json.dumps(job.get('args', {}))}"
    return " ".join(full[3:-2])


_SELFTEST = """\
import json, os, sys, time
args, run_dir = json.loads(sys.argv[1]), sys.argv[2]
for key, stream in (("print", sys.stdout), ("stderr", sys.stderr)):
    if key in args:
        print(args[key], file=stream, flush=True)
for key in ("progress", "report"):
    if key in args:
        with open(os.path.join(run_dir, key + ".json"), "w") as fh:
            json.dump(args[key], fh)
time.sleep(args.get("sleep", 0))
sys.exit(args.get("exit", 0))
"""

__all__ = ["COMMANDS", "SELFTEST_ENV", "check", "argv", "describe", "is_project"]
