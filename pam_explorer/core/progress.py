"""Progress of long API calls, printed when asked: ``progress=pe.progress_printer("prune")``.

The long calls of the API (``Explorer.open``, ``finetune``, ``Pruner.prune``) take a
``progress`` callback and call it with what they have done (a dict such as ``{"epoch": 1, "loss":
0.21, "val_accuracy": {"A": 95.1}}``, or positional values such as ``(layer, step, total)``). They
print nothing themselves. :func:`progress_printer` gives a callback that prints each report as
one line with the seconds since it was made, at most one line per ``every_s`` seconds (the first
report always), so a long greedy search does not flood the terminal.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

SKIPPED = ("widths", "log", "groups", "sparsity_series")  # too long for one line


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} {_short(v)}" for k, v in value.items()) + "}"
    return str(value)


def report_line(*args: Any) -> str:
    """One report as text: a dict's items ("epoch 1, loss 0.21, val_accuracy {A 95.1}", long
    entries left out) or the positional values joined by spaces."""
    if len(args) == 1 and isinstance(args[0], Mapping):
        return ", ".join(f"{k} {_short(v)}" for k, v in args[0].items() if k not in SKIPPED)
    return " ".join(_short(a) for a in args)


def progress_printer(label: str, every_s: float = 1.0, stream: TextIO | None = None,
                     clock: Callable[[], float] = time.monotonic) -> Callable[..., None]:
    """A progress callback printing "[label 12.3 s] <report>" (see the module docstring)."""
    start = clock()
    last = [None]

    def report(*args: Any) -> None:
        now = clock()
        if last[0] is not None and now - last[0] < every_s:
            return
        last[0] = now
        print(f"[{label} {now - start:.1f} s] {report_line(*args)}", file=stream or sys.stdout, flush=True)
    return report


__all__ = ["progress_printer", "report_line"]
